"""OLMo 3 (`model_type: olmo3`; Olmo Team 2025, "Olmo 3"): OLMo 2's block (olmo2.py: QK-norm over whole
projections, norms after each sublayer) with three sliding-window layers to one full (`layer_types`, by default
full where (i + 1) % 4 == 0), and RoPE settings per layer type: transformers 5 keys rope_parameters by layer type;
an older config's rope_scaling (YaRN on the 7B/32B long-context models) applies to the full layers only, both
types sharing rope_theta. The sliding layers' settings become their type's layer_overrides."""
from __future__ import annotations

from ..config import LAYER_FIELDS, ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .olmo2 import RULES, from_config as olmo2_hf, to_config as olmo2_config
from .qwen3 import FULL, SLIDING

THETA = 500000.0  # Olmo3Config.default_theta


def _rope(hf: dict) -> tuple[dict, dict]:
    """RoPE fields of the full layers and of the sliding ones."""
    params = hf.get("rope_parameters") or {}
    if FULL in params or SLIDING in params:
        full, local = dict(params.get(FULL) or {}), dict(params.get(SLIDING) or {})
    else:
        full, local = {**(hf.get("rope_scaling") or {})}, {}
    for p in (full, local):
        p.setdefault("rope_theta", hf.get("rope_theta", THETA))
    rest = {k: v for k, v in hf.items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    return rope_fields({**rest, "rope_parameters": full}), rope_fields({**rest, "rope_parameters": local})


def to_config(hf: dict) -> ModelConfig:
    n, window = hf["num_hidden_layers"], hf.get("sliding_window", 4096)
    types = list(hf.get("layer_types") or [SLIDING if (i + 1) % 4 else FULL for i in range(n)])
    if set(types) - {FULL, SLIDING}:
        raise LlmarchError(f"olmo3: layer types other than {FULL} and {SLIDING}: {sorted(set(types))}")
    full, local = _rope(hf)
    base = olmo2_config({k: v for k, v in hf.items() if k not in ("rope_parameters", "rope_scaling")})
    cfg, local = base.replace(**full, name=hf.get("_name_or_path") or "olmo3", hf_model_type="olmo3"), \
        base.replace(**local)
    # every RoPE field in which the sliding layers differ (a YaRN field of the full layers' back at its default)
    sliding = {k: getattr(local, k) for k in LAYER_FIELDS if k.startswith("rope_") and getattr(local, k) !=
               getattr(cfg, k)}
    if SLIDING not in types or window is None:
        return cfg
    return cfg.replace(layer_types=types, layer_overrides={SLIDING: {"sliding_window": window, **sliding}})


def from_config(cfg: ModelConfig) -> dict:
    overrides, types = cfg.layer_overrides or {}, cfg.layer_types or [FULL] * cfg.n_layers
    if cfg.sliding_window is not None or set(overrides) - {SLIDING} or set(types) - {FULL, SLIDING} or (
            SLIDING in types and "sliding_window" not in overrides.get(SLIDING, {})):
        raise LlmarchError(f"model_type olmo3 takes layer types {FULL} and {SLIDING} (a window)")
    sliding = cfg.for_layer(types.index(SLIDING)) if SLIDING in types else cfg
    plain = cfg.replace(layer_types=None, layer_overrides=None, hf_model_type="olmo2")
    return {**olmo2_hf(plain), "model_type": "olmo3", "architectures": ["Olmo3ForCausalLM"],
            "sliding_window": sliding.sliding_window, "layer_types": list(types),
            "rope_parameters": {FULL: rope_parameters(cfg), SLIDING: rope_parameters(sliding)}}


FAMILIES.register("olmo3")(Family(RULES, to_config, from_config, IGNORE))
