"""Lightning attention (Qin et al. 2024, "Lightning Attention-2", arXiv 2401.04658; MiniMax 2025, "MiniMax-01",
arXiv 2501.08313, §2.2): linear attention without a denominator, each head h decaying its state by a fixed
exp(-s_h) per token (TransNormerLLM's decay):

    S_t = exp(-s_h) S_{t-1} + k_t^T v_t,      o_t = q_t S_t        (S: D x D per head, fp32)

with q, k, v the activated projections (act(x W), the FFN's activation: SiLU) and no score scale. It is computed
in blocks of B = attention_block tokens (Lightning Attention-2, Alg. 1): within a block the masked, decayed
products (q k^T * M) v, M[i, j] = exp(-s (i - j)) for j <= i; across blocks the state entering the block,
(q * exp(-s (i + 1))) S, then S <- exp(-s B) S + (k * exp(-s (B - 1 - j)))^T v. Decoding carries S alone: constant
in the context. The heads' outputs then go through an RMSNorm over all H x D channels (eps 1e-6, transformers'
MiniMaxLightningAttention) and times sigmoid(x W_g), the output gate, before o_proj.
The decay rates are ALiBi-like (MiniMax-01's code): s_h = 2^(-8 (h + 1) / H) * (1 - l / (L - 1) + 1e-5) at layer l
of L, so later layers forget more slowly. Padded positions' q, k, v are zeroed, so they write nothing.
Shapes: B batch, H heads, T positions, D head_dim."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..ffn import ACTIVATIONS, FFN_ACTIVATION
from ..linear import Linear
from ..linear_attention import LinearState
from ..mixer import per_sequence_bytes
from ..norms import RMSNorm
from .kind import ATTENTION_KINDS, AttentionKind

NORM_EPS = 1e-6  # the output norm's epsilon: transformers' MiniMaxLightningAttention leaves it at its default


def decay_rates(heads: int, layer: int, n_layers: int) -> torch.Tensor:
    """(H, 1, 1) s_h, as transformers' MiniMaxLightningAttention.get_slope_rate computes them; on the CPU whatever
    the default device (a model built on meta to be filled from a checkpoint still has them), moved at use."""
    base = 1 / (2 ** (8 / heads))
    factor = 1 - layer / (n_layers - 1 + 1e-5) + 1e-5
    return (base ** (torch.arange(heads, dtype=torch.float32, device="cpu") + 1) * factor)[:, None, None]


def lightning_attention(q, k, v, rates: torch.Tensor, state: torch.Tensor | None, block: int):
    """q, k, v (B, H, T, D), rates (H, 1, 1), state (B, H, D, D) or None -> (B, H, T, D) and the state after the
    last token, all in fp32 (Lightning Attention-2, Alg. 1: intra-block products, inter-block state)."""
    q, k, v = q.float(), k.float(), v.float()
    B, H, T, D = q.shape
    s = q.new_zeros(B, H, D, D) if state is None else state.float()
    out = []
    for start in range(0, T, block):
        qb, kb, vb = q[:, :, start:start + block], k[:, :, start:start + block], v[:, :, start:start + block]
        n = qb.shape[2]
        i = torch.arange(n, device=q.device, dtype=torch.float32)
        gap = i[:, None] - i[None, :]  # (n, n): i - j
        inner = torch.where(gap >= 0, torch.exp(-rates * gap.clamp(min=0)), 0.0)  # (H, n, n): M
        intra = ((qb @ kb.transpose(-1, -2)) * inner) @ vb
        inter = (qb * torch.exp(-rates * (i[:, None] + 1))) @ s
        out.append(intra + inter)
        s = s * torch.exp(-rates * n) + (kb * torch.exp(-rates * (n - 1 - i[:, None]))).transpose(-1, -2) @ vb
    return torch.cat(out, dim=2), s


class DecayState(LinearState):
    """Lightning attention's decode state: S (B, H, D, D) in fp32; no normaliser (z is empty)."""

    def __init__(self, batch: int, heads: int, head_dim: int, device):
        super().__init__(batch, heads, head_dim, head_dim, device)
        self.z = self.z[..., :0]


@ATTENTION_KINDS.register("lightning")
class Lightning(AttentionKind):
    state_note = "constant in the context; lightning-attention states in fp32"

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.block, self.act = cfg.attention_block, ACTIVATIONS[FFN_ACTIVATION[cfg.ffn]]
        self.rates = decay_rates(cfg.n_heads, layer, cfg.n_layers)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if not cfg.causal or cfg.n_kv_heads != cfg.n_heads or cfg.ffn not in FFN_ACTIVATION:
            raise LlmarchError(f"attention='lightning' is causal, with n_kv_heads = n_heads and an FFN kind with an "
                               f"activation (got causal={cfg.causal}, n_kv_heads={cfg.n_kv_heads} of {cfg.n_heads}, "
                               f"ffn={cfg.ffn!r})")
        if cfg.attn_output_gate:
            raise LlmarchError("attention='lightning' has its own output gate, after its norm: attn_output_gate "
                               "must be False")

    def modules(self, cfg, layer):
        width = cfg.n_heads * cfg.head_dim
        return {"norm": RMSNorm(width, NORM_EPS), "output_gate": Linear(cfg.d_model, width, bias=False)}

    def new_state(self, attn, batch, max_len, dtype, device):
        return DecayState(batch, attn.n_heads, attn.head_dim, device)

    def cache_bytes(self, attn, dtype, max_len):
        return 0, per_sequence_bytes(lambda batch: self.new_state(attn, batch, max_len, dtype, "meta"))

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        q, k, v = self.act(q), self.act(k), self.act(v)
        if ctx.pad_mask is not None:  # padding writes nothing to the state
            real = ctx.pad_mask[:, ctx.input_pos][:, None, :, None].to(q.dtype)
            q, k, v = q * real, k * real, v * real
        cache = attn.cache  # a LinearState: a plain attribute, not a registered module
        rates = self.rates.to(q.device)
        y, s = lightning_attention(q, k, v, rates, None if cache is None else cache.s, self.block)
        if cache is not None:
            cache.s.copy_(s)  # in place: a state over some rows of a larger one writes through
        B, H, T, D = y.shape
        y = attn._modules["norm"](y.to(q.dtype).transpose(1, 2).reshape(B, T, H * D))
        y = y * torch.sigmoid(attn._modules["output_gate"](x))
        return y.view(B, T, H, D).transpose(1, 2)
