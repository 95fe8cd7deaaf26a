"""Quantization as a transform on a built model (the first of DESIGN.md's inference transforms): every
nn.Linear of every block (attention projections, FFNs, shared experts, mixers' projections), every MoE's stacked
experts (per expert), and the LM head unless the scheme keeps it; the token embedding table to int8 per row
if the scheme says so; norms and routers stay as they are. Layers
the int4 kernel cannot hold (out_features not a multiple of 16, or in_features narrower than a group) are
quantized to int8 instead."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..layers.moe import Experts
from .experts import QuantExperts
from .linear import INT4_ROWS, Int4Linear, Int8Embedding, Int8Linear
from .scheme import Scheme


# the modules that hold a scheme's quantized tensors (their dtypes are the scheme's, not the model's)
QUANTIZED_MODULES = (Int4Linear, Int8Linear, Int8Embedding, QuantExperts)


def _linear_maker(scheme: Scheme, meta: bool):
    """A function (weight (N, K), bias or None) -> the quantized layer for it; on the meta device (a model
    built to be filled by a checkpoint), an empty one of the right shape."""

    def make(weight: torch.Tensor, bias: torch.Tensor | None, fitted: tuple | None = None) -> nn.Module:
        """fitted: what a calibrated method found for this weight (GPTQ: int4 codes, scales and zeros; int8 codes
        and scales), else None."""
        N, K = weight.shape
        int4 = holds_int4(scheme, N, K)
        if meta:
            if int4:
                return Int4Linear(K, N, bias is not None, scheme.group_size, scheme.dtype, device="meta")
            return Int8Linear(K, N, bias is not None, scheme.dtype, device="meta")
        if int4 and fitted is not None:
            return Int4Linear.from_codes(*fitted, bias, scheme.group_size, scheme.dtype)
        if int4:
            return Int4Linear.from_weight(weight, bias, scheme.group_size, scheme.dtype, scheme.method)
        if scheme.calibrated and fitted is not None:  # int8-gptq (int4-gptq fits only the layers int4 holds)
            return Int8Linear.from_codes(*fitted, bias, scheme.dtype)
        return Int8Linear.from_weight(weight, bias, scheme.dtype)

    return make


def holds_int4(scheme: Scheme, out_features: int, in_features: int) -> bool:
    """Whether the scheme puts an (out, in) weight on the int4 kernel: its rows fill the kernel's tiles of 16 and
    its inputs whole groups; otherwise it goes to int8."""
    return scheme.int4 and out_features % INT4_ROWS == 0 and in_features % scheme.group_size == 0


def layer_maker(scheme: Scheme, meta: bool):
    """A function (name, weight, bias, fitted=None) -> the quantized layer for the linear layer `name`:
    _linear_maker's, in int8 for the LM head under scheme.head_int8 and for the layers scheme.int8_layers names."""
    make = _linear_maker(scheme, meta)
    if not scheme.int4:
        return lambda name, weight, bias, fitted=None: exact_head(name, make(weight, bias, fitted))
    as_int8 = _linear_maker(replace(scheme, method="int8", int8_layers=()), meta)
    int8 = set(scheme.int8_layers) | ({"lm_head"} if scheme.head_int8 else set())

    def make_layer(name: str, weight: torch.Tensor, bias: torch.Tensor | None, fitted: tuple | None = None):
        return exact_head(name, (as_int8 if name in int8 else make)(weight, bias, fitted))

    return make_layer


def exact_head(name: str, layer: nn.Module) -> nn.Module:
    """An int8 LM head recomputes its largest outputs in fp32 (linear.py, EXACT_TOP): what greedy decoding picks."""
    if name == "lm_head" and isinstance(layer, Int8Linear):
        layer.exact_top = True
    return layer


def check_widths(model: nn.Module, scheme: Scheme) -> None:
    """One line naming the first layer whose input width the group size does not divide (a layer narrower than
one group, like Mamba's dt_proj, goes to int8 instead)."""
    from ..errors import LlmarchError

    if not scheme.int4:
        return
    int8 = set(scheme.int8_layers)  # held in int8 whatever their width (a GGUF file's F16 row of 48)
    for name, module in targets(model, scheme):
        if isinstance(module, nn.Linear):
            widths = [] if name in int8 else [module.in_features]
        else:  # an expert's matrices, by the name of expert 0's
            widths = [w.shape[-1] for w, part in ((module.w_in, module.in_name), (module.down, "down"))
                      if f"{name}.{part}.0" not in int8]
        for width in widths:
            if width > scheme.group_size and width % scheme.group_size:
                raise LlmarchError(f"group size {scheme.group_size} does not divide the width {width} of {name}; "
                                   "choose a group size that divides every layer's input width")


