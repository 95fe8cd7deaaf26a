"""Quantized checkpoints: the directory of an llmarch checkpoint (config.json, model.safetensors, tokenizer
files) whose safetensors hold the quantized layers' tensors (int8 `weight` and `scales`; int4 `qweight`,
`scales`, `zeros`, see linear.py) beside the unquantized ones, and quantization.json naming the Scheme. Loading
builds the model on the meta device, swaps in empty quantized layers (and QLoRA's adapters where adapters.json
puts them), and takes the stored tensors as they are: full-precision copies of the quantized weights never exist."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..adapters import LAYOUT_FILE, apply_layout
from ..checkpoint import WEIGHTS, assemble, check_state, state_for_saving
from ..config import ModelConfig
from ..errors import LlmarchError
from ..models.build import empty_model
from ..rundir import CONFIG
from .apply import quantize
from .scheme import Scheme

ALIGN = 64  # bytes: an AVX-512 register, and what torch's CPU allocator gives


def save_quantized(model, scheme: Scheme, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state_for_saving(model), str(directory / WEIGHTS), metadata={"format": "pt"})
    model.config.save(directory / CONFIG)
    scheme.save(directory)


def load_quantized(path: Path, device: str | torch.device | None = None):
    cfg = ModelConfig.load(path / CONFIG)
    scheme = Scheme.load(path)
    model = empty_model(cfg)
    quantize(model, scheme)
    model.quantization = scheme
    if (path / LAYOUT_FILE).is_file():  # QLoRA's adapters, unmerged over the int4 weights (adapters/quantized.py)
        apply_layout(model, _read_json(path / LAYOUT_FILE))
    expected = state_for_saving(model)
    try:
        state = load_file(str(path / WEIGHTS), device=str(device or "cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        raise LlmarchError(f"cannot read {path / WEIGHTS} (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    check_state(path / WEIGHTS, {k: tuple(v.shape) for k, v in state.items()}, expected)
    # safetensors packs tensors back to back, so one may start at any byte; the int8 CPU kernel's vector
    # loads crash on such a start (seen with a (257, 96) head at offset 26), so each gets aligned storage
    state = {k: v if v.data_ptr() % ALIGN == 0 else v.clone() for k, v in state.items()}
    return assemble(model, state, device)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LlmarchError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
