"""Model checkpoints as directories: config.json + model.safetensors (+ tokenizer files), or a multi-process
run's sharded state. Reading and writing them only: run directories are rundir.py's, building models/build.py's."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .adapters import LAYOUT_FILE, adapter_layout, adapters, merged_state
from .config import ModelConfig
from .errors import LlmarchError, first_and_count
from .layers import POSITIONS
from .models import TransformerLM
from .models.build import empty_model, stacks
from .rundir import CONFIG, resolve_checkpoint

WEIGHTS = "model.safetensors"
SHARDED = "dcp"  # a multi-process run's model and optimizer state, in torch.distributed.checkpoint's format


def is_sharded_folder(folder: Path) -> bool:
    """A DCP folder: metadata.json (dcp_json.py), or a pickled .metadata (read only when trusted)."""
    return (folder / "metadata.json").is_file() or (folder / ".metadata").is_file()


def state_for_saving(model: TransformerLM) -> dict[str, torch.Tensor]:
    """The state dict without the tied LM head (safetensors stores no aliases; a quantized head has no
    `weight`, quant/); LoRA adapters folded into their weights (adapters/), so the checkpoint is a plain model,
    except over quantized weights (QLoRA, adapters/quantized.py), whose adapters stay unmerged."""
    quantized = getattr(model, "quantization", None) is not None
    state = merged_state(model) if adapters(model) and not quantized else model.state_dict()
    if model.config.tied_head and isinstance(model.lm_head, nn.Linear):
        state.pop("lm_head.weight")
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_model(model: TransformerLM, directory: str | Path) -> None:
    """config.json and model.safetensors; for a quantized model (`model.quantization`, quant/) also its scheme
    (quantization.json), and where its unmerged adapters sit (adapters.json), so `llmarch.load` rebuilds both."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state_for_saving(model), str(directory / WEIGHTS), metadata={"format": "pt"})
    model.config.save(directory / CONFIG)
    scheme = getattr(model, "quantization", None)
    if scheme is not None:
        scheme.save(directory)
        if adapters(model):
            (directory / LAYOUT_FILE).write_text(json.dumps(adapter_layout(model), indent=2) + "\n")


def load_model(path: str | Path, device: str | torch.device | None = None) -> TransformerLM:
    path = resolve_checkpoint(path)
    cfg = ModelConfig.load(path / CONFIG)
    model = empty_model(cfg)
    expected = state_for_saving(model)
    if is_sharded_folder(path / SHARDED):
        state = read_sharded(path / SHARDED, expected, device, cfg.tied_head)
        return assemble(model, state, device, path / SHARDED)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise LlmarchError(f"checkpoint {path} has no {WEIGHTS}")
    try:
        state = load_file(str(weights), device=str(device or "cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        raise LlmarchError(f"cannot read {weights} (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    check_state(weights, {k: tuple(v.shape) for k, v in state.items()}, expected)
    return assemble(model, state, device, weights)


def check_state(source: Path, shapes: dict[str, tuple], expected: dict[str, torch.Tensor]) -> None:
    """Stored tensor names and shapes are exactly those the config's model has."""
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    for names, what in ((missing, "is missing tensor"), (extra, "has unexpected tensor")):
        if names:
            raise LlmarchError(f"{source} {what} {first_and_count(names)}")
    for name, tensor in expected.items():
        if shapes[name] != tuple(tensor.shape):
            raise LlmarchError(f"tensor {name} has shape {shapes[name]}, config expects {tuple(tensor.shape)}")


def read_sharded(folder: Path, expected: dict[str, torch.Tensor], device, tied: bool) -> dict[str, torch.Tensor]:
    """The model's tensors from a torch.distributed.checkpoint folder (train/sharded.py: the shards of every
    process of a multi-process run, model and optimizer state), read whole into this one process, without pickle
    (dcp_json.py)."""
    from .dcp_json import JsonReader, load

    try:
        stored = JsonReader(folder).read_metadata().state_dict_metadata
    except (OSError, ValueError) as e:
        raise LlmarchError(f"cannot read {folder} (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    model = {k.removeprefix("model."): v for k, v in stored.items() if k.startswith("model.")}
    if tied:
        model.pop("lm_head.weight", None)  # stored under both names, like every name of a shared tensor
    if any(not hasattr(v, "size") for v in model.values()):
        raise LlmarchError(f"{folder} stores a model entry that is not a tensor")
    check_state(folder, {k: tuple(v.size) for k, v in model.items()}, expected)
    state = {k: torch.empty(model[k].size, dtype=model[k].properties.dtype, device=device or "cpu")
             for k in expected}
    load({"model": state}, folder)
    return state


def check_finite(state: dict[str, torch.Tensor], source: Path | str | None = None) -> None:
    """Every floating-point tensor finite: a flipped bit in an exponent makes a NaN or an infinity that would
    otherwise surface only as empty generations or a loss of nan."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            where = f"{source}: " if source is not None else ""
            raise LlmarchError(f"{where}tensor {name} holds {bad} NaN or infinite value(s) (corrupt file?)")


def assemble(model: TransformerLM, state: dict[str, torch.Tensor], device,
             source: Path | str | None = None) -> TransformerLM:
    """Finish a meta-device model with a complete, finite state (check_finite; `source` names the file in
    its error): take its tensors as they are (no copy), tie the head, and rebuild the derived
    non-persistent buffers (rotary frequencies, sinusoid tables)."""
    check_finite(state, source)
    cfg = model.config
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tied_head and isinstance(model.lm_head, nn.Linear):  # else a quantized copy of the head (quant/)
        model.lm_head.weight = model.embed.weight
    for stack, stack_cfg in stacks(model).values():  # the stack's positions and each layer type's own
        owners = [(stack.positions, stack_cfg)] + [
            (positions, stack_cfg.for_layer(stack_cfg.layer_types.index(t)))
            for t, positions in getattr(stack, "layer_positions", {}).items()]
        for module, positions_cfg in owners:
            with torch.device(device or "cpu"):
                fresh = POSITIONS[positions_cfg.positions](positions_cfg)
            for name, buf in fresh.named_buffers():
                setattr(module, name, buf)
    # buffers drawn at construction on the CPU (a Performer's random features) go where the weights are
    return model if device is None else model.to(device)
