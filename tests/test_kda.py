"""Kimi Delta Attention (layers/kda.py): the chunked form and the one-token step against the paper's recurrence
written out here token by token, strong decays without overflow, the mixer at any chunk length with decoding
continuing it, left padding, and its config checks."""
import pytest
import torch
import torch.nn.functional as F

import llmarch
from llmarch import LlmarchError
from llmarch.layers.gated_deltanet import delta_step
from llmarch.layers.kda import chunk_kda

from conftest import stepwise_logits

SMALL = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, context_length=128)


def random_inputs(b=2, T=37, H=3, dk=8, dv=8, seed=0, decay=2.0):
    torch.manual_seed(seed)
    q, k = (F.normalize(torch.randn(b, T, H, dk), dim=-1) for _ in range(2))
    v, beta = torch.randn(b, T, H, dv), torch.rand(b, T, H)
    g = -decay * torch.rand(b, T, H, dk)  # a decay per key channel
    return q, k, v, g, beta, torch.randn(b, H, dk, dv)


def recurrence(q, k, v, g, beta, S0):
    """Kimi Linear eq. 1, one token and one head at a time: S_t = (I - b k k^T) Diag(alpha) S_{t-1} + b k v^T,
    o_t = S_t^T q_t."""
    b, T, H, dk = k.shape
    S, out = S0.clone(), torch.zeros(b, T, H, v.shape[-1])
    for n in range(b):
        for h in range(H):
            for t in range(T):
                kt, bt = k[n, t, h], beta[n, t, h]
                S[n, h] = (torch.eye(dk) - bt * torch.outer(kt, kt)) @ torch.diag(g[n, t, h].exp()) @ S[n, h] \
                    + bt * torch.outer(kt, v[n, t, h])
                out[n, t, h] = S[n, h].T @ q[n, t, h]
    return out, S


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_form_equals_the_recurrence(chunk):
    q, k, v, g, beta, S0 = random_inputs()
    o, last = chunk_kda(q, k, v, g, beta, S0, chunk)
    want, S = recurrence(q, k, v, g, beta, S0)
    assert (o - want).abs().max() < 1e-5
    assert (last - S).abs().max() < 1e-5


def test_one_step_is_the_recurrence():
    q, k, v, g, beta, S0 = random_inputs(T=6)
    S, steps = S0.clone(), []
    for t in range(6):
        steps.append(delta_step(q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t], S))
    want, last = recurrence(q, k, v, g, beta, S0)
    assert (torch.stack(steps, 1) - want).abs().max() < 1e-5
    assert (S - last).abs().max() < 1e-5


def test_strong_decay_stays_finite_over_a_long_chunk():
    """Decays of e^-60 per step: a factorised form (K e^-G)(K e^G)^T would overflow inside a 64-token chunk."""
    q, k, v, g, beta, S0 = random_inputs(T=70, H=2, decay=60.0)
    o, last = chunk_kda(q, k, v, g, beta, S0, 64)
    want, S = recurrence(q, k, v, g, beta, S0)
    assert torch.isfinite(o).all() and (o - want).abs().max() < 1e-5 and (last - S).abs().max() < 1e-5


def kda_model(**overrides):
    torch.manual_seed(0)
    return llmarch.build("llama-tiny", **{**SMALL, "mixer": "kda", "ssm_conv_bias": False, **overrides}).eval()


@pytest.mark.parametrize("chunk", [4, 7, 64])
def test_any_chunk_gives_the_same_model_and_decoding_continues_it(chunk):
    model = kda_model(delta_heads=2, delta_key_dim=8, ssm_chunk=chunk)
    reference = kda_model(delta_heads=2, delta_key_dim=8, ssm_chunk=1)
    ids = torch.randint(0, 61, (2, 30))
    with torch.no_grad():
        full, one = model(ids).logits, reference(ids).logits
    assert (full - one).abs().max() < 1e-4
    assert (stepwise_logits(model, ids, 21) - full).abs().max() < 1e-4


def test_left_padding_leaves_the_state_untouched():
    model = kda_model(ssm_chunk=4, ssm_conv_bias=True)
    ids = torch.randint(1, 61, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    with torch.no_grad():
        padded = model(ids, attention_mask=mask).logits
        alone = model(ids[1:, 5:]).logits
    assert (padded[1, 5:] - alone[0]).abs().max() < 1e-5


def test_state_is_constant_in_the_context():
    model = kda_model(delta_heads=2, delta_key_dim=8)
    model.setup_cache(1, 16)
    small = model.blocks[0].seq_mixer.cache.nbytes
    model.clear_cache()
    model.setup_cache(1, 128)
    assert model.blocks[0].seq_mixer.cache.nbytes == small == 2 * 8 * 8 * 4 + 3 * 16 * 3 * 4
    model.clear_cache()


@pytest.mark.parametrize("overrides, message", [
    (dict(delta_heads=2, delta_value_heads=4), "delta_value_heads=4 must equal delta_heads=2"),
    (dict(delta_key_dim=8, delta_value_dim=4), "delta_value_dim=4 must equal delta_key_dim=8"),
    (dict(ssm_bias=True), "no projection biases"),
    (dict(causal=False), "mixer='kda' is causal"),
    (dict(delta_key_dim=0), "delta_key_dim must be a positive integer"),
])
def test_bad_configs_are_one_line_errors(overrides, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.resolve("llama-tiny", **{**SMALL, "mixer": "kda", **overrides})
