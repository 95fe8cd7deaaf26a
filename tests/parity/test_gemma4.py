"""Gemma 4 (gemma4_text, and the text model of gemma4) against transformers, through files: tiny seeded random models
(hidden 64, sliding and full layers of different head widths and KV heads, a window of 8 under prompts of 20 and
13 tokens) saved with save_pretrained and loaded with `llmarch.from_hf`: fp32 logits on a left-padded batch within
1e-4, 32 greedy tokens equal to transformers' generate, cached decoding (whole cache and sliding rings) equal to the
full forward, and a `to_hf` round trip transformers loads to the same logits. Norm gains and layer scalars are moved
off their init, so a swapped norm or a dropped scalar cannot hide. What llmarch does not implement is refused."""
import json

import pytest
import torch

import llmarch
from llmarch.analysis import model_facts
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")

S, F = "sliding_attention", "full_attention"
TEXT = dict(vocab_size=128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, global_head_dim=32, intermediate_size=96, sliding_window=8, layer_types=[S, F, S, F],
            hidden_size_per_layer_input=0, final_logit_softcapping=30.0)
SIX = dict(TEXT, num_hidden_layers=6, layer_types=[S, F, S, S, F, F])
CASES = {
    # wider global heads under p-RoPE (a quarter of the frequencies turn), their own KV heads gated off as
    # transformers gates them without attention_k_eq_v, tied head, a final cap that does not saturate; bidirectional
    # attention over vision tokens only, which leaves text causal
    "dense": dict(TEXT, num_global_key_value_heads=1, use_bidirectional_attention="vision"),
    # global layers with one KV head whose keys are the values; p-RoPE scaled by a factor; an untied head, a low cap
    "k_eq_v": dict(TEXT, attention_k_eq_v=True, num_global_key_value_heads=1, tie_word_embeddings=False,
                   final_logit_softcapping=3.0,
                   rope_parameters={S: {"rope_type": "default", "rope_theta": 100.0},
                                    F: {"rope_type": "proportional", "partial_rotary_factor": 0.5,
                                        "rope_theta": 1e4, "factor": 2.0}}),
    # the last three layers (sliding, full, full) read layers 2 and 1's keys and values; their FFNs double-wide
    "kv_shared": dict(SIX, attention_k_eq_v=True, num_global_key_value_heads=1, num_kv_shared_layers=3,
                      use_double_wide_mlp=True),
    "kv_shared_narrow": dict(SIX, num_kv_shared_layers=2),
    # E2B/E4B-like: per-layer input embeddings of 8 dims per layer (a table larger than the vocabulary) with KV
    # sharing and double-wide MLPs
    "ple": dict(SIX, attention_k_eq_v=True, num_global_key_value_heads=1, num_kv_shared_layers=3,
                use_double_wide_mlp=True, hidden_size_per_layer_input=8, vocab_size_per_layer_input=160),
    # 26B-A4B-like: every layer's experts (4 of 24 dims, top 2) beside its MLP, routed apart (see build_hf)
    "moe": dict(TEXT, attention_k_eq_v=True, num_global_key_value_heads=1, enable_moe_block=True, num_experts=4,
                top_k_experts=2, moe_intermediate_size=24),
}


def build_hf(kwargs, path, multimodal=False):
    torch.manual_seed(0)
    conf = transformers.Gemma4TextConfig(**kwargs)
    if multimodal:
        hf = transformers.Gemma4ForConditionalGeneration(transformers.Gemma4Config(text_config=conf)).eval()
    else:
        hf = transformers.Gemma4ForCausalLM(conf).eval()
    with torch.no_grad():  # gains off their init, so a swapped norm cannot hide; scalars off 1
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith(("embed_tokens.weight", "lm_head.weight", "router.proj.weight")):
                p.mul_(20.0)  # the router too: decisive choices, so a wrong one shows
            elif ".experts." in name:
                p.mul_(10.0)
        for name, b in hf.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(torch.rand(1) + 0.5)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    return hf