def targets(model: nn.Module, scheme: Scheme):
    """(name, module) of each layer to quantize; a module with `quantize = False` keeps itself and its subtree
    (Hyena's filter network and latent attention's up-projection, whose weights are read whole)."""
    kept = [name for name, module in model.named_modules() if getattr(module, "quantize", True) is False]
    for name, module in model.named_modules():
        if (name == "lm_head" and not scheme.head) or any(name == k or name.startswith(k + ".") for k in kept):
            continue
        if isinstance(module, nn.Linear) or (isinstance(module, Experts) and not isinstance(module, QuantExperts)):
            yield name, module


@torch.no_grad()
def quantize(model: nn.Module, scheme: Scheme, calibration: torch.Tensor | None = None) -> nn.Module:
    """Replace the model's linear layers and experts by quantized ones, in place; returns the model. The
    weights are read from wherever they are; a meta-device model gets empty quantized layers to load into.
    calibration: token ids (S, T) for a calibrated method (int4-gptq, int8-gptq), from the training data."""
    from ..errors import LlmarchError

    if any(hasattr(module, "lora_A") for module in model.modules()):  # they would be dropped with their layers
        raise LlmarchError("the model has LoRA adapters: quantize before apply_lora (QLoRA's order), not after")
    cfg = getattr(model, "config", None)
    if getattr(cfg, "bitlinear", "none") != "none":  # its layers' own rounding would be replaced, not kept
        raise LlmarchError(f"the model's projections are BitLinear (bitlinear={cfg.bitlinear!r}: ternary weights, "
                           "8-bit activations, computed as it runs); weight-only quantization would drop that")
    check_widths(model, scheme)
    meta = next(model.parameters()).device.type == "meta"
    make_layer = layer_maker(scheme, meta)
    fitted = {} if meta else _calibrate(model, scheme, calibration)
    if scheme.embeddings and isinstance(getattr(model, "embed", None), nn.Embedding):
        embed = model.embed
        model.embed = (Int8Embedding(embed.num_embeddings, embed.embedding_dim, device="meta") if meta
                       else Int8Embedding.from_embedding(embed))
    for name, module in list(targets(model, scheme)):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if isinstance(module, Experts):
            new = QuantExperts(module, lambda w, b, f, part, name=name: make_layer(f"{name}.{part}", w, b, f),
                               fitted.get(name))
        else:
            new = make_layer(name, module.weight, module.bias, fitted.get(name))
        setattr(parent, child, new)
    return model


def _calibrate(model: nn.Module, scheme: Scheme, calibration: torch.Tensor | None) -> dict:
    """name -> what GPTQ fitted, for the layers a calibrated method fits (int4-gptq: every int4-eligible
    nn.Linear and expert weight; int8-gptq: all of them; gptq.fit says what an expert's entry holds), or {}
    for the other methods."""
    from ..errors import LlmarchError
    from ..models.transformer import TransformerLM
    from . import gptq

    if not scheme.calibrated:
        if calibration is not None:
            raise LlmarchError(f"calibration data is for int4-gptq and int8-gptq, not {scheme.method}")
        return {}
    if calibration is None:
        raise LlmarchError(f"{scheme.method} needs calibration text: write a checkpoint with `llmarch quantize "
                           f"--method {scheme.method}` and use it, or pass calibration=quant.gptq.calibration_ids(...) "
                           "in Python")
    if not isinstance(model, TransformerLM):
        raise LlmarchError(f"{scheme.method} runs on decoder-only and encoder-only models, not {type(model).__name__}")

    def fits(w: torch.Tensor) -> bool:  # int4-gptq fits what int4 holds; the rest gets int8 round-to-nearest
        return holds_int4(scheme, *w.shape) or not scheme.int4

    found = dict(targets(model, scheme))
    layers = {name: m for name, m in found.items() if isinstance(m, nn.Linear) and fits(m.weight)}
    moes = {name: m for name, m in found.items() if isinstance(m, Experts)}
    training = model.training
    try:  # calibrate as the model will run: no dropout
        return gptq.fit(model.eval(), layers, calibration, gptq.solver(scheme), moes, fits)
    finally:
        model.train(training)


def own_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's own weights by name: its parameters and its persistent buffers (not rotary tables or masks,
    which are rebuilt rather than saved), without its submodules'."""
    own = {k: v for k, v in module._parameters.items() if v is not None}
    own.update({k: v for k, v in module._buffers.items()
                if v is not None and k not in module._non_persistent_buffers_set})
    return own


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and persistent buffers as they sit in memory (shared tensors once)."""
    seen: dict[int, int] = {}
    for module in model.modules():
        for t in own_weights(module).values():
            seen.setdefault(t.data_ptr(), t.numel() * t.element_size())
    return sum(seen.values())
