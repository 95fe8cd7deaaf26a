"""Gemma (`model_type: gemma`): LLaMA's layout with three differences: RMSNorm gains stored as g - 1
(y = x / rms(x) * (1 + g)), token embeddings multiplied by sqrt(d_model), and a tanh-GELU gated FFN (GeGLU);
the LM head is tied to the embedding."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("hidden_act") or hf.get("hidden_activation") or "gelu_pytorch_tanh"
    if act == "gelu":  # as transformers does: Gemma's legacy "gelu" means the tanh approximation
        act = "gelu_pytorch_tanh"
    return llama_like_config({**hf, "hidden_act": act, "tie_word_embeddings": hf.get("tie_word_embeddings", True)},
                             norm="rmsnorm_offset", embed_scale=True)


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["GemmaForCausalLM"])


FAMILIES.register("gemma")(Family(RULES, to_config, from_config, IGNORE))
