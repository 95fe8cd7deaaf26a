"""Gemma 2/3 parts any config can use: attention-logit soft-capping (every kernel path: eager, the blockwise
and FlexAttention engines, decoding), final-logit soft-capping, sandwich norms, the presets' published
parameter counts, and one-line errors for combinations that cannot go together."""
import pytest
import torch

import llmarch
from llmarch.analysis import model_facts, run_with_cache
from llmarch.errors import LlmarchError
from llmarch.layers.attention import eager_attention
from llmarch.layers.sparse_attention import SlidingWindow, blockwise_attention, flex_sparse_attention, row_mask

# published parameter counts (google/gemma-2-2b 2.61B, google/gemma-3-1b-pt 1.00B, google/gemma-3-270m 268M,
# as transformers counts them; tests/parity/test_gemma.py builds the transformers models of these configs)
PUBLISHED = {"gemma2-2b": 2_614_341_888, "gemma3-1b": 999_885_952, "gemma3-270m": 268_098_176}
TINY = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, context_length=64)
CAP = 0.5  # low enough to bite on random weights


def build(**fields):
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **TINY, **fields).eval()
    with torch.no_grad():  # sharp attention: scores well past the cap
        for block in model.blocks:
            block.attn.qkv_proj.weight.mul_(10)
    return model


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts(name):
    assert model_facts(llmarch.preset(name))["parameters"] == PUBLISHED[name]


def test_tiny_preset_builds_and_generates():
    model = llmarch.build("gemma3-tiny").eval()
    cfg = model.config
    assert [cfg.for_layer(i).attention for i in range(6)] == ["sliding_window"] * 5 + ["full"]
    assert set(model.layer_positions) == {"sliding_attention"}  # the local RoPE base has its own tables
    assert len(llmarch.generate(model, [[1, 2, 3]], max_new_tokens=4)[0]) == 7


def qkv(L=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, L, 8, generator=g) * 3, torch.randn(2, 2, L, 8, generator=g) * 3,
            torch.randn(2, 2, L, 8, generator=g))


@pytest.mark.filterwarnings("ignore::UserWarning")  # FlexAttention warns when run without torch.compile
def test_soft_capped_blockwise_and_flex_equal_the_eager_kernel():
    q, k, v = qkv()
    pattern = SlidingWindow(6, 8)
    pad = torch.ones(2, 40, dtype=torch.bool)
    pad[1, :7] = False
    mask = row_mask(pattern, torch.arange(40), 40, True, pad)
    eager = eager_attention(q, k, v, mask, False, 0.0, lambda p: p, softcap=CAP)
    assert (eager - eager_attention(q, k, v, mask, False, 0.0, lambda p: p)).abs().max() > 1e-2  # it bites
    blockwise = blockwise_attention(q, k, v, pattern, True, None, pad, softcap=CAP)
    flex = flex_sparse_attention(q, k, v, pattern, True, None, pad, compiled=False, softcap=CAP)
    assert (blockwise - eager).abs().max() < 1e-5
    assert (flex - eager).abs().max() < 1e-5


@pytest.mark.parametrize("window", [None, 5])
def test_a_soft_capped_model_is_causal_and_decodes_from_its_cache(window):
    """The cap in prefill (eager kernel, or the blockwise engine with a window) and in decoding; a config
    asking for sdpa gets the eager kernel, which can cap."""
    model = build(attn_softcap=CAP, sliding_window=window)
    assert model.blocks[0].attn.kernel.keywords == {"softcap": CAP}
    plain = llmarch.build("llama-tiny", **TINY, sliding_window=window).eval()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 61, (2, 24))
    changed = ids.clone()
    changed[:, 16:] = (ids[:, 16:] + 1) % 61
    with torch.no_grad():
        full = model(ids).logits
        assert (full - plain(ids).logits).abs().max() > 1e-3
        assert (model(changed).logits[:, :16] - full[:, :16]).abs().max() < 1e-6
        model.setup_cache(2, 24)
        steps = [model(ids[:, :12], input_pos=torch.arange(12), kv_len=12).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(12, 24)]
        model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5


def test_watching_the_pattern_keeps_the_cap():
    """Analysis swaps in the eager kernel while hook_pattern is watched; the cap comes with it."""
    model = build(attn_softcap=CAP)
    ids = torch.randint(0, 61, (1, 10))
    logits, cache = run_with_cache(model, ids, ["blocks.0.attn.hook_pattern"])
    with torch.no_grad():
        assert (logits - model(ids).logits).abs().max() < 1e-6


