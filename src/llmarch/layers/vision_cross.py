"""Llama 3.2 Vision's cross-attention layer (Meta 2024, "The Llama 3 Herd of Models", §7.3: cross-attention
layers between every fourth self-attention layer of the language model; transformers' MllamaCrossAttentionDecoderLayer):
with image states v, x += tanh(g_attn) * CrossAttn(n1(x), v), each head's queries and keys RMS-normed (q_norm,
k_norm), then x += tanh(g_mlp) * MLP(n2(x)). Without image states the layer is skipped whole, as the text-only path of
MllamaTextModel skips it: llmarch's decoder stacks carry no image states, so a block with mixer 'vision_cross' is the
identity. It holds the layer's weights so that a checkpoint read and written back keeps them (`mixes` False: the block
runs no sublayer; `holds_ffn`: it builds no FFN of its own); the image path is not implemented."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .ffn_factory import make_ffn
from .linear import Linear
from .mixer import MIXERS, Mixer
from .no_mixer import NoState
from .norms import make_norm


@MIXERS.register("vision_cross")
class VisionCross(Mixer):
    mixes = False
    holds_ffn = True
    runs = False
    residual_out = ("o_proj.weight", "mlp.down.weight")

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.n_decoder_layers or not cfg.causal:
            raise LlmarchError("mixer='vision_cross' (Llama 3.2 Vision's cross-attention layer) belongs to a "
                               "decoder-only stack")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        H, K, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.input_norm, self.post_norm = make_norm(cfg), make_norm(cfg)
        self.q_proj = Linear(cfg.d_model, H * D, bias=False)
        self.k_proj = Linear(cfg.d_model, K * D, bias=False)  # over image states already at d_model
        self.v_proj = Linear(cfg.d_model, K * D, bias=False)
        self.o_proj = Linear(H * D, cfg.d_model, bias=False)
        self.q_norm, self.k_norm = make_norm(cfg, D), make_norm(cfg, D)
        self.attn_gate, self.mlp_gate = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))  # tanh-gated adds
        self.mlp = make_ffn(cfg, layer)

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> NoState:
        return NoState()

    def state_note(self, dtype: str) -> str:
        return ""

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        """What it adds to the residual stream without image states: nothing (its block does not call it)."""
        return torch.zeros_like(x)