def cached_steps(model, ids, mask, bounded):
    """Logits of a prompt of 10 and then one token at a time, over a whole cache or (bounded) sliding rings."""
    T = ids.shape[1]
    model.setup_cache(ids.shape[0], T, bounded=bounded)
    try:
        steps = [model(ids[:, :10], attention_mask=mask, input_pos=torch.arange(10), kv_len=10).logits]
        steps += [model(ids[:, t:t + 1], attention_mask=mask, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                  for t in range(10, T)]
    finally:
        model.clear_cache()
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(CASES[case], tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert_matches_transformers(hf, ours, "Gemma4ForCausalLM", tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_decoding_equals_the_full_forward(case, tmp_path):
    build_hf(CASES[case], tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    ids, mask = padded_batch(ours.config.vocab_size, lengths=(24, 17))
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        for bounded in (False, True):
            assert_close_on_real_tokens(cached_steps(ours, ids, mask, bounded), full, mask)


def test_beam_search_over_shared_caches(tmp_path):
    """Beam search reorders every cache once: a layer that shares another's is moved through its owner only."""
    hf = build_hf(CASES["kv_shared"], tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    ids = torch.randint(0, 128, (1, 12))
    theirs = hf.generate(ids, max_new_tokens=10, num_beams=3, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, max_new_tokens=10, num_beams=3), theirs)
    ours.setup_cache(3, 16)
    owner = ours.blocks[2].attn.cache
    owner.k.copy_(torch.arange(3.0)[:, None, None, None].expand_as(owner.k))
    ours.reorder_cache(torch.tensor([2, 0, 1]))
    assert ours.blocks[3].attn.cache.src is ours.blocks[2].attn.cache  # the sharer reads the moved cache
    assert ours.blocks[2].attn.cache.k[:, 0, 0, 0].tolist() == [2.0, 0.0, 1.0]  # moved once, not once per reader
    ours.clear_cache()


def test_the_geometry_and_sharing_are_read(tmp_path):
    build_hf(CASES["kv_shared"], tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    layers = [cfg.for_layer(i) for i in range(6)]
    assert [(c.head_dim, c.n_kv_heads, c.attn_k_eq_v) for c in layers] == [
        (16, 2, False), (32, 1, True), (16, 2, False), (16, 2, False), (32, 1, True), (32, 1, True)]
    assert [c.rope_scaling for c in layers] == ["none", "proportional", "none", "none", "proportional",
                                                 "proportional"]
    assert [c.ffn_hidden for c in layers] == [96, 96, 96, 192, 192, 192]
    assert [cfg.kv_source(i) for i in range(6)] == [0, 1, 2, 2, 1, 1]
    assert (cfg.attn_scale, cfg.norm, cfg.qk_norm, cfg.v_norm, cfg.layer_scalar) == (1.0, "rmsnorm", "head", True,
                                                                                       True)
    # layer 1 projects q and k only; layers 3-5 only q, and hold no key norm; their caches cost nothing
    assert ours.blocks[1].attn.qkv_proj.weight.shape[0] == 4 * 32 + 32
    assert ours.blocks[4].attn.qkv_proj.weight.shape[0] == 4 * 32 and ours.blocks[4].attn.k_norm is None
    per_token = 2 * 2 * (2 * 16 + 2 * 16 + 32)  # k and v of layers 0, 2 (two heads of 16) and 1 (one of 32), bf16
    assert model_facts(cfg)["kv_cache_bytes_per_token"] == per_token


def test_published_config_without_per_layer_config(tmp_path):
    """The published configs give the global layers' geometry as global_head_dim and num_global_key_value_heads,
    not per_layer_config (which transformers writes back); both read the same."""
    hf = build_hf(CASES["k_eq_v"], tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    data = json.loads(path.read_text())
    del data["per_layer_config"]
    path.write_text(json.dumps({**data, "global_head_dim": 32, "num_global_key_value_heads": 1}))
    ours = from_hf(tmp_path / "hf")
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


def test_multimodal_checkpoint_reads_its_text_model(tmp_path):
    hf = build_hf(CASES["ple"], tmp_path / "hf", multimodal=True)
    ours = from_hf(tmp_path / "hf")
    assert ours.config.hf_model_type == "gemma4_text" and ours.config.kv_shared_layers == 3
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


def test_p_rope_and_the_value_norm_matter(tmp_path):
    """Each Gemma 4 part changes these weights' logits: read otherwise, the parity above would fail."""
    build_hf(CASES["k_eq_v"], tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    ids = torch.randint(0, 128, (1, 20))
    full = {k: v for k, v in cfg.layer_overrides[F].items()}
    others = [cfg.replace(v_norm=False), cfg.replace(layer_overrides={**cfg.layer_overrides, F: {
        **full, "rope_scaling": "linear", "rope_fraction": 0.5}})]
    with torch.no_grad():
        for other in others:
            model = llmarch.build(other).eval()
            model.load_state_dict(ours.state_dict())
            assert (model(ids).logits - ours(ids).logits).abs().max() > 1e-2
        build_hf(CASES["ple"], tmp_path / "ple")  # the per-layer inputs: zero their gates' weights
        ple = from_hf(tmp_path / "ple")
        before = ple(ids).logits
        for block in ple.blocks:
            block.ple_gate.weight.zero_()
        assert (ple(ids).logits - before).abs().max() > 1e-2
        build_hf(CASES["moe"], tmp_path / "moe")  # the experts, and the router's per-expert scale
        moe = from_hf(tmp_path / "moe")
        before = moe(ids).logits
        for block in moe.blocks:
            block.mlp.router.expert_scale.fill_(1.0)
        assert (moe(ids).logits - before).abs().max() > 1e-2


@pytest.mark.parametrize("change, field", [
    (dict(use_bidirectional_attention="all"), "use_bidirectional_attention"),
    (dict(attention_bias=True), "attention_bias"),
])
def test_unsupported_features_are_refused(change, field, tmp_path):
    build_hf(dict(TEXT, **change), tmp_path / "hf")
    with pytest.raises(LlmarchError, match=field):
        from_hf(tmp_path / "hf")


def test_per_layer_inputs_default_on():
    """transformers' defaults: a config.json that leaves them out has per-layer embeddings of 256 dims from a
    table of 262,144 rows; they are counted as embedding parameters."""
    data = {k: v for k, v in TEXT.items() if k != "hidden_size_per_layer_input"}
    cfg = hf_model_config({**data, "model_type": "gemma4_text"})
    assert (cfg.ple_dim, cfg.ple_vocab) == (256, 262144)
    facts = model_facts(cfg)
    assert facts["parameters"] - facts["non_embedding_parameters"] == 128 * 64 + 262144 * 4 * 256


def test_partial_rotary_factor_outside_p_rope_is_refused(tmp_path):
    (tmp_path / "c").mkdir()
    rope = {S: {"rope_type": "linear", "factor": 2.0, "partial_rotary_factor": 0.5}, F: {"rope_type": "default"}}
    (tmp_path / "c" / "config.json").write_text(json.dumps({**TEXT, "model_type": "gemma4_text",
                                                            "rope_parameters": rope}))
    with pytest.raises(LlmarchError, match="partial_rotary_factor"):
        from_hf(tmp_path / "c")


@pytest.mark.parametrize("per_layer, message", [
    ({"1": {"head_dim": 32, "sliding_window": 4}}, "per_layer_config sets sliding_window"),
    ({"1": {"head_dim": 32}, "3": {"head_dim": 64}}, "one geometry per layer type"),
])
def test_per_layer_config_beyond_the_geometry_is_refused(per_layer, message, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({**TEXT, "model_type": "gemma4_text",
                                                            "per_layer_config": per_layer}))
    with pytest.raises(LlmarchError, match=message):
        from_hf(tmp_path / "c")


def test_export_refuses_what_gemma4_cannot_hold(tmp_path):
    build_hf(CASES["dense"], tmp_path / "hf")
    cfg = from_hf(tmp_path / "hf").config
    with pytest.raises(LlmarchError, match="cannot express attn_scale"):
        llmarch.interop.FAMILIES["gemma4_text"].from_config(cfg.replace(attn_scale=0.5))
    with pytest.raises(LlmarchError, match="kv_shared_layers"):
        cfg.replace(kv_shared_layers=4)  # layer 0 is the only sliding one: none earlier to read from


def test_continuous_batching_moves_shared_caches_once(tmp_path):
    """Requests joining and leaving a running batch (rows taken, caches moved left and right) decode as alone, the
    KV-shared layers reading rings and caches they never move themselves."""
    from test_continuous_batching import run_batch

    build_hf(CASES["kv_shared"], tmp_path / "hf")
    loaded = from_hf(tmp_path / "hf")
    model = llmarch.build(loaded.config.replace(context_length=48)).eval()  # a short cache: the batch must move
    model.load_state_dict(loaded.state_dict())
    g = torch.Generator().manual_seed(1)
    lengths, news = [3, 20, 5, 30, 1, 12], [20, 9, 25, 12, 30, 10]
    prompts = [torch.randint(0, 128, (n,), generator=g).tolist() for n in lengths]
    alone = [llmarch.generate(model, [p], n)[0][len(p):] for p, n in zip(prompts, news)]
    outs, moves = run_batch(model, prompts, news, rows=3, join_every=3)
    assert outs == alone
    assert any(n > 0 for n in moves) and any(n < 0 for n in moves)


def test_training_through_shared_keys_with_activation_checkpointing(tmp_path):
    """Gradients reach the layers whose keys later layers share, with and without per-block checkpointing."""
    from llmarch.transforms import checkpoint_activations

    build_hf(CASES["ple"], tmp_path / "hf")
    ids = torch.randint(0, 128, (2, 20))
    grads = []
    for checkpointing in (False, True):
        model = from_hf(tmp_path / "hf").train()
        if checkpointing:
            checkpoint_activations(model)
        model(ids).logits.logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert grads[0]["blocks.1.attn.qkv_proj.weight"].abs().sum() > 0  # layer 1's keys feed layers 4 and 5 too
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fields, message", [
    (dict(moe_beside_dense=True), "need a router"),
    (dict(router_input_norm=True), "need a router"),
    (dict(n_experts=4, moe_beside_dense=True, n_shared_experts=1), "no shared experts besides"),
    (dict(layer_scalar=True, block="parallel"), "layer_scalar"),
    (dict(ple_dim=8, ple_vocab=-1), "a positive ple_vocab"),
    (dict(kv_shared_layers=2, qk_norm="proj"), "attn_k_eq_v and kv_shared_layers"),
])
def test_the_new_fields_check_themselves(fields, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.resolve("llama-tiny", n_layers=4, vocab_size=256, **fields)
