"""Hook points and the analysis tools (analysis/hooks.py): names for every family, caches and attention
patterns, replacing hooks, the logit lens, activation patching, head ablation, a linear probe."""
import pytest
import torch

import llmarch
from llmarch.analysis import (ablate_heads, hook_points, linear_probe, logit_lens, patch_residual, run_with_cache,
                              run_with_hooks)
from llmarch.errors import LlmarchError

SMALL = dict(n_layers=2, d_model=32, vocab_size=64, context_length=32)
ATTN = ["attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_z"]
BLOCK = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"]


def build(name, **kw):
    torch.manual_seed(0)
    heads = {} if name.startswith("mamba") else dict(n_heads=4)
    return llmarch.build(name, **{**SMALL, **heads, **kw}).eval()


@pytest.mark.parametrize("name,prefixes,attention", [
    ("gpt-tiny", [""], True), ("llama-tiny", [""], True), ("bert-tiny", [""], True), ("mixtral-tiny", [""], True),
    ("t5-tiny", ["encoder.", "decoder."], True), ("mamba-tiny", [""], False), ("hyena-tiny", [""], False),
    ("palm-tiny", [""], True), ("bart-tiny", ["encoder.", "decoder."], True),
    ("switch-tiny", ["encoder.", "decoder."], True), ("mamba2-tiny", [""], False)])
def test_hook_names_exist_for_every_family(name, prefixes, attention):
    kw = dict(n_decoder_layers=2) if prefixes != [""] else {}
    names = set(hook_points(build(name, **kw)))
    for p in prefixes:
        for i in range(2):
            assert {f"{p}blocks.{i}.{h}" for h in BLOCK} <= names
            assert ({f"{p}blocks.{i}.{h}" for h in ATTN} <= names) == attention
        assert {f"{p}hook_embed", f"{p}hook_pos_embed", f"{p}ln_final.hook_normalized"} <= names


def test_cache_holds_causal_attention_patterns_and_embeddings():
    model = build("gpt-tiny")
    ids = torch.randint(0, 64, (2, 10))
    logits, cache = run_with_cache(model, ids)
    assert torch.allclose(logits, model(ids).logits, atol=1e-5)  # eager while watching: the same logits
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (2, 4, 10, 10)
    assert torch.allclose(pattern.sum(-1), torch.ones(2, 4, 10), atol=1e-5)
    assert pattern.triu(1).abs().max() == 0
    assert torch.allclose(cache["hook_embed"] + cache["hook_pos_embed"], cache["blocks.0.hook_resid_pre"])
    # hook_pos_embed fires only where positions are added to the embeddings (not for RoPE)
    assert "hook_pos_embed" not in run_with_cache(build("llama-tiny"), ids)[1]
    assert model.blocks[0].attn.kernel.__name__ == "sdpa_attention"  # put back afterwards


def test_a_replacing_hook_changes_the_output_and_a_no_op_does_not():
    model = build("llama-tiny")
    ids = torch.randint(0, 64, (1, 9))
    with torch.no_grad():  # as run_with_hooks runs it (without grad, RMSNorm takes another, as exact, kernel)
        base = model(ids).logits
    same = run_with_hooks(model, ids, [("blocks.0.hook_resid_mid", lambda t, name: None)])
    assert torch.equal(same, base)
    changed = run_with_hooks(model, ids, [("blocks.0.hook_mlp_out", lambda t, name: t * 0)])
    assert (changed - base).abs().max() > 1e-3
    with pytest.raises(LlmarchError, match="no hook point 'blocks.9.hook_resid_pre'"):
        run_with_hooks(model, ids, [("blocks.9.hook_resid_pre", lambda t, name: None)])


@pytest.mark.parametrize("name", ["llama-tiny", "mamba-tiny", "hybrid-tiny"])
def test_logit_lens_last_layer_is_the_logits(name):
    model = build(name, **({"n_layers": 3} if name == "hybrid-tiny" else {}))
    ids = torch.randint(0, 64, (2, 8))
    lens = logit_lens(model, ids)
    assert lens.shape == (len(model.blocks), 2, 8, 64)
    assert (lens[-1] - model(ids).logits).abs().max() <= 1e-4


def test_patching_the_clean_residual_restores_the_clean_logits():
    model = build("gpt-tiny")
    clean, corrupted = torch.randint(0, 64, (1, 8)), torch.randint(0, 64, (1, 8))
    clean_logits, cache = run_with_cache(model, clean, ["blocks.0.hook_resid_pre"])
    whole = run_with_hooks(model, corrupted, [("blocks.0.hook_resid_pre",
                                               lambda t, name: cache["blocks.0.hook_resid_pre"])])
    assert torch.equal(whole, clean_logits)
    right, wrong = int(clean_logits[0, -1].argmax()), int(clean_logits[0, -1].argmin())
    heat = patch_residual(model, clean, corrupted, right, wrong, point="hook_resid_post")
    assert heat.shape == (2, 8)
    # the last layer's output at the last position is all the last logits read
    assert heat[-1, -1].item() == pytest.approx(1.0, abs=1e-4) and heat[-1, :-1].abs().max() < 1e-4


def test_head_ablation():
    model = build("gpt-tiny")
    ids = torch.randint(0, 64, (1, 8))
    assert torch.equal(ablate_heads(model, ids, []), model(ids).logits)
    assert (ablate_heads(model, ids, [(0, 1), (1, 2)]) - model(ids).logits).abs().max() > 1e-4


def test_linear_probe_reads_a_linearly_encoded_label():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (200,))
    features = torch.randn(200, 16)
    features[:, 3] += 6 * labels
    assert linear_probe(features, labels)["test_accuracy"] > 0.9


