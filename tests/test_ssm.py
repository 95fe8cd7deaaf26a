"""Mamba and Mamba-2 mixers (layers/mamba.py, layers/mamba2.py) and hybrid stacks: the parallel scans against
the recurrence they compute, the gradient of the fused scan, cached decoding (prompt, then one token at a
time) against one full forward token by token, causality, left padding, per-layer patterns, the published
parameter count, configuration errors. Parity with transformers: tests/parity/test_hf_families.py."""
import pytest
import torch

import llmarch
from llmarch.config import ModelConfig
from llmarch.errors import LlmarchError
from llmarch.layers.mamba import _SelectiveScan, selective_scan, selective_scan_reference
from llmarch.layers.mamba2 import ssd_scan, ssd_step
from llmarch.models import TransformerLM

BASE = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, norm="rmsnorm", positions="none", context_length=64)
KINDS = {
    "mamba": dict(mixer="mamba", ffn="none", ssm_state=8),
    "mamba2": dict(mixer="mamba2", ffn="none", ssm_state=8, ssm_head_dim=16, ssm_groups=2, ssm_chunk=8),
    "mamba-inner-norm": dict(mixer="mamba", ffn="swiglu", ffn_hidden=48, ssm_state=8, ssm_inner_norm=True),
    # Jamba's pattern in miniature: attention in layer 1 of every 2, a mixture of experts in layer 2 of 3
    "hybrid": dict(mixer="mamba", n_layers=3, attn_period=2, attn_offset=1, ffn="swiglu", ffn_hidden=48,
                   n_experts=4, experts_per_token=2, moe_period=3, moe_offset=2, n_kv_heads=2, ssm_state=8),
    "hybrid-mamba2": dict(mixer="mamba2", n_layers=3, attn_period=3, ffn="swiglu", ffn_hidden=48, ssm_state=8,
                          ssm_head_dim=16, ssm_chunk=4, positions="rope"),
}


def model(kind: str, **overrides) -> TransformerLM:
    torch.manual_seed(0)
    m = TransformerLM(ModelConfig(**{**BASE, **KINDS[kind], **overrides})).eval()
    with torch.no_grad():  # non-trivial gains, so a gain applied in the wrong place cannot hide
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return m


@pytest.mark.parametrize("T", [1, 2, 3, 7, 16, 37])
def test_selective_scan_equals_the_recurrence(T):
    torch.manual_seed(T)
    b, D, N = 2, 6, 4
    x, dt, A = torch.randn(b, T, D), torch.rand(b, T, D), -torch.rand(D, N) * 3
    B, C, h0 = torch.randn(b, T, N), torch.randn(b, T, N), torch.randn(b, D, N)
    for start in (None, h0):
        y, last = selective_scan(x, dt, A, B, C, start)
        y_ref, last_ref = selective_scan_reference(x, dt, A, B, C, start)
        assert (y - y_ref).abs().max() < 1e-5 and (last - last_ref).abs().max() < 1e-5


@pytest.mark.parametrize("T", [1, 6, 16])
def test_fused_scan_gradient(T):
    """The hand-written backward (a reverse scan) against finite differences, in fp64."""
    torch.manual_seed(0)
    d = torch.float64
    args = [torch.rand(2, T, 3, dtype=d), -torch.rand(3, 2, dtype=d), torch.randn(2, T, 3, dtype=d),
            torch.randn(2, T, 2, dtype=d), torch.randn(2, T, 2, dtype=d), torch.randn(2, 3, 2, dtype=d)]
    assert torch.autograd.gradcheck(_SelectiveScan.apply, [a.requires_grad_() for a in args])


def ssd_reference(x, dt, a, B, C, h):
    """h_t = exp(dt_t a) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t, per head, one step at a time."""
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t] * a)[..., None, None] * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, C[:, t]))
    return torch.stack(ys, 1), h


