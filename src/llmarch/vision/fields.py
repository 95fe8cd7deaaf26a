"""What the vision configs (config.py's ViT, qwen_config.py's and pixtral_config.py's towers) check alike when a
ModelConfig.vision dict is read: no unknown field, JSON's lists kept as lists, positive integer sizes and numbers,
true-or-false switches, a token id (audio/config.py's and resampler_config.py's too).
Imports nothing of llmarch's but its errors, so every vision config may use it."""
from __future__ import annotations

from dataclasses import fields

from ..errors import LlmarchError


def read_fields(cls, data: dict, kind: str, lists: tuple[str, ...] = ()):
    """data as a `cls` dataclass; a field cls lacks is an error naming the `kind` of vision config."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise LlmarchError(f"unknown {kind} field(s): {', '.join(unknown)}")
    return cls(**{k: (list(x) if k in lists and x is not None else x) for k, x in data.items()})


def check_positive(v, names: tuple[str, ...], kind: str = "vision") -> None:
    for name in names:
        value = getattr(v, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise LlmarchError(f"{kind} {name} must be a positive integer, got {value!r}")


def check_numbers(v, names: tuple[str, ...], kind: str = "vision") -> None:
    for name in names:
        value = getattr(v, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise LlmarchError(f"{kind} {name} must be a positive number, got {value!r}")


def check_switches(v, names: tuple[str, ...], kind: str = "vision") -> None:
    for name in names:
        if not isinstance(getattr(v, name), bool):
            raise LlmarchError(f"{kind} {name} must be true or false, got {getattr(v, name)!r}")


def check_token_id(value, name: str = "image_token_id") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LlmarchError(f"vision {name} must be a token id, got {value!r}")
