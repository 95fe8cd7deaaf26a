"""The parts issue 22's dense families brought: ALiBi (positions 'alibi'), QK-norm over whole projections
(qk_norm 'proj'), norms on sublayer outputs (norm_placement 'res_post') and LongRoPE (rope_scaling 'longrope'):
their definitions, padding and cached decoding, and their one-line config errors."""
import math

import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.analysis import run_with_cache
from llmarch.checkpoint import save_model
from llmarch.layers.positions import alibi_slopes

BASE = dict(vocab_size=61, d_model=48, n_layers=2, n_heads=6, context_length=128)


def build(base="alibi-tiny", **overrides):
    torch.manual_seed(0)
    return llmarch.build(base, **{**BASE, **overrides}).eval()


def test_alibi_slopes_as_the_paper_gives_them():
    # a power of two: the geometric sequence 2^(-8/n), ..., 2^(-8) (Press et al. 2022, §3)
    assert alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]
    # 6 heads: the 4-head slopes, then every other one of the 8-head slopes
    assert alibi_slopes(6).tolist() == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]


def test_alibi_slopes_equal_bloom_for_every_head_count():
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    for n in range(1, 65):
        assert torch.allclose(alibi_slopes(n), bloom._get_alibi_slopes(n, torch.device("cpu")), rtol=1e-6), n


def test_alibi_bias_is_minus_slope_times_distance_up_to_a_row_constant():
    model = build()
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]).bool()
    bias = model.positions.bias(torch.arange(6), 6, mask)  # (B, H, 1, S)
    slopes = alibi_slopes(6)
    for row, first in ((0, 2), (1, 0)):
        for i in range(first, 6):  # query i: keys first..i
            got = bias[row, :, 0, first:i + 1] - bias[row, :, 0, i:i + 1]
            want = -slopes[:, None] * (i - torch.arange(first, i + 1))
            assert torch.allclose(got, want)


def test_symmetric_alibi_is_minus_slope_times_distance_both_ways():
    """alibi_symmetric (JinaBERT-v2's): -m_h |i - j| for keys before and after the query, distances counted among
    a row's real tokens, so a right- or left-padded row gets what it would alone."""
    model = build(causal=False, alibi_symmetric=True)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]]).bool()
    bias = model.positions.bias(torch.arange(6), 6, mask)  # (B, H, T, S)
    want = -alibi_slopes(6)[:, None, None] * (torch.arange(4)[:, None] - torch.arange(4)[None]).abs()
    assert bias.shape == (2, 6, 6, 6)
    assert torch.equal(bias[0, :, :4, :4], want) and torch.equal(bias[1, :, 2:, 2:], want)