@pytest.mark.parametrize("T,chunk", [(1, 4), (5, 4), (8, 4), (13, 4), (13, 64), (20, 1)])
def test_ssd_chunked_scan_and_step_equal_the_recurrence(T, chunk):
    torch.manual_seed(T)
    b, H, P, N = 2, 3, 4, 5
    x, dt, a = torch.randn(b, T, H, P), torch.rand(b, T, H), -torch.rand(H) * 2
    B, C, h0 = torch.randn(b, T, H, N), torch.randn(b, T, H, N), torch.randn(b, H, P, N)
    y_ref, last_ref = ssd_reference(x, dt, a, B, C, h0)
    y, last = ssd_scan(x, dt, a, B, C, h0, chunk)
    assert (y - y_ref).abs().max() < 1e-4 and (last - last_ref).abs().max() < 1e-4
    h = h0.clone()
    steps = torch.stack([ssd_step(x[:, t], dt[:, t], a, B[:, t], C[:, t], h) for t in range(T)], 1)
    assert (steps - y_ref).abs().max() < 1e-4 and (h - last_ref).abs().max() < 1e-4


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_prompt_then_one_token_at_a_time_equals_the_full_forward(kind):
    """The recurrent path (conv state + SSM state, KV caches for attention layers) equals the parallel form
    token by token: a prompt of 9, a chunk of 3, then single tokens."""
    m = model(kind)
    ids = torch.randint(0, 64, (2, 17))
    with torch.no_grad():
        full = m(ids).logits
        m.setup_cache(2, 17)
        parts = [m(ids[:, :9], input_pos=torch.arange(9), kv_len=9).logits,
                 m(ids[:, 9:12], input_pos=torch.arange(9, 12), kv_len=12).logits]
        parts += [m(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(12, 17)]
        m.clear_cache()
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-4


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_causal_future_tokens_do_not_change_past_logits(kind):
    m = model(kind)
    ids = torch.randint(0, 64, (1, 20))
    changed = ids.clone()
    changed[0, 12:] = (changed[0, 12:] + 1) % 64
    with torch.no_grad():
        a, b = m(ids).logits, m(changed).logits
    assert torch.equal(a[:, :12], b[:, :12]) or (a[:, :12] - b[:, :12]).abs().max() < 1e-6
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_left_padded_row_equals_the_row_alone_and_generation_matches_recompute(kind):
    m = model(kind)
    long, short = torch.randint(0, 64, (1, 12)), torch.randint(0, 64, (1, 7))
    batch = torch.cat([long, torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1)])
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    with torch.no_grad():
        padded, alone = m(batch, attention_mask=mask).logits, m(short).logits
    assert (padded[1, 5:] - alone[0]).abs().max() < 1e-4
    out = llmarch.generate(m, [long[0].tolist(), short[0].tolist()], max_new_tokens=6)
    for prompt, row in zip((long, short), out):
        ids = prompt.clone()
        with torch.no_grad():
            for _ in range(6):
                ids = torch.cat([ids, m(ids).logits[:, -1:].argmax(-1)], 1)
        assert row == ids[0].tolist()


def test_beam_search_reorders_the_states():
    m = model("hybrid")
    prompt = torch.randint(0, 64, (1, 6))
    beams = llmarch.generate(m, prompt, max_new_tokens=5, num_beams=3)
    assert beams.shape == (1, 11) and torch.equal(beams[:, :6], prompt)
    # beam search over one beam is greedy search
    assert torch.equal(llmarch.generate(m, prompt, max_new_tokens=5, num_beams=1),
                       llmarch.generate(m, prompt, max_new_tokens=5))


