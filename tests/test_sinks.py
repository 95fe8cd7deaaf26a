"""Learned attention sinks (layers/sinks.py): the three formulations agree with the definition, every kind that
takes sinks stays causal and decodes as it runs a whole sequence, and kinds that cannot take them say so."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.layers import ATTENTION, ATTENTION_KINDS
from llmarch.layers.attention_kinds import windowed_kinds
from llmarch.layers.sinks import rescale_by_sinks
from llmarch.layers.sparse_attention import SlidingWindow, blockwise_attention, flex_sparse_attention

SINK_KINDS = [k for k in ATTENTION_KINDS.names() if ATTENTION_KINDS[k].takes_sinks]


def reference(q, k, v, allowed, sinks):
    """softmax over [scores, s_h], the sink's column dropped, times v: the definition, in float64."""
    q, k, v = q.double(), k.double(), v.double()
    k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    column = sinks.double().view(1, -1, 1, 1).expand(*scores.shape[:3], 1)
    return torch.cat([scores, column], -1).softmax(-1)[..., :-1] @ v


def random_qkv(B=2, H=4, K=2, T=10, S=10, D=8):
    torch.manual_seed(0)
    return torch.randn(B, H, T, D), torch.randn(B, K, S, D), torch.randn(B, K, S, D), torch.randn(H) * 2


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_kernels_equal_the_definition(impl):
    q, k, v, sinks = random_qkv()
    causal = torch.ones(10, 10, dtype=torch.bool).tril()
    padded = causal & torch.tensor([[True] * 10, [False] * 3 + [True] * 7])[:, None, None, :]
    padded = padded | torch.eye(10, dtype=torch.bool)
    for mask, allowed in [(None, causal), (padded, padded)]:
        out = ATTENTION[impl](q, k, v, mask, True, 0.0, lambda p: p, sinks=sinks)
        assert (out.double() - reference(q, k, v, allowed, sinks)).abs().max() < 1e-5
    # one query over a cache (decoding): no mask, not causal
    out = ATTENTION[impl](q[:, :, -1:], k, v, None, False, 0.0, lambda p: p, sinks=sinks)
    assert (out.double() - reference(q[:, :, -1:], k, v, torch.ones(1, 10, dtype=torch.bool), sinks)).abs().max() < 1e-5


def test_eager_pattern_leaves_the_sinks_share_out():
    q, k, v, sinks = random_qkv()
    seen = []
    ATTENTION["eager"](q, k, v, None, True, 0.0, lambda p: seen.append(p) or p, sinks=sinks)
    assert (seen[0].sum(-1) < 1).all()


@pytest.mark.parametrize("engine", ["blockwise", "flex"])
def test_log_sum_exp_rescaling_equals_the_definition(engine):
    q, k, v, sinks = random_qkv(T=20, S=20)
    pattern, pad = SlidingWindow(5, 4), torch.tensor([[True] * 20, [False] * 6 + [True] * 14])
    if engine == "blockwise":
        out, lse = blockwise_attention(q, k, v, pattern, True, None, pad, return_lse=True)
    else:
        out, lse = flex_sparse_attention(q, k, v, pattern, True, None, pad, return_lse=True, compiled=False)
    i = torch.arange(20)
    allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 5)
    allowed = (allowed & pad[:, None, None, :]) | torch.eye(20, dtype=torch.bool)
    assert (rescale_by_sinks(out, lse, sinks).double() - reference(q, k, v, allowed, sinks)).abs().max() < 1e-5


def build(kind: str, impl: str = "sdpa"):
    torch.manual_seed(0)
    window = dict(sliding_window=12) if kind in windowed_kinds() else {}
    model = llmarch.build("llama-tiny", vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                          context_length=128, attention_block=8, attention=kind, attn_impl=impl, attn_sinks=True,
                          **window).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.sinks.normal_(0, 2)  # init 0; random, so a dropped or misplaced sink shows
    return model


@pytest.mark.parametrize("kind", SINK_KINDS)
def test_sinks_keep_causality_and_decoding(kind):
    assert {"full", "sliding_window"} <= set(SINK_KINDS)
    model = build(kind)
    torch.manual_seed(1)
    ids = torch.randint(0, 61, (2, 48))
    changed = ids.clone()
    changed[:, 30:] = torch.randint(0, 61, (2, 18))
    with torch.no_grad():
        full, other = model(ids).logits, model(changed).logits
        model.setup_cache(2, 48)
        steps = [model(ids[:, :40], input_pos=torch.arange(40), kv_len=40).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(40, 48)]
        model.clear_cache()
    assert (full[:, :30] - other[:, :30]).abs().max() < 1e-5
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
    with torch.no_grad():  # the sinks matter: without them the logits differ
        for block in model.blocks:
            block.attn.sinks.fill_(-1e4)
        assert (model(ids).logits - full).abs().max() > 1e-3


def test_eager_and_sdpa_models_agree_with_padding():
    eager, sdpa = build("full", "eager"), build("full", "sdpa")
    ids = torch.randint(0, 61, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, :5] = 0
    with torch.no_grad():
        a, b = eager(ids, attention_mask=mask).logits, sdpa(ids, attention_mask=mask).logits
    assert (a - b)[mask.bool()].abs().max() < 1e-5


def test_sinks_get_gradients():
    model = build("full").train()
    model(torch.randint(0, 61, (2, 16))).logits.logsumexp(-1).sum().backward()
    assert model.blocks[0].attn.sinks.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", [k for k in ATTENTION_KINDS.names() if k not in SINK_KINDS])
def test_kinds_without_sinks_say_so(kind):
    window = dict(sliding_window=12) if kind in windowed_kinds() else {}
    with pytest.raises(LlmarchError, match=f"attn_sinks=True and attention='{kind}'"):
        llmarch.preset("llama-tiny").replace(attention=kind, attn_sinks=True, **window)
