"""DeepSeek's parts without transformers in the loop: the presets' published sizes, the latent cache's size,
absorbed and expanded decoding alike, YaRN's frequencies, DeepSeek's routing (groups, expert bias and its
update), the config checks, and the tiny preset training. Parity with transformers: parity/test_deepseek.py."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.analysis import model_facts
from llmarch.interop import FAMILIES
from llmarch.layers.router import Router
from llmarch.models.routing import update_expert_bias

MLA_SMALL = dict(vocab_size=97, d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=8, qk_nope_head_dim=16,
                 v_head_dim=12, kv_lora_rank=24, context_length=64)


def test_deepseek_v3_is_671b_with_37b_active():
    facts = model_facts(llmarch.preset("deepseek-v3"))
    assert facts["parameters"] == 671_026_404_352  # the model card's 671B (its 14B MTP module aside)
    assert facts["active_parameters"] == 37_552_282_624  # its 37B activated
    # 61 layers x (latent 512 + rope key 64) x bf16
    assert facts["kv_cache_bytes_per_token"] == 61 * 576 * 2
    # 6 x the active matmul parameters (the untied head, not the embedding lookup) + 6·T x the widths of q.k
    # (128 + 64 per head) and pattern.v (128 per head) in 61 layers
    matmul = facts["active_parameters"] - 129280 * 7168
    assert facts["flops_per_token"] == 6 * matmul + 6 * 61 * 128 * (128 + 64 + 128) * 163840


def test_deepseek_v2_lite_is_15_7b_with_2_4b_active():
    facts = model_facts(llmarch.preset("deepseek-v2-lite"))
    assert facts["parameters"] == 15_706_484_224  # 15.7B
    # 2.4B activated (the paper leaves the embedding lookup out; our active count includes it)
    assert facts["active_parameters"] - 102400 * 2048 == 2_451_435_008


def test_presets_match_transformers_parameter_counts():
    transformers = pytest.importorskip("transformers")
    cfg = llmarch.preset("deepseek-v2-lite")
    hf_cfg = transformers.DeepseekV2Config(**FAMILIES["deepseek_v2"].from_config(cfg))
    with torch.device("meta"):
        hf = transformers.DeepseekV2ForCausalLM(hf_cfg)
    assert sum(p.numel() for p in hf.parameters()) == model_facts(cfg)["parameters"]


@pytest.mark.parametrize("name", ["mla-tiny", "deepseek-tiny"])
def test_tiny_presets_are_cpu_sized_and_cache_a_fraction_of_gqa(name):
    facts = model_facts(llmarch.preset(name))
    assert 7e6 < facts["parameters"] < 20e6
    gqa = model_facts(llmarch.preset("llama-tiny"))["kv_cache_bytes_per_token"]  # 4 KV heads of 32
    assert facts["kv_cache_bytes_per_token"] == 8 * (64 + 16) * 2 < gqa / 3


def test_info_compares_the_latent_cache(capsys):
    from llmarch.cli import main

    main(["info", "deepseek-v3"])
    out = capsys.readouterr().out
    assert "KV-cache bytes per token: 70,272" in out and "1.4% of multi-head attention's 40960" in out
    assert "GQA's with 2.25 KV heads of 128" in out


@pytest.mark.parametrize("q_lora_rank", [None, 20])
def test_absorbed_decoding_equals_expanded_decoding(q_lora_rank):
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(0))
    outs = []
    for absorb in (True, False):
        torch.manual_seed(0)
        model = llmarch.build("mla-tiny", **MLA_SMALL, q_lora_rank=q_lora_rank, mla_absorb=absorb).eval()
        with torch.no_grad():
            full = model(ids).logits
            model.setup_cache(2, 24)
            steps = [model(ids[:, :16], input_pos=torch.arange(16), kv_len=16).logits]
            steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(16, 24)]
        outs.append(torch.cat(steps, dim=1))
        assert (outs[-1] - full).abs().max() < 1e-4
    assert (outs[0] - outs[1]).abs().max() < 1e-5


def test_latent_cache_holds_only_the_latent_and_rope_key():
    model = llmarch.build("mla-tiny", **MLA_SMALL)
    model.setup_cache(3, 40)
    state = model.blocks[0].attn.cache
    assert state.kv.shape == (3, 40, 24 + 8) and state.nbytes == 3 * 40 * 32 * 4
    assert [n for n, _ in state.named_buffers()] == ["kv"]


def test_yarn_matches_transformers():
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for truncate, mscales in [(True, dict(mscale=1.0, mscale_all_dim=0.8)), (False, {})]:
        params = dict(rope_type="yarn", rope_theta=150000.0, factor=32.0, original_max_position_embeddings=4096,
                      beta_fast=32.0, beta_slow=1.0, truncate=truncate, **mscales)
        hf_cfg = transformers.LlamaConfig(hidden_size=512, num_attention_heads=8, head_dim=64,
                                          max_position_embeddings=131072, rope_parameters=params)
        inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](hf_cfg)
        cfg = llmarch.resolve("llama-tiny", head_dim=64, context_length=131072, rope_theta=150000.0,
                              rope_scaling="yarn", rope_factor=32.0, rope_original_context=4096, rope_truncate=truncate,
                              rope_mscale=mscales.get("mscale", 0.0),
                              rope_mscale_all_dim=mscales.get("mscale_all_dim", 0.0))
        rope = llmarch.layers.POSITIONS["rope"](cfg)
        assert torch.allclose(rope.inv_freq, inv_freq, rtol=1e-6)
        cos, _ = rope.rotary(torch.zeros(1, 1, dtype=torch.long))
        assert cos[0, 0, 0].item() == pytest.approx(factor)


def test_mla_softmax_scale_takes_deepseeks_mscale():
    model = llmarch.build("mla-tiny", **MLA_SMALL, rope_scaling="yarn", rope_factor=40.0, rope_mscale=1.0,
                          rope_mscale_all_dim=1.0, device="meta")
    m = 0.1 * torch.log(torch.tensor(40.0)).item() + 1
    assert model.blocks[0].attn.scale == pytest.approx((16 + 8) ** -0.5 * m * m)


def router(**kw):
    cfg = llmarch.resolve("mixtral-tiny", d_model=16, n_experts=8, experts_per_token=2, **kw)
    r = Router(cfg)
    torch.nn.init.normal_(r.weight, std=1.0)
    return r


def test_group_limited_choice_stays_in_the_best_groups():
    for scoring in ("softmax", "sigmoid"):
        r = router(router_scoring=scoring, router_groups=4, router_topk_groups=1)
        x = torch.randn(3, 50, 16)
        _, routing = r(x)
        groups = routing.experts // 2  # four groups of two experts
        assert (groups[..., 0] == groups[..., 1]).all()


def test_expert_bias_moves_the_choice_not_the_weights():
    r = router(router_scoring="sigmoid", expert_bias=True, router_renormalize=False, router_scale=2.5)
    x = torch.randn(1, 40, 16)
    with torch.no_grad():
        r.expert_bias[3] = 10.0  # expert 3 always chosen
        weights, routing = r(x)
    assert (routing.experts == 3).any(-1).all()
    chosen3 = (routing.experts == 3)
    scores = (x @ r.weight.t()).sigmoid()
    assert torch.allclose(weights[chosen3], 2.5 * scores[..., 3][chosen3.any(-1)])


def test_bias_update_rule_favours_underloaded_experts():
    model = llmarch.build("deepseek-tiny", vocab_size=97, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2,
                          kv_lora_rank=16, q_lora_rank=None, expert_hidden=16, context_length=32)
    model.train()
    model(torch.randint(0, 97, (2, 32)))
    moe = model.blocks[1].mlp
    load = moe.routing.load()
    update_expert_bias(model)
    gamma = model.config.expert_bias_update
    assert torch.allclose(moe.router.expert_bias, gamma * torch.sign(load.mean() - load))
    assert model.blocks[0].mlp.__class__.__name__ != "MoE"  # the first FFN stays dense


@pytest.mark.parametrize("bad, message", [
    (dict(mixer="mla", attention="strided"), "mixer='mla' and attention='strided'"),
    (dict(mixer="mla", n_kv_heads=2), "mixer='mla' and n_kv_heads=2"),
    (dict(mixer="mla", qk_norm="head"), "mixer='mla' and qk_norm='head'"),
    (dict(mixer="mla", kv_lora_rank=0), "kv_lora_rank must be positive"),
    (dict(mixer="mla", q_lora_rank=0), "q_lora_rank must be positive"),
    (dict(n_experts=8, router_groups=3), "router_groups=3 must divide n_experts=8"),
    (dict(n_experts=8, router_groups=4, router_topk_groups=1, experts_per_token=3), "experts_per_token=3 is more"),
    (dict(n_experts=8, router_scoring="relu"), "unknown router_scoring 'relu'"),
    (dict(n_experts=8, expert_bias_update=0.01), "expert_bias_update=0.01 must be"),
    (dict(n_experts=8, moe_dense_first=-1), "moe_dense_first must be >= 0"),
    (dict(rope_scaling="yarn", rope_factor=0.0), "rope_scaling='yarn' needs positive rope_factor"),
])
def test_bad_configs_fail_in_one_line(bad, message):
    with pytest.raises(LlmarchError, match=message.replace("(", r"\(").replace("[", r"\[")):
        llmarch.resolve("llama-tiny", **{"n_kv_heads": 8, **bad})


def test_deepseek_tiny_trains_on_the_embedded_corpus(tmp_path):
    from llmarch.train import TrainConfig, train

    tc = TrainConfig(steps=8, batch_size=4, eval_every=8, eval_tokens=256, tokenizer="byte", log_every=1, lr=3e-3)
    cfg = llmarch.resolve("deepseek-tiny", vocab_size=257, d_model=64, n_layers=2, n_heads=4, n_kv_heads=4,
                          kv_lora_rank=32, q_lora_rank=None, expert_hidden=32, context_length=64)
    result = train(cfg, tc, tmp_path / "run", verbose=False)
    assert result.losses[8] < result.losses[1]
    trained = llmarch.load(tmp_path / "run")
    assert trained.blocks[1].mlp.router.expert_bias.abs().sum() > 0  # the balancing bias moved, and was saved


def test_pattern_hook_sees_heads_by_keys_on_either_path():
    ids = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(0))
    patterns = {}
    for absorb in (True, False):
        torch.manual_seed(0)
        model = llmarch.build("mla-tiny", **MLA_SMALL, attn_impl="eager", mla_absorb=absorb).eval()
        seen = []
        model.blocks[1].attn.hook_pattern.register_forward_hook(lambda m, i, out: seen.append(out))
        with torch.no_grad():
            model.setup_cache(1, 10)
            model(ids[:, :9], input_pos=torch.arange(9), kv_len=9)
            model(ids[:, 9:], input_pos=torch.tensor([9]), kv_len=10)
        patterns[absorb] = seen[-1]
    assert patterns[True].shape == (1, 4, 1, 10)
    assert torch.allclose(patterns[True], patterns[False], atol=1e-6)


def test_run_with_cache_sees_latent_attention_patterns():
    from llmarch.analysis.hooks import run_with_cache

    model = llmarch.build("mla-tiny", **MLA_SMALL).eval()
    _, cache = run_with_cache(model, torch.randint(0, 97, (2, 7)), names=["blocks.0.attn.hook_pattern"])
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (2, 4, 7, 7) and torch.allclose(pattern.sum(-1), torch.ones(2, 4, 7))


def test_compiled_decode_of_latent_attention_and_deepseek_routing_matches_eager():
    """The engine's compiled decode step (one graph over the static latent cache, absorbed attention, the
    grouped, biased router) gives the tokens eager decoding gives."""
    torch.manual_seed(0)
    model = llmarch.build("deepseek-tiny", vocab_size=97, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2,
                          kv_lora_rank=16, q_lora_rank=None, expert_hidden=16, context_length=32).eval()
    prompts = [[5, 6, 7, 8, 9], [1, 2, 3]]
    assert llmarch.generate(model, prompts, max_new_tokens=6, compile=True) == \
        llmarch.generate(model, prompts, max_new_tokens=6)


def test_latent_cache_reorders_rows_for_beam_search():
    model = llmarch.build("mla-tiny", **MLA_SMALL).eval()
    model.setup_cache(3, 8)
    with torch.no_grad():
        model(torch.randint(0, 97, (3, 5)), input_pos=torch.arange(5), kv_len=5)
    before = model.blocks[0].attn.cache.kv.clone()
    model.reorder_cache(torch.tensor([2, 2, 0]))
    assert torch.equal(model.blocks[0].attn.cache.kv, before[[2, 2, 0]])
