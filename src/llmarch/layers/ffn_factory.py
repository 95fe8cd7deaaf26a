"""Each block's FFN, dense (ffn.py) or a mixture of experts (moe.py): here, as the mixture is built from the
dense kinds and so imports ffn.py, which then cannot import it back."""
from __future__ import annotations

from torch import nn

from .ffn import dense_ffn
from .moe import MoE, MoEBesideDense


def make_ffn(cfg, layer: int = 0) -> nn.Module | None:
    """Block `layer`'s FFN: dense, or a mixture of experts of the same kind where the config says."""
    if cfg.is_moe_layer(layer):
        return MoEBesideDense(cfg) if cfg.moe_beside_dense else MoE(cfg)
    return dense_ffn(cfg, cfg.ffn_hidden)
