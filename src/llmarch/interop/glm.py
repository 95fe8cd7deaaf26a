"""GLM (`model_type: glm`, THUDM's glm-4-9b-chat-hf) and GLM-4 (`glm4`: GLM-4-9B/32B-0414, GLM-Z1; Team GLM 2024,
"ChatGLM: A Family of Large Language Models from GLM-130B to GLM-4 All Tools"): LLaMA's layout with
- RoPE on the first half of each head's dims only (partial_rotary_factor 0.5: rope_fraction), turning adjacent
  dims (2j, 2j + 1) together: their q and k rows are reordered to our halves on the way in and back on the way out
  (mapping layout "rope_pairs"), which leaves every score as it was;
- biases on q, k and v only (attention_bias), none on o or the MLP;
- gate and up in one matrix, `mlp.gate_up_proj` (gate rows first, as ours);
- GLM-4 only: sandwich norms, `post_self_attn_layernorm` on attention's output and `post_mlp_layernorm` on the
  MLP's (its `post_attention_layernorm` is the MLP's input norm, LLaMA's meaning)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mapping import Rule, with_rope_pairs

_L = "model.layers.{i}."
RULES = with_rope_pairs([r for r in LLAMA_RULES if ".mlp.gate_up." not in r.ours]) + [
    Rule.of(_L + "mlp.gate_up_proj.weight", "blocks.{i}.mlp.gate_up.weight")]
GLM4_RULES = RULES + [Rule.of(_L + "post_self_attn_layernorm.weight", "blocks.{i}.post_ln1.weight"),
                      Rule.of(_L + "post_mlp_layernorm.weight", "blocks.{i}.post_ln2.weight")]


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False},
                             qkv_bias=bool(hf.get("attention_bias", True)), rope_fraction=rope_fraction(hf, 0.5),
                             norm_eps=hf.get("rms_norm_eps", 1.5625e-07),
                             norm_placement="sandwich" if hf["model_type"] == "glm4" else "pre")


def from_config(cfg: ModelConfig) -> dict:
    placement = "sandwich" if cfg.hf_model_type == "glm4" else "pre"
    if cfg.norm_placement != placement or cfg.norm != "rmsnorm" or not cfg.final_norm or cfg.bias:
        raise LlmarchError(f"model_type {cfg.hf_model_type} needs norm_placement={placement!r}, RMSNorm and no "
                           "o or MLP biases")
    if cfg.ffn != "swiglu" or cfg.qk_norm != "none" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError(f"model_type {cfg.hf_model_type} has a SwiGLU MLP, no QK-norm, windows or layer types")
    arch = "Glm4ForCausalLM" if cfg.hf_model_type == "glm4" else "GlmForCausalLM"
    out = llama_like_hf(cfg, architectures=[arch],
                        rope_parameters=rope_parameters(cfg, partial=True),
                        pad_token_id=None)  # transformers defaults to 151329, past a smaller vocabulary
    out.pop("mlp_bias")
    return out


FAMILIES.register("glm")(Family(RULES, to_config, from_config, IGNORE))
FAMILIES.register("glm4")(Family(GLM4_RULES, to_config, from_config, IGNORE))
