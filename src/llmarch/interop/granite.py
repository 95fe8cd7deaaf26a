"""IBM Granite 3.x dense models (`model_type: granite`, transformers' GraniteForCausalLM; IBM, "Granite 3.0 Language
Models", 2024): LLaMA's weights and layout (RMSNorm, grouped-query attention, RoPE, SwiGLU, `attention_bias` on q,
k, v, o and `mlp_bias` on the MLP, tied or untied head) with four muP-style scalars (Yang et al. 2021, "Tensor
Programs V"), each a ModelConfig field:
- `embedding_multiplier`: token embeddings times it (embed_multiplier);
- `attention_multiplier`: the attention scores q.k times it, in place of 1/sqrt(head_dim) (attn_scale; the
  config's default is 1.0, so a Granite config without one does not scale its scores at all);
- `residual_multiplier`: each sublayer's output times it before the residual add (residual_multiplier);
- `logits_scaling`: the logits divided by it (logit_divisor).
Granite MoE (`granitemoe`) is granite_moe.py and Granite 4.0's Mamba hybrids (`granitemoehybrid`) granite_hybrid.py;
`granitemoeshared` (a shared MLP beside the experts) is granite_moe.py's too."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf

# Falcon-H1's multipliers and Mamba-2 variants (falcon_h1.py), which Granite's families (and Bamba) do not have
FALCON_H1_MUP = dict(attn_key_multiplier=1.0, ffn_gate_multiplier=1.0, ffn_out_multiplier=1.0, ssm_inner=None,
                     ssm_proj_multipliers=None, ssm_norm="gated")
# what transformers' GraniteForCausalLM computes, beyond the shape fields and the four scalars
NEEDS = dict(norm="rmsnorm", norm_placement="pre", final_norm=True, block="sequential", positions="rope",
              rope_fraction=1.0, qk_norm="none", attn_output_gate=False, attn_sinks=False, embed_scale=False,
              embed_norm=False, head_scale=False, head_bias=False, head_transform=False, attn_softcap=None,
              final_softcap=None, sliding_window=None, attention="full", n_experts=0, mixer="attention",
              layer_types=None, n_decoder_layers=0, type_vocab_size=0, causal=True, position_offset=0,
              **FALCON_H1_MUP)
_FFNS = ("swiglu", "geglu", "geglu_tanh")  # gate_proj's activation silu, gelu, gelu_pytorch_tanh


def unexpressible(cfg: ModelConfig, needs: dict = NEEDS) -> str | None:
    """What of `cfg` transformers' Granite (or, with its `needs`, Granite MoE) cannot compute, or None."""
    wrong = next((k for k, v in needs.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={needs[wrong]!r}"
    if cfg.ffn not in _FFNS:
        return f"a gated ffn ({', '.join(_FFNS)}), not {cfg.ffn!r}"
    if cfg.bias != cfg.qkv_bias:
        return "qkv_bias equal to bias (attention_bias covers q, k, v and o; mlp_bias the MLP)"
    if cfg.rope_scaling == "longrope":
        return "rope_scaling none, linear, dynamic, llama3 or yarn"
    return None


def scalars(hf: dict) -> dict:
    """The four scalars as ModelConfig fields (transformers' defaults where the config has none)."""
    return dict(attn_scale=float(hf.get("attention_multiplier", 1.0)),
                embed_multiplier=float(hf.get("embedding_multiplier", 1.0)),
                residual_multiplier=float(hf.get("residual_multiplier", 1.0)),
                logit_divisor=float(hf.get("logits_scaling", 1.0)))


def scalars_hf(cfg: ModelConfig) -> dict:
    scale = cfg.attn_scale if cfg.attn_scale is not None else cfg.head_dim ** -0.5  # llmarch's default, spelled out
    return dict(attention_multiplier=scale, embedding_multiplier=cfg.embed_multiplier,
                residual_multiplier=cfg.residual_multiplier, logits_scaling=cfg.logit_divisor)


def to_config(hf: dict) -> ModelConfig:
    for key in ("num_local_experts", "num_experts"):
        if hf.get(key):
            raise LlmarchError(f"model_type granite with {key}={hf[key]} is a mixture of experts: Granite MoE's "
                               "model_type is granitemoe")
    return llama_like_config(hf, **scalars(hf))


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["GraniteForCausalLM"], **scalars_hf(cfg))


FAMILIES.register("granite")(Family(RULES, to_config, from_config, IGNORE, needs=unexpressible))
