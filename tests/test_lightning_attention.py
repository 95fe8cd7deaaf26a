"""Lightning attention's blockwise form (Lightning Attention-2, Alg. 1) against its recurrence written out token by
token, S_t = exp(-s) S_{t-1} + k_t^T v_t, o_t = q_t S_t, at block lengths that do and do not divide the sequence,
continued from a carried state; and the block's normed-residual placement and residual_alpha refused where they
cannot apply."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.layers.attention_kinds.lightning import decay_rates, lightning_attention


def recurrence(q, k, v, rates):
    S = torch.zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1])
    out = []
    for t in range(q.shape[2]):
        S = torch.exp(-rates) * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        out.append(q[:, :, t:t + 1] @ S)
    return torch.cat(out, dim=2), S


@pytest.mark.parametrize("block", [1, 5, 8, 64])
def test_blocks_equal_the_recurrence(block):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 29, 8) * 0.5 for _ in range(3))
    rates = decay_rates(4, 0, 3)  # the first layer decays fastest: e^-0.25 per step in head 0
    want, state = recurrence(q, k, v, rates)
    got, s = lightning_attention(q, k, v, rates, None, block)
    assert (got - want).abs().max() < 1e-5 and (s - state).abs().max() < 1e-5
    first, s = lightning_attention(q[:, :, :17], k[:, :, :17], v[:, :, :17], rates, None, block)
    rest, s = lightning_attention(q[:, :, 17:], k[:, :, 17:], v[:, :, 17:], rates, s, block)
    assert (torch.cat((first, rest), dim=2) - want).abs().max() < 1e-5


def test_decay_rates_follow_heads_and_depth():
    first, last = decay_rates(8, 0, 4), decay_rates(8, 3, 4)
    assert torch.allclose(first.flatten(), 2.0 ** (-torch.arange(1, 9, dtype=torch.float32)) * (1 + 1e-5))
    assert (last < 1e-3 * first).all()  # the last layer barely forgets


def test_refusals():
    with pytest.raises(LlmarchError, match="n_kv_heads = n_heads"):
        llmarch.build("llama-tiny", attention="lightning")
    with pytest.raises(LlmarchError, match="residual_alpha"):
        llmarch.build("llama-tiny", block="parallel", residual_alpha=2.0)