def test_final_softcap_bounds_the_logits():
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **TINY, final_softcap=0.1).eval()
    plain = llmarch.build("llama-tiny", **TINY).eval()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        capped, raw = model(ids).logits, plain(ids).logits
    assert capped.abs().max() < 0.1 < raw.abs().max()
    assert (capped - 0.1 * torch.tanh(raw / 0.1)).abs().max() < 1e-6


def test_sandwich_norms():
    """x += post_ln1(attn(ln1(x))); x += post_ln2(ffn(ln2(x))): two more norms a block, and a final norm."""
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **TINY, norm_placement="sandwich").eval()
    pre = llmarch.build("llama-tiny", **TINY)
    assert model.config.final_norm
    n = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in pre.parameters())
    assert n == 2 * 2 * 32
    block = model.blocks[0]
    with torch.no_grad():
        block.post_ln1.weight.fill_(0.0)  # zero output gains: the block adds nothing
        block.post_ln2.weight.fill_(0.0)
        ids = torch.randint(0, 61, (1, 5))
        cache = run_with_cache(model, ids, ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"])[1]
    assert torch.equal(cache["blocks.0.hook_resid_pre"], cache["blocks.0.hook_resid_post"])


@pytest.mark.parametrize("bad, message", [
    (dict(attn_softcap=-1.0), "attn_softcap must be positive"),
    (dict(attn_softcap=50.0, attention="linear"), "attention='linear' cannot soft-cap its scores"),
    (dict(attn_softcap=50.0, attention="block_sparse"), "these kinds can: full, sliding_window, strided"),
    (dict(final_softcap=0.0), "final_softcap=0.0 must be positive"),
    (dict(final_softcap=30.0, head="classify"), "head='classify'"),
    (dict(norm_placement="sandwich", block="parallel"), "block='parallel' needs norm_placement='pre'"),
    (dict(norm_placement="between"), "choose one of: normed_residual, post, pre, res_post, sandwich"),
])
def test_bad_gemma_fields_are_one_line_errors(bad, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.build("llama-tiny", **TINY, **bad)


def test_exporting_what_gemma_cannot_express_is_an_error():
    from llmarch.interop import FAMILIES

    cfg = llmarch.preset("gemma3-tiny")
    with pytest.raises(LlmarchError, match="cannot express layer 0's qk_norm"):
        FAMILIES["gemma3_text"].from_config(cfg.replace(qk_norm="none"))
    two_windows = dict(layer_types=["a", "b"] * 3, layer_overrides={"a": {"sliding_window": 32},
                                                                     "b": {"sliding_window": 16}})
    with pytest.raises(LlmarchError, match="cannot express layer 1's sliding_window=16"):
        FAMILIES["gemma3_text"].from_config(cfg.replace(**two_windows))
    with pytest.raises(LlmarchError, match="gemma3_text"):
        FAMILIES["gemma3"].from_config(cfg)


def test_training_through_capped_sliding_layers_has_finite_gradients():
    """A sequence that is not a whole number of attention blocks (70 = 64 + 6): the blockwise engine's padding
    queries must not put NaN into the gradients."""
    torch.manual_seed(0)
    model = llmarch.build("gemma3-tiny", n_layers=2, layer_types=["sliding_attention", "full_attention"],
                          attn_softcap=5.0, final_softcap=3.0)
    model(torch.randint(0, 8192, (2, 70))).logits.logsumexp(-1).mean().backward()
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    assert model.blocks[0].attn.qkv_proj.weight.grad.abs().sum() > 0


def test_saved_and_loaded(tmp_path):
    from llmarch.checkpoint import save_model

    model = llmarch.build("gemma3-tiny", n_layers=6, attn_softcap=20.0, final_softcap=10.0).eval()
    save_model(model, tmp_path / "m")
    loaded = llmarch.load(tmp_path / "m")
    ids = torch.randint(0, 8192, (1, 40))
    with torch.no_grad():
        assert (loaded(ids).logits - model(ids).logits).abs().max() == 0
    assert (loaded.config.attn_softcap, loaded.config.norm_placement) == (20.0, "sandwich")
