"""Griffin's recurrent block (layers/rglru.py): its parallel scan and that scan's hand-written gradient against the
recurrence one step at a time, the clipped sqrt gradient, a short training run of griffin-tiny, and what
`llmarch info` reports of its caches. (Parity with transformers: tests/parity/test_rglru.py; causality and cached
decoding: tests/test_causality.py.)"""
import json

import pytest
import torch

import llmarch
from llmarch.cli import main
from llmarch.layers.rglru import MAX_SQRT_GRADIENT, _BoundedSqrt, linear_scan


def loop_scan(a, x, h0):
    h, out = h0, []
    for t in range(x.shape[1]):
        h = a[:, t] * h + x[:, t]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("T", [1, 7, 16])
def test_scan_and_its_gradient_equal_the_recurrence(T):
    torch.manual_seed(0)
    a, x, h0 = torch.rand(2, T, 5), torch.randn(2, T, 5), torch.randn(2, 5)
    weights = torch.randn(2, T, 5)
    grads = []
    for scan in (linear_scan, loop_scan):
        leaves = [t.clone().requires_grad_() for t in (a, x, h0)]
        out = scan(*leaves)
        (out * weights).sum().backward()
        grads.append((out.detach(), *[t.grad for t in leaves]))
    for ours, reference in zip(*grads):
        assert (ours - reference).abs().max() < 1e-5


def test_sqrt_gradient_is_clipped():
    x = torch.tensor([0.25, 0.0], requires_grad=True)
    _BoundedSqrt.apply(x).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, MAX_SQRT_GRADIENT]))


def test_griffin_tiny_trains():
    """Every parameter gets a finite gradient (the gates, Lambda and the convolution included), and a few AdamW steps
    on one batch lower its loss."""
    torch.manual_seed(0)
    model = llmarch.build("griffin-tiny", n_layers=3, layer_types=["recurrent", "recurrent", "attention"],
                          vocab_size=97, context_length=64)
    ids = torch.randint(0, 97, (2, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(8):
        logits = model(ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for name, p in model.named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_info_reports_its_caches(capsys):
    """griffin-tiny: the KV cache of its 2 window layers (1 KV head of 64, bf16) per token, and per sequence each
    of its 6 recurrent layers' convolution tail (3 x 256, bf16) and fp32 state (256). (`llmarch info` in this
    process: test_cli.py runs it as a command of its own.)"""
    assert main(["info", "griffin-tiny", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["kv_cache_bytes_per_token"] == 2 * 2 * 64 * 2
    assert facts["state_bytes_per_sequence"] == 6 * (3 * 256 * 2 + 256 * 4)
    code, out = main(["info", "griffin-tiny"]), capsys.readouterr().out
    assert code == 0 and "mixer rglru (attention in layers 2, 5)" in out
    assert "recurrent layers keep no per-token cache" in out and "RG-LRU states in fp32" in out