@pytest.mark.parametrize("family", ["bloom", "falcon"])
def test_alibi_bias_equals_transformers_on_padded_rows(family):
    """transformers' build_alibi_tensor over a left-padded mask, positions up to 600 (where Falcon's bfloat16
    rounding of slope * position shows): ours gives the same numbers, not only the same softmax."""
    module = pytest.importorskip(f"transformers.models.{family}.modeling_{family}")
    H, d = 12, 96
    mask = torch.ones(2, 600, dtype=torch.long)
    mask[1, :37] = 0
    theirs = module.build_alibi_tensor(mask, H, torch.float32).view(2, H, 1, 600)
    falcon = dict(alibi_bf16=True, alibi_scale=(d // H) ** -0.5) if family == "falcon" else {}
    if falcon:
        theirs = theirs / math.sqrt(d // H)
    model = build(n_heads=H, d_model=d, context_length=600, **falcon)
    ours = model.positions.bias(torch.arange(600), 600, mask.bool())
    real = mask.bool()[:, None, None, :].expand_as(theirs)
    assert torch.allclose(ours[real], theirs[real], rtol=1e-6, atol=1e-6)  # slopes: powers in fp32 or float64
    if falcon:  # the rounding matters: unrounded, the bias is off by up to 0.86 here
        exact = build(n_heads=H, d_model=d, context_length=600, alibi_scale=falcon["alibi_scale"])
        assert (exact.positions.bias(torch.arange(600), 600, mask.bool())[real] - theirs[real]).abs().max() > 0.05


def test_alibi_left_padding_and_cached_decoding():
    model = build()
    torch.manual_seed(1)
    ids = torch.randint(0, 61, (2, 30))
    with torch.no_grad():
        full = model(ids).logits
        padded = torch.cat([torch.zeros(2, 5, dtype=ids.dtype), ids], 1)
        mask = torch.cat([torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 30, dtype=torch.long)], 1)
        assert (model(padded, attention_mask=mask).logits[:, 5:] - full).abs().max() < 1e-5
        model.setup_cache(2, 30)
        steps = [model(ids[:, :20], input_pos=torch.arange(20), kv_len=20).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(20, 30)]
        model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
    # the engine's decoding of a left-padded batch equals re-running the whole sequence
    out = llmarch.generate(model, padded, attention_mask=mask, max_new_tokens=8)
    with torch.no_grad():
        again = model(out, attention_mask=torch.cat([mask, torch.ones(2, 8, dtype=torch.long)], 1)).logits
    assert torch.equal(again[:, 34:-1].argmax(-1), out[:, 35:])


def test_alibi_penalises_distance():
    """With zero weights but the bias, each head's attention decays with distance at its own rate."""
    model = build(n_layers=1, attn_impl="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    _, cache = run_with_cache(model, torch.zeros(1, 8, dtype=torch.long), ["blocks.0.attn.hook_pattern"])
    p = cache["blocks.0.attn.hook_pattern"][0, :, -1]  # (H, S): the last query's weights
    ratio = p[:, -1] / p[:, -2]
    assert torch.allclose(ratio, torch.exp(alibi_slopes(6)), rtol=1e-4)


def test_qk_norm_proj_normalises_whole_projections():
    model = build("olmo2-tiny", n_kv_heads=2)
    attn = model.blocks[0].attn
    assert attn.q_norm.weight.shape == (6 * 8,) and attn.k_norm.weight.shape == (2 * 8,)
    head = build("qwen3-tiny", n_kv_heads=2, head_dim=8).blocks[0].attn
    assert head.q_norm.weight.shape == (8,) and head.k_norm.weight.shape == (8,)


def test_res_post_norm_is_x_plus_norm_of_the_sublayer():
    model = build("olmo2-tiny", n_layers=1)
    block = model.blocks[0]
    x = torch.randn(1, 5, 48)
    ctx = llmarch.layers.attention.AttentionContext(mask=None, causal=True, rope=None, input_pos=torch.arange(5))
    with torch.no_grad():
        h = x + block.ln1(block.attn(x, ctx))
        want = h + block.ln2(block.mlp(h))
        assert torch.allclose(block(x, ctx), want, atol=1e-6)
    assert model.config.final_norm


def test_res_post_and_proj_decode_from_the_cache():
    model = build("olmo2-tiny")
    ids = torch.randint(0, 61, (1, 24))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_cache(1, 24)
        steps = [model(ids[:, :16], input_pos=torch.arange(16), kv_len=16).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(16, 24)]
        model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def test_qk_norm_per_head_is_head_with_a_gain_per_head_and_decodes_from_the_cache():
    """qk_norm='per_head' (StableLM-2-12B; here with RMSNorm): with every head's gains equal to 'head's shared ones
    it computes what 'head' does; another gain on one head changes the logits; the one-token path (heads on axis
    1) gives what the whole forward does."""
    shared = build("qwen3-tiny", n_kv_heads=2, head_dim=8, n_layers=1)
    per_head = build("qwen3-tiny", n_kv_heads=2, head_dim=8, n_layers=1, qk_norm="per_head")
    state = shared.state_dict()
    heads = {"q_norm": per_head.config.n_heads, "k_norm": 2}
    for name, w in list(state.items()):
        if name.endswith(("q_norm.weight", "k_norm.weight")):
            state[name] = w.repeat(heads[name.split(".")[-2]])
    per_head.load_state_dict(state)
    ids = torch.randint(0, 61, (1, 12))
    with torch.no_grad():
        assert torch.allclose(per_head(ids).logits, shared(ids).logits, atol=1e-5)
        per_head.blocks[0].attn.q_norm.weight[:8].mul_(3.0)  # head 0's gains alone
        full = per_head(ids).logits
        assert not torch.allclose(full, shared(ids).logits, atol=1e-3)
        per_head.setup_cache(1, 12)
        steps = [per_head(ids[:, :6], input_pos=torch.arange(6), kv_len=6).logits]
        steps += [per_head(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(6, 12)]
        per_head.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def test_longrope_picks_the_factor_set_by_the_longest_sequence():
    short, long = [1.0] * 4, [4.0] * 4
    model = build("llama-tiny", n_kv_heads=2, head_dim=8, rope_scaling="longrope", rope_original_context=16,
                  rope_factor=4.0, rope_short_factor=short, rope_long_factor=long)
    rope = model.positions
    base = 1.0 / 10000.0 ** (torch.arange(0, 8, 2).float() / 8)
    scale = math.sqrt(1 + math.log(4.0) / math.log(16))
    cos, _ = rope.rotary(torch.arange(16)[None])
    assert torch.allclose(cos[0, 15, :4], torch.cos(15 * base) * scale)
    cos, _ = rope.rotary(torch.arange(17)[None])
    assert torch.allclose(cos[0, 15, :4], torch.cos(15 * base / 4.0) * scale)


@pytest.mark.parametrize("bad, message", [
    (dict(positions="alibi", attention="sliding_window", sliding_window=4),
     "does not take a position bias .alibi."),
    (dict(positions="alibi", causal=False), "positions='alibi' needs causal=True"),
    (dict(positions="alibi", alibi_symmetric=True), "causal=False with alibi_symmetric=True"),
    (dict(positions="rope", alibi_symmetric=True), "alibi_symmetric goes with positions='alibi'"),
    (dict(positions="rope", alibi_scale=0.5), "alibi_scale and alibi_bf16 go with positions='alibi'"),
    (dict(positions="alibi", alibi_scale=0.0), "alibi_scale must be positive"),
    (dict(qk_norm="rms"), "unknown qk_norm 'rms'; choose one of: none, head, per_head, proj"),
    (dict(qk_norm="proj", attention="lsh", n_kv_heads=6), "qk_norm='proj' needs a key projection"),
    (dict(norm_placement="sandwiched"), "unknown norm_placement 'sandwiched'"),
    (dict(norm_placement="res_post", block="parallel"), "block='parallel' needs norm_placement='pre'"),
    (dict(positions="rope", rope_scaling="longrope", rope_original_context=16, rope_short_factor=[1.0],
          rope_long_factor=[1.0] * 4, head_dim=8), "needs rope_short_factor: 4 positive numbers"),
    (dict(positions="rope", rope_scaling="longrope", rope_short_factor=[1.0] * 4, rope_long_factor=[1.0] * 4,
          head_dim=8), "longrope' needs rope_original_context"),
    (dict(positions="rope", rope_long_factor=[1.0] * 4), "rope_long_factor goes with rope_scaling='longrope'"),
])
def test_bad_configs_are_one_line_errors(bad, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.resolve("llama-tiny", **{**BASE, "n_kv_heads": 2, "head_dim": 8, **bad})


@pytest.mark.parametrize("base, overrides", [
    ("alibi-tiny", dict(alibi_bf16=True, alibi_scale=0.5)),
    ("llama-tiny", dict(n_kv_heads=2, head_dim=8, rope_scaling="longrope", rope_original_context=16,
                        rope_factor=4.0, rope_short_factor=[1.0, 1.5, 2.0, 2.5], rope_long_factor=[2.0] * 4)),
])
def test_saved_and_loaded(base, overrides, tmp_path):
    model = build(base, **overrides)
    save_model(model, tmp_path / "m")
    loaded = llmarch.load(tmp_path / "m")
    ids = torch.randint(0, 61, (1, 24))
    with torch.no_grad():
        assert (loaded(ids).logits - model(ids).logits).abs().max() == 0


@pytest.mark.parametrize("base", ["alibi-tiny", "qwen3-tiny", "olmo2-tiny", "smollm3-tiny"])
def test_the_future_leaves_earlier_logits_unchanged(base):
    heads = {"n_kv_heads": 2, "head_dim": 8} if base != "alibi-tiny" else {}
    layers = {"n_layers": 8} if base == "smollm3-tiny" else {}  # its NoPE layer types are given for 8
    model = build(base, **heads, **layers)
    torch.manual_seed(1)
    ids = torch.randint(0, 61, (2, 40))
    changed = ids.clone()
    changed[:, 25:] = torch.randint(0, 61, (2, 15))
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert (a[:, :25] - b[:, :25]).abs().max() < 1e-5
    assert (a[:, 25:] - b[:, 25:]).abs().max() > 1e-3
