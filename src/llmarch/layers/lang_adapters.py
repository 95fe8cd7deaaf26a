"""Language adapters (`languages`): X-MOD's modular layers (Pfeiffer et al. 2022, "Lifting the Curse of
Multilinguality by Pre-training Modular Transformers", §3: a bottleneck adapter per language in every layer, chosen by
the input's language, trained with the shared weights from the start). After a block's FFN sublayer, its residual sum
h goes through the adapter of its language l, on the FFN's norm n (its ln2, reused as X-MOD's
adapter_reuse_layer_norm and ln_before_adapter do):
    h' = n(h) + W_2^l act(W_1^l n(h) + b_1^l) + b_2^l
then, in a post-norm block, through n again: x = n(h') (a pre-norm block leaves h' as it is).
lang_ids: (B,) one language per input, or (B, T) per token, indexing `languages`; default `default_language`.
Shapes: B batch, T length, C d_model, r lang_adapter_dim."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .ffn import ACTIVATIONS, FFN_ACTIVATION
from .linear import Linear


def check_lang_adapters(cfg) -> None:
    if cfg.languages is None:
        if cfg.default_language is not None or cfg.lang_adapter_dim:
            raise LlmarchError("default_language and lang_adapter_dim need languages (the adapters' languages)")
        return
    if not cfg.languages or len(set(cfg.languages)) != len(cfg.languages) or cfg.lang_adapter_dim <= 0:
        raise LlmarchError("languages needs distinct names, one per adapter, and a positive lang_adapter_dim")
    if cfg.default_language is not None and cfg.default_language not in cfg.languages:
        raise LlmarchError(f"default_language {cfg.default_language!r} is not one of languages {cfg.languages}")
    if cfg.norm_placement not in ("post", "pre") or cfg.block != "sequential" or cfg.shared_norm \
            or cfg.ffn not in FFN_ACTIVATION or cfg.n_experts or cfg.residual_alpha != 1.0 or cfg.residual_mix != "none":
        raise LlmarchError("language adapters follow the FFN of sequential post- or pre-norm blocks with a dense FFN "
                           "that has an activation (no residual_alpha or residual_mix)")


def default_lang_ids(cfg, batch: int, device) -> torch.Tensor:
    """(B,) the default language's index, where a forward is given no lang_ids."""
    if cfg.default_language is None:
        raise LlmarchError("this model's language adapters need lang_ids (or a default_language in its config)")
    return torch.full((batch,), cfg.languages.index(cfg.default_language), dtype=torch.long, device=device)


class Adapter(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.up = Linear(cfg.d_model, cfg.lang_adapter_dim)
        self.down = Linear(cfg.lang_adapter_dim, cfg.d_model)
        self.act = ACTIVATIONS[FFN_ACTIVATION[cfg.ffn]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class LanguageAdapters(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.adapters = nn.ModuleList(Adapter(cfg) for _ in cfg.languages)

    def forward(self, h: torch.Tensor, lang_ids: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """h (B, T, C) the FFN's residual sum; lang_ids (B,) or (B, T) -> n(h) + adapter_l(n(h))."""
        h = norm(h)
        out = torch.zeros_like(h)
        for j, adapter in enumerate(self.adapters):
            rows = lang_ids == j  # (B,) or (B, T): the inputs (tokens) of language j
            out[rows] = adapter(h[rows])
        return h + out
