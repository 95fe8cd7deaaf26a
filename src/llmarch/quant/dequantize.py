"""A quantized model as the float model it stands for, for export (interop/hf.py's to_hf: a QLoRA result shipped
as a float checkpoint): each int4 or int8 layer dequantized (W = (q - 8) s + z per group, or q s per row, in fp32),
QLoRA's adapters merged into that float weight (W + s B A, Dettmers et al. 2023 eq. 5 folded), each MoE's
per-expert quantized layers stacked again into (E, rows, C), an int8 embedding table dequantized, all under the
names the plain model's state dict has. The model is left as it is; the float weights are new memory (one float
model's worth). The merge is in float, so no part of the update is rounded away (the reason adapters/quantized.py
refuses a merge into the int4 codes). A tied head that quantization gave its own copy (Scheme.head) is kept as
`lm_head.weight`, dequantized (with its adapter, if any): the export unties it (interop/hf.py), so that it computes
what the quantized model does rather than use the embedding in its place."""
from __future__ import annotations

import torch
from torch import nn

from ..adapters.lora import LoRALinear, LoRAUpdates
from .apply import own_weights
from .experts import QuantExperts
from .linear import Int4Linear, Int8Embedding, Int8Linear


def _float_weight(layer: nn.Module) -> torch.Tensor:
    """A quantized linear's weight (N, K) in fp32, with its LoRA updates (slice rows += s B A) if it has any."""
    w = layer.dequantized().float()
    if isinstance(layer, LoRAUpdates) and layer.enabled:
        for name, (start, size) in layer.slices.items():
            w[start:start + size] += layer.delta(name).float()
    return w


@torch.no_grad()
def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the unquantized model of the same config, adapters merged, in the dtype of the model's
    own float parameters (norms, and whatever the scheme left unquantized); without a tied LM head unless it is a
    quantized copy."""
    dtype = next((p.dtype for n, p in model.named_parameters() if p.is_floating_point() and ".lora_" not in n),
                 torch.float32)
    state: dict[str, torch.Tensor] = {}
    done: list[str] = []  # modules written whole: their submodules are not visited
    for name, module in model.named_modules():
        if any(name.startswith(d + ".") for d in done):
            continue
        own = own_weights(module)
        if isinstance(module, (Int4Linear, Int8Linear)):
            own = {"weight": _float_weight(module).to(dtype), **({"bias": module.bias} if module.bias is not None
                                                                  else {})}
        elif isinstance(module, QuantExperts):
            own.update({attr: torch.stack([_float_weight(layer) for layer in getattr(module, attr)]).to(dtype)
                        for attr in (module.in_name, "down")})
        elif isinstance(module, Int8Embedding):
            own = {"weight": module.dequantized().to(dtype)}
        elif isinstance(module, LoRALinear):  # an adapted layer the scheme left in float (an unquantized head)
            own["weight"] = module.merged_weight()
        else:
            state.update({f"{name}.{k}" if name else k: v.detach() for k, v in own.items()})
            continue
        state.update({f"{name}.{k}": v.detach() for k, v in own.items()})
        done.append(name)
    if model.config.tied_head and not isinstance(getattr(model, "lm_head", None), (Int4Linear, Int8Linear)):
        state = {k: v for k, v in state.items() if not k.startswith("lm_head.")}
    return {k: v.contiguous() for k, v in state.items()}


def export_view(model: nn.Module):
    """What an exporter (to_hf, to_gguf) writes of `model`: (state dict, config). A quantized model (a QLoRA
    result) is the float model it stands for (float_state), and a quantized copy of a tied head makes it untied;
    any other model is its own state."""
    from ..checkpoint import state_for_saving

    cfg = model.config
    if getattr(model, "quantization", None) is None:
        return state_for_saving(model), cfg
    state = float_state(model)
    return state, (cfg.replace(tie_embeddings=False) if cfg.tied_head and "lm_head.weight" in state else cfg)
