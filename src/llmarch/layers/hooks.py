"""Identity modules at named activation sites (TransformerLens names), for analysis without edits."""
import torch
from torch import nn


class HookPoint(nn.Identity):
    """`model.blocks[0].hook_resid_pre.register_forward_hook(fn)` sees (and may replace) that activation.
    With no hook attached, a call returns its input without nn.Module's dispatch, which matters when
    decoding one token at a time (dozens of hook points per step). Under torch.compile the same check is traced
    and guarded, so a hook attached later recompiles the graph with it."""

    @property
    def active(self) -> bool:
        """Whether a hook is attached."""
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._forward_hooks or self._forward_pre_hooks:
            return super().__call__(x)
        return x
