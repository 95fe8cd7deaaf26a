"""llmarch: the major LLM architectures from one small, composable, tested PyTorch core."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_model
from .config import ModelConfig
from .errors import LlmarchError, LlmarchWarning
from .generate import generate
from .models import TransformerLM, ModelOutput
from .presets import PRESETS, preset, resolve

__version__ = "0.1.0"


def build(name_or_config: str | Path | ModelConfig, device: str | torch.device | None = None,
          **overrides: Any) -> TransformerLM:
    """A freshly initialised model from a preset name, a JSON/YAML config file or a ModelConfig,
    with any field overridden: `llmarch.build("llama-tiny", n_layers=2, ffn="geglu")`."""
    from .models.build import build_model

    return build_model(resolve(name_or_config, **overrides), device)


def load(checkpoint_dir: str | Path, device: str | torch.device | None = None) -> TransformerLM:
    """A model from an llmarch checkpoint directory, a training run directory (its latest checkpoint), or a
    Hugging Face checkpoint directory (config.json with a model_type, *.safetensors), or a quantized checkpoint
    (`llmarch quantize`: quantization.json beside config.json), or a .gguf file (`from_gguf`)."""
    from .interop import from_hf, is_hf_dir
    from .interop.gguf import from_gguf, is_gguf
    from .quant import is_quantized_dir
    from .rundir import resolve_checkpoint

    if is_gguf(checkpoint_dir):
        return from_gguf(checkpoint_dir, device=device)
    if is_hf_dir(checkpoint_dir):
        return from_hf(checkpoint_dir, device=device)
    path = resolve_checkpoint(checkpoint_dir)  # a run directory's latest checkpoint, quantized ones (QLoRA's) too
    if is_quantized_dir(path):
        from .quant.checkpoint import load_quantized

        return load_quantized(path, device)
    return load_model(path, device)


def from_hf(path: str | Path, dtype: torch.dtype | None = None,
            device: str | torch.device | None = None) -> TransformerLM:
    """An llmarch model from a Hugging Face checkpoint directory, read with llmarch's own code (no
    `transformers` import). dtype None keeps the stored dtype."""
    from .interop import from_hf as _from_hf

    return _from_hf(path, dtype=dtype, device=device)


def from_gguf(path: str | Path, dtype: torch.dtype | None = None,
              device: str | torch.device | None = None, kernels: bool = False,
              mmproj: str | Path | None = None) -> TransformerLM:
    """An llmarch model from a llama.cpp GGUF file, its tensors dequantized to fp32 (or dtype); with kernels,
    its Q4_0/Q4_1/Q8_0 matrices kept quantized on llmarch's int4/int8 kernels instead
    (interop/gguf_kernels.py). Its tokenizer: `llmarch.interop.gguf_tokenizer.checkpoint_tokenizer(path)`.
    mmproj: llama.cpp's vision projector file for the text model (interop/gguf_mmproj.py), which then reads images
    (its tokenizer: checkpoint_tokenizer(path, mmproj=mmproj)); with kernels, the text model's matrices on the
    kernels and the tower's in float."""
    from .interop.gguf import from_gguf as _from_gguf

    if mmproj is not None:
        from .interop.gguf_mmproj import with_mmproj

        model = with_mmproj(_from_gguf(path, device=device), path, mmproj, device, kernels)
        return model.to(dtype) if dtype is not None else model
    if kernels:
        from .interop.gguf_kernels import from_gguf_kernels

        return from_gguf_kernels(path, device)
    return _from_gguf(path, dtype=dtype, device=device)


def to_hf(model: TransformerLM, path: str | Path, tokenizer_from: str | Path | None = None) -> None:
    """Write a Hugging Face checkpoint directory (config.json + safetensors) that `transformers` loads."""
    from .interop import to_hf as _to_hf

    _to_hf(model, path, tokenizer_from=tokenizer_from)


__all__ = ["build", "load", "from_hf", "from_gguf", "to_hf", "generate", "ModelConfig", "TransformerLM",
           "ModelOutput", "LlmarchError", "LlmarchWarning", "PRESETS", "preset", "resolve"]