def test_per_layer_pattern_builds_the_named_parts():
    m = model("hybrid", n_layers=6)
    kinds = [type(b.seq_mixer).__name__.lower() for b in m.blocks]
    assert kinds == ["mamba", "attention", "mamba", "attention", "mamba", "attention"]
    moe = [type(b.mlp).__name__ for b in m.blocks]
    assert moe == ["GLU", "GLU", "MoE", "GLU", "GLU", "MoE"]
    assert not hasattr(m.blocks[0], "attn") and not hasattr(m.blocks[1], "mixer")
    plain = model("mamba")
    assert plain.blocks[0].mlp is None and plain.blocks[0].ln2 is None


def test_mamba_130m_has_the_published_parameter_count():
    from llmarch.analysis.accounting import model_facts

    assert model_facts(llmarch.resolve("mamba-130m"))["parameters"] == 129_135_360  # MambaForCausalLM's count


@pytest.mark.parametrize("kw,message", [
    (dict(mixer="rnn"), "unknown mixer 'rnn'"),
    (dict(mixer="mamba", causal=False), "mixer='mamba' is causal"),
    (dict(mixer="mamba", attn_period=2, attn_offset=2), "attn_offset in [0, attn_period)"),
    (dict(mixer="mamba2", ssm_head_dim=24), "must split into heads of ssm_head_dim=24"),
    (dict(mixer="mamba", ffn="none", n_experts=4), "ffn='none' has no FFN"),
    (dict(mixer="mamba", ssm_state=0), "ssm_state must be a positive integer"),
])
def test_bad_mixer_configs_are_one_line_errors(kw, message):
    with pytest.raises(LlmarchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ModelConfig(**{**BASE, **kw})


@pytest.mark.parametrize("preset,overrides", [("mamba-tiny", dict(n_layers=2)), ("hyena-tiny", dict(n_layers=2)),
                                              ("hybrid-tiny", dict(n_layers=4))])
def test_tiny_presets_learn_on_the_corpus(preset, overrides, tmp_path):
    """A shortened run on the embedded corpus, at half the presets' width (d_model 128): validation loss falls
    (hybrid-tiny at 4 layers keeps its pattern: Mamba, Mamba + experts, attention, Mamba + experts). Seen on the
    2-core VM, steps 10 -> 40: 3.70 -> 3.32 (Mamba), 3.67 -> 3.30 (Hyena), 3.68 -> 3.34 (hybrid); at the full
    width of 256 the drops were alike and the runs took twice the CPU."""
    from llmarch.train import TrainConfig, train

    tc = TrainConfig(steps=40, batch_size=8, eval_every=10, eval_tokens=2048, lr=3e-3, tokenizer="byte")
    cfg = llmarch.resolve(preset, context_length=64, vocab_size=257, d_model=128, **overrides)
    result = train(cfg, tc, tmp_path, verbose=False)
    vals = list(result.val_losses.values())
    assert vals[-1] < vals[0] - 0.1, vals
    again = llmarch.load(tmp_path)  # the run's checkpoint loads and generates
    assert len(llmarch.generate(again, [[10, 20, 30]], max_new_tokens=5)[0]) == 8


@pytest.mark.parametrize("preset", ["mamba-tiny", "mamba2-tiny", "hyena-tiny"])
def test_small_ssm_and_hyena_models_learn_associative_recall(preset):
    """3 key-value pairs over 8 values, then a key: the value's accuracy after 150 steps is well above chance
    (1/8); measured 0.46 (Mamba), 0.45 (Mamba-2), 0.42 (Hyena) on this seed."""
    from llmarch.data.synthetic import SyntheticTask
    from llmarch.train.synthetic import SyntheticConfig, train_synthetic

    extra = dict(ssm_head_dim=16, ssm_state=16) if preset == "mamba2-tiny" else {}
    cfg = llmarch.resolve(preset, vocab_size=16, d_model=64, n_layers=2, context_length=16, **extra)
    result = train_synthetic(cfg, SyntheticTask("recall", pairs=3, keys=8, values=8),
                             SyntheticConfig(steps=150, batch_size=64, lr=3e-3))
    assert result["accuracy"] > 0.3 and result["mixer"] == cfg.mixer
