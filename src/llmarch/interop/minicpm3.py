"""MiniCPM3 (`model_type: minicpm3`; OpenBMB 2024, MiniCPM3-4B; Hu et al. 2024, "MiniCPM: Unveiling the Potential of
Small Language Models with Scalable Training Strategies", §3 and appendix: muP-style width and depth scaling;
transformers' MiniCPM3ForCausalLM): DeepSeek-V2's multi-head latent attention (mixer "mla", layers/mla.py: q_a_proj,
q_a_layernorm, q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj) with RoPE in halves as LLaMA's (not
DeepSeek's interleaved pairs: no row permutation), in a LLaMA block (RMSNorm, dense SwiGLU, tied head), and three
scalars, each an existing ModelConfig field (those of Granite):
- `scale_emb`: token embeddings times it (embed_multiplier; MiniCPM3-4B: 12);
- `scale_depth`: each sublayer's output times scale_depth / sqrt(num_hidden_layers) before the residual add
  (residual_multiplier; 1.4 / sqrt(62) in MiniCPM3-4B; null: no scaling);
- `dim_model_base`: the final hidden states divided by hidden_size / dim_model_base before the head, the same as the
  logits divided by it (logit_divisor; 2560 / 256 = 10; null: no scaling).
RoPE: plain, or LongRoPE (`rope_type` longrope, as MiniCPM3-4B: short and long factors per rotated pair of the
qk_rope_head_dim dims, read as Phi-3's: phi3.py)."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, deepseek_config, deepseek_hf, rules
from .hf import FAMILIES, Family
from .phi3 import _rope, rope_params

# MiniCPM3Config's defaults (those of MiniCPM3-4B) for the fields the latent attention reads
_DEFAULTS = dict(kv_lora_rank=256, q_lora_rank=768, qk_nope_head_dim=64, qk_rope_head_dim=32, rms_norm_eps=1e-5,
                 tie_word_embeddings=True, max_position_embeddings=32768, scale_emb=12, scale_depth=1.4,
                 dim_model_base=256)


def to_config(hf: dict) -> ModelConfig:
    hf = {**_DEFAULTS, **hf}  # a null given stays null: q_lora_rank (one q_proj), scale_depth, dim_model_base
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "longrope"):
        raise LlmarchError(f"minicpm3: rope type {kind!r} is not supported (default, longrope)")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("minicpm3: attention_bias and mlp_bias are not supported")
    d, L = hf["hidden_size"], hf["num_hidden_layers"]
    plain, rope = _rope(hf)
    depth, base = hf["scale_depth"], hf["dim_model_base"]
    cfg = deepseek_config({**plain, "v_head_dim": hf.get("v_head_dim") or d // hf["num_attention_heads"]})
    return cfg.replace(embed_multiplier=float(hf["scale_emb"]),
                       residual_multiplier=1.0 if depth is None else depth / math.sqrt(L),
                       logit_divisor=1.0 if base is None else d / base, **rope)


def from_config(cfg: ModelConfig) -> dict:
    base = cfg.d_model / cfg.logit_divisor
    if cfg.n_experts or cfg.rope_fraction != 1.0 or cfg.qkv_bias or base != round(base):
        raise LlmarchError("model_type minicpm3 has no experts, no biases, RoPE over every qk_rope_head_dim dim and "
                           "a whole dim_model_base = d_model / logit_divisor")
    out = deepseek_hf(cfg, architectures=["MiniCPM3ForCausalLM"], rope_parameters=rope_params(cfg),
                      scale_emb=cfg.embed_multiplier, scale_depth=cfg.residual_multiplier * math.sqrt(cfg.n_layers),
                      dim_model_base=round(base), mlp_bias=False)
    for key in ("n_routed_experts", "first_k_dense_replace"):
        out.pop(key)
    return out


FAMILIES.register("minicpm3")(Family(rules(interleaved=False), to_config, from_config, IGNORE))
