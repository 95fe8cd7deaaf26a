"""llmarch: the major LLM architectures from one small, composable, tested PyTorch core."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_model
from .config import ModelConfig, resolve
from .errors import LlmarchError
from .generate import generate
from .models import DecoderLM, ModelOutput
from .presets import PRESETS, preset

__version__ = "0.1.0"


def build(name_or_config: str | Path | ModelConfig, device: str | torch.device | None = None,
          **overrides: Any) -> DecoderLM:
    """A freshly initialised model from a preset name, a JSON/YAML config file or a ModelConfig,
    with any field overridden: `llmarch.build("llama-tiny", n_layers=2, ffn="geglu")`."""
    from .checkpoint import build_model

    return build_model(resolve(name_or_config, **overrides), device)


def load(checkpoint_dir: str | Path, device: str | torch.device | None = None) -> DecoderLM:
    """A model from a checkpoint directory (or a training run directory: its latest checkpoint)."""
    return load_model(checkpoint_dir, device)


__all__ = ["build", "load", "generate", "ModelConfig", "DecoderLM", "ModelOutput", "LlmarchError", "PRESETS",
           "preset", "resolve"]
