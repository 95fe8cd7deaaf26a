"""Cohere's Command models: `cohere` (Command R, Aya 23; Cohere 2024) and `cohere2` (Command R7B, Command A). LLaMA's
weights in PaLM's parallel block: one LayerNorm without bias feeds attention and the MLP, both added to the residual
(block 'parallel', shared_norm), the head tied to the embeddings, and the logits times logit_scale (0.0625: our
logit_divisor 16). RoPE turns adjacent dims (2j, 2j + 1) together (transformers' repeat_interleave of the
frequencies): their q and k rows are reordered to our halves on the way in (mapping layout "rope_pairs").
Command R7B and Command A (`cohere2`) attend over a sliding window with RoPE on three layers of four (layer_types)
and over everything without positions on the fourth. Command R+'s per-head QK LayerNorm (use_qk_norm) is not
read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import with_rope_pairs
from .qwen3 import nope_window_fields, nope_window_hf

RULES = with_rope_pairs([r for r in LLAMA_RULES if "post_attention_layernorm" not in r.hf[0]])


def cohere_fields(hf: dict) -> dict:
    """The ModelConfig fields of Cohere's parallel layout (refusing QK-norm and attention biases)."""
    if hf.get("use_qk_norm"):
        raise LlmarchError(f"{hf['model_type']}: use_qk_norm (Command R+'s per-head LayerNorm) is not supported")
    if hf.get("attention_bias", False):  # biased q, k, v, o with an unbiased MLP
        raise LlmarchError(f"{hf['model_type']}: attention_bias=true is not supported")
    return dict(norm="layernorm", norm_bias=False, norm_eps=hf.get("layer_norm_eps", 1e-5), block="parallel",
                shared_norm=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                logit_divisor=1.0 / float(hf.get("logit_scale") or 1.0))


def to_config(hf: dict) -> ModelConfig:
    fields = cohere_fields(hf)
    if hf["model_type"] == "cohere2":
        fields.update(nope_window_fields(hf))
    return llama_like_config({**hf, "mlp_bias": False}, **fields)


def cohere_hf(cfg: ModelConfig, arch: str, **extra) -> dict:
    """config.json of a Cohere-layout model (`arch` its class, `extra` its layer fields), refusing what the layout
    cannot hold."""
    if cfg.norm != "layernorm" or cfg.norm_bias or cfg.block != "parallel" or not cfg.shared_norm \
            or cfg.norm_placement != "pre" or not cfg.final_norm:
        raise LlmarchError(f"model_type {cfg.hf_model_type} needs a parallel block with one shared LayerNorm "
                           "without bias (norm_bias=False)")
    if cfg.bias or cfg.qkv_bias or cfg.qk_norm != "none" or cfg.ffn != "swiglu" or cfg.sliding_window is not None:
        raise LlmarchError(f"model_type {cfg.hf_model_type} has a SwiGLU MLP, no biases, QK-norm or window on "
                           "every layer")
    out = llama_like_hf(cfg, architectures=[arch], layer_norm_eps=cfg.norm_eps, logit_scale=1.0 / cfg.logit_divisor,
                        use_qk_norm=False, **extra)
    for key in ("rms_norm_eps", "mlp_bias"):
        out.pop(key)
    return out


def from_config(cfg: ModelConfig) -> dict:
    extra = {}
    if cfg.hf_model_type == "cohere2":
        extra = nope_window_hf(cfg)
    elif cfg.layer_types is not None:
        raise LlmarchError("model_type cohere has no layer types")
    return cohere_hf(cfg, "Cohere2ForCausalLM" if cfg.hf_model_type == "cohere2" else "CohereForCausalLM", **extra)


FAMILIES.register("cohere")(Family(RULES, to_config, from_config, IGNORE))
FAMILIES.register("cohere2")(Family(RULES, to_config, from_config, IGNORE))
