"""The Hyena mixer (layers/hyena.py): FFT convolution against the definition, cached decoding against one full
forward, causality, left padding, generation, training, state size and parameter count."""
import pytest
import torch

import llmarch
from llmarch.config import ModelConfig
from llmarch.layers.attention import AttentionContext
from llmarch.layers.hyena import Hyena, direct_causal_conv, fft_causal_conv
from llmarch.models import TransformerLM


def tiny_config(**overrides) -> ModelConfig:
    fields = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, mixer="hyena", norm="rmsnorm", positions="none",
                  context_length=64, ffn="swiglu", ffn_hidden=64)
    return ModelConfig(**{**fields, **overrides})


def tiny_model(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(tiny_config(**overrides)).eval()


def mixer_ctx(pos: torch.Tensor, kv_len: int | None = None) -> AttentionContext:
    return AttentionContext(mask=None, causal=True, rope=None, input_pos=pos, kv_len=kv_len)


def test_fft_conv_matches_direct():
    torch.manual_seed(0)
    z, h = torch.randn(2, 5, 37), torch.randn(5, 37) * torch.exp(-torch.arange(37) / 10.0)
    expected = direct_causal_conv(z, h)
    assert torch.allclose(fft_causal_conv(z, h), expected, rtol=1e-5, atol=1e-5 * expected.abs().max())
    # a few output positions only, as the decode step computes them
    at = torch.tensor([0, 17, 36])
    assert torch.allclose(direct_causal_conv(z, h, at), expected[..., at], atol=1e-6)
    # y_t depends on z_s for s <= t only, through h_{t-s}
    one = torch.zeros(1, 5, 37)
    one[..., 4] = 1.0
    assert torch.allclose(fft_causal_conv(one, h)[0, :, 4:], h[:, :33], atol=1e-6)
    assert fft_causal_conv(one, h)[0, :, :4].abs().max() < 1e-6


def test_filter_independent_of_length():
    mixer = tiny_model().blocks[0].mixer
    with torch.no_grad():
        long, short = mixer.filter(64), mixer.filter(10)
    assert long.shape == (2, 32, 64)
    assert torch.allclose(short, long[..., :10], atol=1e-6)


@pytest.mark.parametrize("kv_len", [True, False], ids=["kv_len", "whole-buffer"])
def test_cached_mixer_matches_uncached(kv_len):
    """A prefill, a chunk of 3, then one token at a time equals one call over the whole sequence."""
    mixer = tiny_model().blocks[0].mixer
    torch.manual_seed(1)
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        full = mixer(x, mixer_ctx(torch.arange(16)))
        mixer.cache = mixer.new_state(2, 16, torch.float32, "cpu")
        outs, start = [], 0
        for stop in [5, 8, *range(9, 17)]:
            pos = torch.arange(start, stop)
            outs.append(mixer(x[:, start:stop], mixer_ctx(pos, stop if kv_len else None)))
            start = stop
        mixer.cache = None
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5 * full.abs().max())


def test_causal_mixer_and_model():
    model = tiny_model()
    torch.manual_seed(2)
    x = torch.randn(1, 20, 32)
    y = x.clone()
    y[:, 12:] = torch.randn(1, 8, 32)
    ids = torch.randint(0, 64, (2, 20))
    other = ids.clone()
    other[:, 12:] = (other[:, 12:] + 1) % 64
    with torch.no_grad():
        mixer = model.blocks[0].mixer
        a, b = mixer(x, mixer_ctx(torch.arange(20))), mixer(y, mixer_ctx(torch.arange(20)))
        la, lb = model(ids).logits, model(other).logits
    # the FFT spreads rounding error over all positions, so equal to fp32 precision rather than bit for bit
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6 * a.abs().max())
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3 * a.abs().max())
    assert torch.allclose(la[:, :12], lb[:, :12], atol=1e-6) and not torch.allclose(la[:, 12:], lb[:, 12:])


def test_left_padding_matches_unpadded():
    model = tiny_model()
    torch.manual_seed(3)
    ids = torch.randint(0, 64, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    ids[1, :5] = 0
    with torch.no_grad():
        padded = model(ids, attention_mask=mask).logits
        alone = model(ids[1:, 5:]).logits
    assert torch.allclose(padded[1, 5:], alone[0], atol=1e-5)


def greedy_by_recompute(model, prompt: list[int], n: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0].tolist()


def test_generate_matches_recompute():
    model = tiny_model()
    torch.manual_seed(4)
    ids = torch.randint(0, 64, (2, 6))
    out = llmarch.generate(model, ids, max_new_tokens=8)
    assert out.tolist() == [greedy_by_recompute(model, row, 8) for row in ids.tolist()]


def test_generate_left_padded_matches_recompute():
    model = tiny_model()
    prompts = [[5, 9, 1, 33, 7, 2], [40, 3]]
    out = llmarch.generate(model, prompts, max_new_tokens=8)
    assert out == [greedy_by_recompute(model, p, 8) for p in prompts]


def test_trains():
    model = tiny_model().train()
    torch.manual_seed(5)
    ids = torch.randint(0, 64, (4, 32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        logits = model(ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert model.blocks[0].mixer.filter.ffn[-1].weight.grad.abs().sum() > 0  # the filters learn too


def test_state_bytes_and_reorder():
    cfg = tiny_config()
    mixer = Hyena(cfg)
    state = mixer.new_state(3, 16, torch.bfloat16, "cpu")
    N, d, L, K = cfg.hyena_order, cfg.d_model, 16, cfg.hyena_short_conv  # the history: max_len 16 tokens
    assert 16 < cfg.context_length
    per_row = (N * d * L + (N + 1) * d * (K - 1)) * 2  # the z^n history and the short conv's inputs, bf16
    assert state.nbytes == 3 * per_row + N * d * L * 4  # + the filters (taps), fp32, shared by the rows
    state["z"][1].fill_(1.0)
    state.reorder(torch.tensor([1, 1, 0]))
    assert state["z"][0].eq(1).all() and state["z"][2].eq(0).all() and state.taps.shape == (N, d, L)


def hyena_params(d: int, N: int, H: int, F: int, K: int, bias: bool) -> int:
    """in_proj, short conv, filter FFN (Linear, Sin, Linear, Sin, Linear without bias), skip terms, out_proj."""
    b = int(bias)
    return ((N + 1) * d * d + b * (N + 1) * d) + ((N + 1) * d * K + b * (N + 1) * d) \
        + (F * H + H) + H + (H * H + H) + H + H * N * d + N * d + (d * d + b * d)


@pytest.mark.parametrize("overrides", [{}, dict(bias=False, hyena_order=3, hyena_filter_hidden=16,
                                                hyena_filter_features=9, hyena_short_conv=4)])
def test_parameter_count(overrides):
    cfg = tiny_config(**overrides)
    n = sum(p.numel() for p in Hyena(cfg).parameters())
    assert n == hyena_params(cfg.d_model, cfg.hyena_order, cfg.hyena_filter_hidden, cfg.hyena_filter_features,
                             cfg.hyena_short_conv, cfg.bias)
