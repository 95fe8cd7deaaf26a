"""Weight initialisation of a built model: one generic pass over its parameters by name (normal, T5's or PaLM's
fan-in), then each module's own hook (`init_ssm`) for what its paper sets (SSM decays, step sizes, filters)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ModelConfig
from ..layers.norms import OffsetRMSNorm


@torch.no_grad()
def init_weights(model: nn.Module, cfg: ModelConfig) -> None:
    """init 'normal': N(0, init_std) weights; residual output projections scaled by 1/sqrt(2 * layers) (GPT-2
    paper §2.3). init 't5': each matrix N(0, 1/fan_in) with queries also divided by sqrt(head_dim), which
    stands in for the 1/sqrt(d) T5's attention leaves out, and embeddings N(0, 1) (Mesh TensorFlow's
    initialisers, as transformers' T5 uses; with the generic 0.02 an unscaled-attention model barely learns).
    init 'fan_in': the same without the query scaling (PaLM §5, whose attention is scaled as usual).
    Both: zero biases, unit norm gains (zero for Gemma's offset gains). State-space and convolution mixers then
    set their own parameters (A, D, step sizes, filters) as their papers do (`init_ssm`)."""
    std = cfg.init_std
    layers = cfg.n_layers + cfg.n_decoder_layers
    residual_out = residual_projections(model)
    for name, p in model.named_parameters():
        if name.endswith(("bias", ".sinks")):  # experts' (E, rows) biases too; a sink of 0 scores as q . 0
            nn.init.zeros_(p)
        elif p.dim() == 1:
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model  # embed_affine's: the model's
            offset = isinstance(owner, OffsetRMSNorm)
            nn.init.ones_(p) if not offset else nn.init.zeros_(p)
        elif cfg.init in ("t5", "fan_in"):
            _fan_in_init(name, p, cfg)
        elif name in residual_out:
            nn.init.normal_(p, std=std / math.sqrt(2 * layers))
        elif "positions" in name:
            nn.init.normal_(p, std=std / 2)
        else:
            nn.init.normal_(p, std=std)
    for module in model.modules():
        if hasattr(module, "init_ssm"):
            module.init_ssm()


def residual_projections(model: nn.Module) -> set[str]:
    """Names of the weights that write to the residual stream: each mixer's `residual_out` projections and
    each FFN's (its down projection; for experts, their stacked down weights)."""
    names = set()
    for prefix, module in model.named_modules():
        for attr in getattr(module, "residual_out", ()):
            names.add(f"{prefix}.{attr}" if prefix else attr)
    return names


def _fan_in_init(name: str, p: torch.Tensor, cfg: ModelConfig) -> None:
    d, q_rows = cfg.d_model, cfg.n_heads * cfg.head_dim
    if name.endswith(("embed.weight", "lm_head.weight")):
        nn.init.normal_(p, std=1.0)
    elif "positions" in name:  # the relative-position bias table
        nn.init.normal_(p, std=d ** -0.5)
    elif cfg.init == "t5" and name.endswith(("qkv_proj.weight", "q_proj.weight")):  # queries: head_dim^-0.5 too
        nn.init.normal_(p, std=d ** -0.5)
        nn.init.normal_(p[:q_rows], std=(d * cfg.head_dim) ** -0.5)
    else:  # k, v, o, FFN, experts (E, out, in), router: 1/sqrt(fan_in)
        nn.init.normal_(p, std=p.shape[-1] ** -0.5)
