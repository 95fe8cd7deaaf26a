"""SmolLM3 (`model_type: smollm3`; Hugging Face 2025, "SmolLM3: smol, multilingual, long-context reasoner"):
LLaMA's layout with NoPE (no positional encoding, Kazemnejad et al. 2023; Yang et al. 2025, "RoPE to NoRoPE
and back again") on every k-th layer: `no_rope_layers[i]` is 1 where layer i rotates q and k, 0 where it uses
no positions (by default 0 on layers with (i + 1) % no_rope_layer_interval == 0). Mapped onto our per-layer
types: a NoPE layer's type overrides positions to 'none'; a sliding layer's overrides sliding_window."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf
from .qwen3 import FULL, SLIDING

NOPE = "_nope"  # the suffix of a NoPE layer's type: full_attention_nope, sliding_attention_nope


def to_config(hf: dict) -> ModelConfig:
    n = hf["num_hidden_layers"]
    rope = hf.get("no_rope_layers") or [int((i + 1) % hf.get("no_rope_layer_interval", 4) != 0) for i in range(n)]
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    kinds = hf.get("layer_types") or [SLIDING if window and not r else FULL for r in rope]
    kinds = [k if window else FULL for k in kinds]  # transformers slides only with use_sliding_window
    types = [k + ("" if r else NOPE) for k, r in zip(kinds, rope)]
    overrides = {t: {**({"positions": "none"} if t.endswith(NOPE) else {}),
                     **({"sliding_window": window} if t.startswith(SLIDING) else {})} for t in dict.fromkeys(types)}
    overrides = {t: f for t, f in overrides.items() if f}
    if not overrides:
        return llama_like_config(hf)
    return llama_like_config(hf, layer_types=types, layer_overrides=overrides)


def from_config(cfg: ModelConfig) -> dict:
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    windows = {c.sliding_window for c in layers} - {None}
    if len(windows) > 1 or cfg.positions != "rope" or any(c.positions not in ("rope", "none") for c in layers):
        raise LlmarchError("model_type smollm3 needs RoPE or no positions per layer and at most one window size")
    rotary = {(c.rope_theta, c.rope_scaling, c.rope_fraction) for c in layers if c.positions == "rope"}
    if len(rotary) > 1 or cfg.rope_fraction != 1.0:
        raise LlmarchError("model_type smollm3 rotates every dim of every RoPE layer with the same settings")
    window = next(iter(windows), None)
    return llama_like_hf(cfg, architectures=["SmolLM3ForCausalLM"],
                         no_rope_layers=[int(c.positions == "rope") for c in layers],
                         use_sliding_window=window is not None, sliding_window=window,
                         layer_types=[SLIDING if c.sliding_window else FULL for c in layers],
                         pad_token_id=None)  # transformers defaults to 128004, past a smaller vocabulary


FAMILIES.register("smollm3")(Family(RULES, to_config, from_config, IGNORE))
