"""No sequence mixer: a block that is its FFN alone, x += ffn(norm(x)), with no mixing across positions and no
norm before a mixer. Nemotron-H (NVIDIA 2025, "Nemotron-H: A Family of Accurate and Efficient Hybrid Mamba-Transformer
Models", §2.1) gives each layer ONE sublayer: Mamba-2, attention, an MLP or a mixture of experts; its MLP and MoE
layers are blocks with mixer='none' (and its Mamba-2 and attention layers blocks with ffn='none': layer_overrides).
The block skips the mixer's sublayer entirely (`mixes` False), so it costs nothing and holds no parameters; its
decode state is empty. With ffn='none' too the block is the identity: the empty layers a NAS search leaves
(Llama-3.1-Nemotron-Ultra-253B's, whose block_configs give a layer neither attention nor an FFN)."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from .mixer import MIXERS, Mixer
from .ssm import MixerState


class NoState(MixerState):
    """An empty decode state: nothing to reorder, move or rewind."""

    by_slot = True  # it holds no history, so decoding may rewind through it (speculative decoding)


@MIXERS.register("none")
class NoMixer(Mixer):
    mixes = False
    residual_out = ()

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.block != "sequential" or cfg.norm_placement != "pre" or cfg.n_decoder_layers:
            raise LlmarchError("mixer='none' (a block that is its FFN alone) needs a sequential pre-norm block of a "
                               "decoder-only or encoder-only stack")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> NoState:
        return NoState()

    def state_note(self, dtype: str) -> str:
        return ""  # no state to describe (llmarch info lists the other mixers' notes)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        """What it adds to the residual stream: nothing (its block does not call it)."""
        return torch.zeros_like(x)