def test_router_and_ssm_state_hook_points():
    """MoE layers expose their router logits and expert choice (a hook may force the choice); SSM layers the
    state after the last token, which equals the recurrent state a cached run leaves."""
    model = build("mixtral-tiny", n_experts=4)
    ids = torch.randint(0, 64, (2, 7))
    logits, cache = run_with_cache(model, ids, ["blocks.0.mlp.hook_router_logits", "blocks.0.mlp.hook_experts"])
    assert cache["blocks.0.mlp.hook_router_logits"].shape == (2, 7, 4)
    assert torch.equal(cache["blocks.0.mlp.hook_experts"], cache["blocks.0.mlp.hook_router_logits"].topk(2).indices)
    forced = run_with_hooks(model, ids, [("blocks.0.mlp.hook_experts", lambda e, name: torch.zeros_like(e))])
    assert (forced - logits).abs().max() > 1e-5
    for name in ("mamba-tiny", "mamba2-tiny"):
        m = build(name)
        _, cache = run_with_cache(m, ids, ["blocks.1.mixer.hook_ssm_state"])
        m.setup_cache(2, 7)
        with torch.no_grad():
            m(ids, input_pos=torch.arange(7), kv_len=7)
        assert torch.allclose(cache["blocks.1.mixer.hook_ssm_state"], m.blocks[1].mixer.cache["ssm"], atol=1e-6)
        m.clear_cache()


@pytest.mark.parametrize("name", ["bert-tiny", "t5-tiny", "bart-tiny"])
def test_encoder_and_encoder_decoder_analysis(name):
    """The same tools on an encoder (MLM head: its transform is part of the lens) and on encoder-decoders
    (patterns of both stacks and of cross-attention, the decoder's logit lens, patching over the encoder)."""
    seq2seq = name != "bert-tiny"
    model = build(name, **({"n_decoder_layers": 2} if seq2seq else {}))
    src = torch.randint(3, 64, (2, 9))
    kw = {"decoder_input_ids": torch.randint(3, 64, (2, 5))} if seq2seq else {}
    logits, cache = run_with_cache(model, src, **kw)
    if seq2seq:
        cross = cache["decoder.blocks.1.cross_attn.hook_pattern"]
        assert cross.shape == (2, 4, 5, 9) and torch.allclose(cross.sum(-1), torch.ones(2, 4, 5), atol=1e-5)
        enc = cache["encoder.blocks.0.attn.hook_pattern"]
        assert enc.shape == (2, 4, 9, 9) and enc.triu(1).abs().max() > 0  # bidirectional: keys after the query
        assert cache["decoder.blocks.0.attn.hook_pattern"].triu(1).abs().max() == 0
        assert "blocks.0.drop" not in cache and "decoder.blocks.0.drop" not in cache
    else:
        assert cache["blocks.0.attn.hook_pattern"].triu(1).abs().max() > 0
    lens = logit_lens(model, src, **kw)
    assert lens.shape[:2] == (2, 2) and (lens[-1] - logits).abs().max() <= 1e-4
    # a source differing in one token: layer 0's residual stream differs only there, so patching that one
    # position restores the clean logit difference fully, and any other position does nothing
    corrupted = src.clone()
    corrupted[:, 4] = (src[:, 4] + 7) % 61 + 3
    right, wrong = int(logits[0, -1].argmax()), int(logits[0, -1].argmin())
    heat = patch_residual(model, src[:1], corrupted[:1], right, wrong, **{k: v[:1] for k, v in kw.items()})
    assert heat.shape == (2, 9)
    assert heat[0, 4].item() == pytest.approx(1.0, abs=1e-4)
    assert heat[0, torch.arange(9) != 4].abs().max() < 1e-4
    if seq2seq:
        dec_heat = patch_residual(model, src[:1], corrupted[:1], right, wrong, stack="decoder",
                                  **{k: v[:1] for k, v in kw.items()})
        assert dec_heat.shape == (2, 5)  # the decoder's positions
        ablated = ablate_heads(model, src, [(0, 1)], stack="decoder", **kw)
        assert (ablated - logits).abs().max() > 1e-5
        with pytest.raises(LlmarchError, match="encoder and decoder"):
            ablate_heads(model, src, [(0, 1)], **kw)


def test_analyze_writes_cross_attention_maps_for_encoder_decoders(tmp_path):
    from llmarch.analysis.plots import analyze
    from llmarch.data.tokenizer import ByteTokenizer

    model = build("t5-tiny", vocab_size=300, n_decoder_layers=2)
    summary = analyze(model, ByteTokenizer(), "hello world", tmp_path, target_tokens=4)
    assert summary["files"] == ["attention-encoder-0.png", "attention-encoder-1.png", "attention-decoder-0.png",
                                "attention-decoder-0-cross.png", "attention-decoder-1.png",
                                "attention-decoder-1-cross.png", "logit-lens.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in summary["files"]) and "output" in summary


def test_peak_bytes_counts_live_tensors_until_they_are_freed():
    """Two 4 MB tensors alive at once is the peak, whatever is allocated after the first is freed; tensors held
    throughout count once; a view adds nothing."""
    from llmarch.analysis.memory import peak_bytes

    def fn():
        a = torch.ones(1000, 1000)
        b = a + 1
        view = b[:10]  # noqa: F841
        del a
        c = b * 2  # noqa: F841  (a is gone: still two tensors alive)

    assert peak_bytes(fn) == 8_000_000
    held = torch.zeros(250_000)  # 1 MB
    assert peak_bytes(fn, [held, held[:5]]) == 9_000_000
