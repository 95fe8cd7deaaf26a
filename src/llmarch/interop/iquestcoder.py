"""IQuest-Coder-V1 (`model_type: iquestcoder`; IQuestLab 2026, IQuest-Coder-V1-40B; transformers runs it as
LlamaForCausalLM): LLaMA exactly under its own model_type, with head_dim 128 and 8 key-value heads by default. The
original remote code's `clip_qkv` and `use_sliding_window`, which no released checkpoint enables, are refused, as
transformers refuses them."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf

_DEFAULTS = dict(head_dim=128, num_key_value_heads=8, rms_norm_eps=1e-5, max_position_embeddings=131072)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("clip_qkv") is not None or hf.get("use_sliding_window"):
        raise LlmarchError("iquestcoder: clip_qkv and use_sliding_window are not supported (transformers refuses "
                           "them)")
    return llama_like_config({**_DEFAULTS, **hf})


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["LlamaForCausalLM"])


FAMILIES.register("iquestcoder")(Family(RULES, to_config, from_config, IGNORE))
