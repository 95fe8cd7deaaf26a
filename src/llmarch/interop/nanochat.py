"""nanochat (`model_type: nanochat`; Karpathy 2025, github.com/karpathy/nanochat; transformers' NanoChatForCausalLM):
a LLaMA-shaped decoder whose norms store nothing (every norm an RMSNorm without a gain: norm 'rmsnorm_plain'), one
more such norm over the token embeddings before the first block (embed_norm), per-head QK-norm after RoPE
(qk_norm 'rms_after_rope'), an ungated squared-ReLU MLP (ffn 'relu2', So et al. 2021, "Primer": `mlp.fc1`,
`mlp.fc2`), an untied head and its logits soft-capped, 15 tanh(z / 15) (final_softcap). Its RoPE turns each pair the
other way (rotate_half as cat(x2, -x1)): the q and k rows are read with each head's halves swapped (layout
`rope_negated`), which gives the same scores. `attention_bias` puts biases on q, k, v and o (qkv_bias, o_bias)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_QKV = ("rope_negated", "rope_negated", "same")
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_L + f"self_attn.{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}", _QKV)
      for w in ("weight", "bias")],
    *[Rule.of(_L + f"self_attn.o_proj.{w}", f"blocks.{{i}}.attn.o_proj.{w}") for w in ("weight", "bias")],
    Rule.of(_L + "mlp.fc1.weight", "blocks.{i}.mlp.up.weight"),
    Rule.of(_L + "mlp.fc2.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# what transformers' NanoChatForCausalLM computes, beyond the shape fields, the RoPE settings and the soft-cap
NEEDS = dict(norm="rmsnorm_plain", norm_placement="pre", final_norm=True, embed_norm=True, qk_norm="rms_after_rope",
             ffn="relu2", bias=False, block="sequential", positions="rope", rope_fraction=1.0, attn_scale=None,
             attn_softcap=None, clip_qkv=None, embed_scale=False, embed_multiplier=1.0, residual_multiplier=1.0,
             logit_divisor=1.0, head_bias=False, head_scale=False, head_transform=False, sliding_window=None,
             attention="full", n_experts=0, mixer="attention", layer_types=None, n_decoder_layers=0,
             type_vocab_size=0, causal=True, position_offset=0, attn_output_gate=False, attn_sinks=False,
             head="lm")


def unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' NanoChat cannot compute, or None."""
    wrong = next((k for k, v in NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={NEEDS[wrong]!r}"
    if cfg.qkv_bias != cfg.o_bias:
        return "qkv_bias equal to o_bias (attention_bias covers q, k, v and o)"
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        return "head_dim = d_model / n_heads"
    if cfg.rope_scaling == "longrope":
        return "rope_scaling none, linear, dynamic, llama3 or yarn"
    return None


def to_config(hf: dict) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    act = hf.get("hidden_act", "relu2")
    if act != "relu2":
        raise LlmarchError(f"nanochat: hidden_act {act!r} is not supported (relu2)")
    if hf.get("head_dim") not in (None, d // heads):
        raise LlmarchError(f"nanochat: head_dim {hf['head_dim']} is not hidden_size / num_attention_heads")
    cap = hf.get("final_logit_softcapping", 15.0)
    bias = bool(hf.get("attention_bias", False))
    fields = {k: v for k, v in NEEDS.items() if k not in ("attention", "n_decoder_layers")}
    fields.update(rope_fields(hf))
    return ModelConfig(**fields, name=hf.get("_name_or_path") or "nanochat", hf_model_type="nanochat",
                       vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                       n_kv_heads=hf.get("num_key_value_heads") or heads, ffn_hidden=hf["intermediate_size"],
                       norm_eps=hf.get("rms_norm_eps", 1e-6), qkv_bias=bias, o_bias=bias,
                       final_softcap=None if cap is None else float(cap),
                       tie_embeddings=hf.get("tie_word_embeddings", False),
                       context_length=hf.get("max_position_embeddings", 2048))


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="nanochat", architectures=["NanoChatForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, hidden_act="relu2",
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                rms_norm_eps=cfg.norm_eps, rope_parameters=rope_parameters(cfg),
                final_logit_softcapping=cfg.final_softcap, attention_bias=cfg.qkv_bias,
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("nanochat")(Family(RULES, to_config, from_config, IGNORE, needs=unexpressible))
