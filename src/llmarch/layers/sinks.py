"""Learned attention sinks (gpt-oss model card; the "attention sink" of Xiao et al. 2023, "Efficient Streaming
Language Models with Attention Sinks", learned here as one logit per head): head h's softmax gets one more
term in its denominator, exp(s_h), a key that takes no value, so a query may attend to "nothing":

    out_i = sum_j exp(a_ij) v_j / (exp(s_h) + sum_j exp(a_ij))

Three equivalent ways to compute it, one per kind of kernel:
- materialised scores: a column s_h appended before the softmax and dropped after (`sink_softmax`);
- a fused kernel that takes an additive mask (sdpa): one extra key of zeros, whose value is zeros and whose
  score the mask sets to s_h (`with_sink_key`); the mask is then per head, (B|1, H, T, S + 1), as large as the
  scores, and k, v are copied once more per call: the price of keeping sdpa's kernel;
- a kernel that returns each query's log-sum-exp L over the real keys (blockwise, FlexAttention): the output
  rescaled by exp(L) / (exp(L) + exp(s_h)) = sigmoid(L - s_h) (`rescale_by_sinks`).
Shapes: B batch, H query heads, K key/value heads, T queries, S keys, D head dim."""
from __future__ import annotations

import torch


def _column(sinks: torch.Tensor, H: int) -> torch.Tensor:
    """The sink logits as a column of scores: (H,) learned per head -> (1, H, 1, 1); (B, H, T) per token (Inkling
    2's sink_proj) -> (B, H, T, 1)."""
    return sinks.view(1, H, 1, 1) if sinks.dim() == 1 else sinks[..., None]


def sink_softmax(scores: torch.Tensor, sinks: torch.Tensor) -> torch.Tensor:
    """scores (B, H, T, S), -inf where barred -> probabilities (B, H, T, S) that sum to less than 1 (fp32)."""
    B, H, T, _ = scores.shape
    column = _column(sinks.float(), H).expand(B, H, T, 1)
    return torch.cat([scores.float(), column], dim=-1).softmax(dim=-1)[..., :-1]


def with_sink_key(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
                  sinks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k, v (B, K, S, D) with one more key of zeros at slot S, and an additive float mask (B|1, H, T, S + 1)
    that keeps `mask` (bool, True = may attend, or float; None with causal: causal, bottom-right aligned)
    over the real keys and sets the extra key's score, q . 0 + s_h, to s_h."""
    B, H, T, _ = q.shape
    S = k.shape[2]
    if mask is None and causal:
        mask = torch.ones(1, 1, T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if mask is None:
        bias = q.new_zeros(1, H, T, S)
    elif mask.dtype == torch.bool:
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
    else:
        bias = mask.to(q.dtype)
    bias = bias.expand(bias.shape[0], H, T, S)
    column = _column(sinks.to(q.dtype), H)
    column = column.expand(max(bias.shape[0], column.shape[0]), H, T, 1)
    bias = bias.expand(column.shape[0], H, T, S)
    zeros = k.new_zeros(k.shape[0], k.shape[1], 1, k.shape[3])
    return torch.cat([k, zeros], dim=2), torch.cat([v, v.new_zeros(zeros.shape[:3] + v.shape[3:])], dim=2), \
        torch.cat([bias, column], dim=-1)


def rescale_by_sinks(out: torch.Tensor, lse: torch.Tensor, sinks: torch.Tensor) -> torch.Tensor:
    """out (B, H, T, D) normalised over the real keys, lse (B, H, T) their log-sum-exp -> out with the sink in
    the denominator."""
    weight = torch.sigmoid(lse.float() - sinks.float().view(1, -1, 1))
    return (out.float() * weight[..., None]).to(out.dtype)
