"""Each block's FFN, dense (ffn.py) or a mixture of experts (moe.py): here, as the mixture is built from the
dense kinds and so imports ffn.py, which then cannot import it back."""
from __future__ import annotations

from torch import nn

from .ffn import dense_ffn
from .moe import EarlyRoutedMoE, MoE, MoEBesideDense


def make_ffn(cfg, layer: int = 0) -> nn.Module | None:
    """Block `layer`'s FFN: dense, or a mixture of experts of the same kind where the config says (with
    moe_shortcut the mixture goes beside it: shortcut_moe)."""
    if cfg.is_moe_layer(layer) and not cfg.moe_shortcut:
        if cfg.moe_beside_dense:
            return MoEBesideDense(cfg)
        return EarlyRoutedMoE(cfg, layer) if cfg.router_early else MoE(cfg, layer)
    return dense_ffn(cfg, cfg.ffn_hidden, learned_scale=cfg.ffn_learned_scale)


def shortcut_moe(cfg, layer: int = 0) -> MoE | None:
    """Block `layer`'s shortcut-connected mixture (moe_shortcut: LongCat-Flash), or None."""
    return MoE(cfg) if cfg.moe_shortcut and cfg.is_moe_layer(layer) else None
