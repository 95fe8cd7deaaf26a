"""DiffLlama (`model_type: diffllama`): LLaMA with differential attention (Ye et al. 2024, arXiv 2410.05258:
attention kind "differential", layers/attention_kinds/differential.py) in place of softmax attention. Its four
lambda vectors per layer sit under self_attn (lambda_q1, lambda_k1, lambda_q2, lambda_k2; ours under attn.diff);
lambda_init follows from the layer's index, and the per-head norm has no gain, so neither is stored. The MLP has
no biases; attention_bias puts biases on q, k, v and o_proj."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

RULES = [r for r in LLAMA_RULES if not (".mlp." in r.ours and r.ours.endswith("bias"))] + [
    Rule.of(f"model.layers.{{i}}.self_attn.lambda_{p}", f"blocks.{{i}}.attn.diff.lambda_{p}")
    for p in ("q1", "k1", "q2", "k2")]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_dropout"):
        raise LlmarchError(f"diffllama: attention_dropout={hf['attention_dropout']} is not supported (transformers "
                           "refuses it too)")
    bias = bool(hf.get("attention_bias", False))
    return llama_like_config({**hf, "mlp_bias": bias}, attention="differential", bias=False, o_bias=bias)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.attention != "differential" or cfg.bias or cfg.qkv_bias != cfg.o_bias or cfg.layer_types:
        raise LlmarchError("model_type diffllama needs attention='differential' on every layer, no MLP biases, and "
                           "q, k, v and o_proj biases all or none")
    out = llama_like_hf(cfg, architectures=["DiffLlamaForCausalLM"], attention_bias=cfg.qkv_bias)
    out.pop("mlp_bias")
    return out


FAMILIES.register("diffllama")(Family(RULES, to_config, from_config, IGNORE))
