"""EXAONE 4.0 (`model_type: exaone4`; LG AI Research 2025, "EXAONE 4.0: Unified Large Language Models Integrating
Non-reasoning and Reasoning Modes", §2.1): OLMo 2's placement of the norms (RMSNorm on each sublayer's output
before the residual add, none on its input: norm_placement 'res_post') with Qwen3's QK-norm per head before RoPE
(qk_norm 'head'). With a sliding window, the layers `layer_types` names sliding attend over the window with RoPE
and the full layers attend to everything without positions (NoPE); without one, every layer is full attention
with RoPE (EXAONE-4.0-1.2B)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .olmo2 import RULES as OLMO2_RULES
from .qwen3 import FULL, SLIDING

# the full layers of a windowed model: no positions
_OVERRIDES = {FULL: {"positions": "none"}}


def to_config(hf: dict) -> ModelConfig:
    window, n = hf.get("sliding_window"), hf["num_hidden_layers"]
    fields = dict(qk_norm="head", norm_placement="res_post", norm_eps=hf.get("rms_norm_eps", 1e-5))
    if window is None:
        return llama_like_config(hf, **fields)
    pattern = hf.get("sliding_window_pattern", 4)
    if not hf.get("layer_types") and not isinstance(pattern, int):
        raise LlmarchError(f"exaone4: sliding_window_pattern {pattern!r} without layer_types is not supported")
    types = hf.get("layer_types") or [SLIDING if (i + 1) % pattern else FULL for i in range(n)]
    if set(types) - {FULL, SLIDING}:
        raise LlmarchError(f"exaone4: layer types other than {FULL} and {SLIDING}: {sorted(set(types))}")
    return llama_like_config(hf, layer_types=list(types),
                             layer_overrides={SLIDING: {"sliding_window": window}, **_OVERRIDES}, **fields)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head" or cfg.norm_placement != "res_post" or not cfg.final_norm or cfg.norm != "rmsnorm":
        raise LlmarchError("model_type exaone4 needs qk_norm='head', norm_placement='res_post' and RMSNorm")
    if cfg.bias or cfg.qkv_bias or cfg.positions != "rope" or cfg.sliding_window is not None:
        raise LlmarchError("model_type exaone4 has no biases, and RoPE with windows only per layer type")
    extra = dict(sliding_window=None, layer_types=[FULL] * cfg.n_layers)
    if cfg.layer_types is not None:
        window = (cfg.layer_overrides or {}).get(SLIDING, {}).get("sliding_window")
        if window is None or cfg.layer_overrides != {SLIDING: {"sliding_window": window}, **_OVERRIDES} \
                or set(cfg.layer_types) - {FULL, SLIDING}:
            raise LlmarchError(f"model_type exaone4 takes layer types {SLIDING} (a window, RoPE) and {FULL} (no "
                               "positions) and no other layer_overrides")
        extra = dict(sliding_window=window, layer_types=list(cfg.layer_types))
    out = llama_like_hf(cfg, architectures=["Exaone4ForCausalLM"], **extra)
    for key in ("mlp_bias", "attention_bias"):
        out.pop(key)
    return out


FAMILIES.register("exaone4")(Family(OLMO2_RULES, to_config, from_config, IGNORE))
