import math

import pytest
import torch

from llmarch.layers.norms import RMSNorm
from llmarch.layers.positions import RotaryPositions, SinusoidalPositions, apply_rotary
from llmarch import ModelConfig

from conftest import tiny


def test_rope_matches_its_formula():
    """Pair (x_i, x_{i+d/2}) at position p is rotated by angle p * theta^(-2i/d) (Su et al. 2021, eq. 34)."""
    d, theta = 8, 10000.0
    cfg = ModelConfig(d_model=16, n_heads=2, positions="rope", rope_theta=theta)
    rope = RotaryPositions(cfg)
    x = torch.randn(1, 1, 5, d)  # (B, H, T, D)
    pos = torch.arange(5)[None]
    out = apply_rotary(x, *rope.rotary(pos))
    for p in range(5):
        for i in range(d // 2):
            angle = p * theta ** (-2 * i / d)
            a, b = x[0, 0, p, i], x[0, 0, p, i + d // 2]
            c, s = math.cos(angle), math.sin(angle)
            assert out[0, 0, p, i].item() == pytest.approx((a * c - b * s).item(), abs=1e-5)
            assert out[0, 0, p, i + d // 2].item() == pytest.approx((a * s + b * c).item(), abs=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    cfg = ModelConfig(d_model=64, n_heads=1, positions="rope")
    rope = RotaryPositions(cfg)
    q, k = torch.randn(1, 1, 1, 64), torch.randn(1, 1, 1, 64)

    def score(pq, pk):
        rq = apply_rotary(q, *rope.rotary(torch.tensor([[pq]])))
        rk = apply_rotary(k, *rope.rotary(torch.tensor([[pk]])))
        return (rq * rk).sum().item()

    assert score(7, 3) == pytest.approx(score(14, 10), abs=1e-4)


def test_sinusoidal_matches_its_formula():
    cfg = ModelConfig(d_model=8, n_heads=2, positions="sinusoidal", context_length=10)
    table = SinusoidalPositions(cfg).table
    assert table[3, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 8)))
    assert table[3, 3].item() == pytest.approx(math.cos(3 / 10000 ** (2 / 8)))


def test_rmsnorm_formula():
    norm = RMSNorm(4, eps=1e-6)
    norm.weight.data = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    rms = math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6)
    assert torch.allclose(norm(x), x / rms * norm.weight, atol=1e-6)


def test_rmsnorm_without_grad_is_the_formula_to_fp32_precision():
    """Inference on a CPU takes LayerNorm([x, -x])'s first half (one fused kernel); training takes rms_norm.
    Both are the formula, computed in float64, to a few fp32 ulps of the output's scale, at widths whose
    vectorised sums split [x, -x] unevenly (576: SmolLM2) and for inputs far from zero mean."""
    torch.manual_seed(0)
    for d in (4, 64, 576, 960):
        norm = RMSNorm(d, eps=1e-6)
        norm.weight.data = torch.randn(d)
        for scale, offset in ((1.0, 0.0), (100.0, 50.0), (1.0, 1e3), (1e-4, 0.0)):
            x = torch.randn(3, 5, d) * scale + offset
            ref = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
            with torch.no_grad():
                fast = norm(x)
            trained = norm(x.requires_grad_())
            for y in (fast, trained):
                assert (y.double() - ref).abs().max() <= 1e-6 * ref.abs().max()
            trained.sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("base, kv", [("llama-tiny", 4), ("llama-tiny", 2), ("llama-tiny", 1), ("gpt-tiny", 4)])
def test_sdpa_equals_eager(base, kv):
    model = tiny(base, n_kv_heads=kv)
    eager = tiny(base, n_kv_heads=kv, attention="eager")
    eager.load_state_dict(model.state_dict())
    x = torch.randint(0, 97, (2, 20))
    assert torch.allclose(model(x).logits, eager(x).logits, atol=1e-5)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :7] = 0
    assert torch.allclose(model(x, attention_mask=mask).logits, eager(x, attention_mask=mask).logits, atol=1e-5)


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_one_query_gqa_folds_each_groups_heads_into_queries_of_its_kv_head(kv):
    """A decoding step's one query per head under GQA runs as `groups` queries of each KV head (sdpa_attention):
    the same values as eager attention with the KV heads repeated, with and without a padding mask; and a
    padded batch decoded with the KV cache gives the full forward's last logits."""
    from llmarch.layers.attention import eager_attention, sdpa_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 1, 8), torch.randn(2, kv, 9, 8), torch.randn(2, kv, 9, 8)
    pad = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    pad[1, ..., :3] = False
    for mask in (None, pad):
        want = eager_attention(q, k, v, mask, False, 0.0, lambda pattern: pattern)
        assert (sdpa_attention(q, k, v, mask, False, 0.0, None) - want).abs().max() < 1e-6
    from llmarch.generate.engine import Engine

    model = tiny(n_kv_heads=kv)
    x = torch.randint(0, 97, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :4] = 0  # row 1 left-padded: its decode step carries a padding mask
    with torch.inference_mode():
        full = model(x, attention_mask=mask).logits[:, -1]
        with Engine(model, 2, 12, mask) as engine:
            engine.prefill(x[:, :11])
            step = engine.decode(x[:, 11])
    assert (step - full).abs().max() < 1e-5


def test_gqa_with_all_kv_heads_equals_mha():
    """GQA with n_kv_heads = n_heads is MHA: same weights, same logits as a config that leaves kv heads unset."""
    mha = tiny(n_kv_heads=None)
    gqa = tiny(n_kv_heads=4)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randint(0, 97, (2, 16))
    assert torch.equal(mha(x).logits, gqa(x).logits)


def test_gqa_shares_kv_heads_across_groups():
    """GQA with 2 kv heads equals MHA whose k/v projections repeat each kv head for its group of 2 query heads."""
    gqa = tiny(n_kv_heads=2, attention="eager")
    mha = tiny(n_kv_heads=4, attention="eager")
    state = gqa.state_dict()
    for i in range(2):
        name = f"blocks.{i}.attn.qkv_proj.weight"
        q, k, v = state[name].split([64, 32, 32])  # 4 query heads, 2 kv heads, head dim 16
        state[name] = torch.cat([q, *(t.view(2, 16, 64).repeat_interleave(2, dim=0).reshape(64, 64) for t in (k, v))])
    mha.load_state_dict(state)
    x = torch.randint(0, 97, (1, 12))
    assert torch.allclose(gqa(x).logits, mha(x).logits, atol=1e-5)


@pytest.mark.parametrize("ffn", ["gelu", "gelu_tanh", "relu", "swiglu", "geglu"])
@pytest.mark.parametrize("placement, block", [("pre", "sequential"), ("post", "sequential"), ("pre", "parallel")])
def test_every_part_combination_runs_and_learns_shape(ffn, placement, block):
    model = tiny("gpt-tiny", ffn=ffn, norm_placement=placement, block=block, positions="sinusoidal")
    out = model(torch.randint(0, 97, (2, 9))).logits
    assert out.shape == (2, 9, 97) and torch.isfinite(out).all()
