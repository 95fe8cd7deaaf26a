"""LFM3, Ling 3 (bailing_hybrid) and ZAYA1 (zaya) against transformers, through files: tiny seeded random models with
every layer type each family has, compared on a left-padded batch (fp32, max |dlogit| <= 1e-4), greedy generation of
12 tokens, cached decoding (prompt, then one token per call) equal to the whole forward, and the to_hf round trip
that transformers loads to the same logits. Every 1-D parameter and buffer is moved off its init
(conftest.perturbed), so a missing norm, gate or bias shows."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf

from conftest import perturbed
from test_hf_families import assert_close_on_real_tokens, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
NEW = 12  # greedy tokens compared
LFM3 = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, sliding_window=6, conv_L_cache=3, pad_token_id=0, bos_token_id=1,
            eos_token_id=2, layer_types=["conv", "sliding_attention", "full_attention", "conv"])


def build(config_cls, model_cls, kwargs, path, prep=perturbed):
    torch.manual_seed(0)
    hf = prep(getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    return hf, from_hf(path)


def check_parity(hf, ours, exported, tmp, lengths=(20, 13)):
    """Left-padded logits, greedy tokens, cached decoding equal to the whole forward, and the round trip."""
    ids, mask = padded_batch(ours.config.vocab_size, lengths)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(mine, hf_logits(hf, ids, mask), mask)
    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW), theirs)
    T = ids.shape[1]
    with torch.no_grad():
        ours.setup_cache(2, T)
        steps = [ours(ids[:, :T - 6], attention_mask=mask, input_pos=torch.arange(T - 6), kv_len=T - 6).logits]
        steps += [ours(ids[:, t:t + 1], attention_mask=mask, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                  for t in range(T - 6, T)]
        ours.clear_cache()
    assert_close_on_real_tokens(torch.cat(steps, dim=1), mine, mask)
    to_hf(ours, tmp / "out")
    again = getattr(transformers, exported).from_pretrained(tmp / "out").eval()
    assert_close_on_real_tokens(hf_logits(again, ids, mask), mine, mask)


def test_lfm3(tmp_path):
    hf, ours = build("Lfm3Config", "Lfm3ForCausalLM", LFM3, tmp_path / "hf")
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(4)] == ["shortconv", "attention", "attention", "shortconv"]
    assert [cfg.for_layer(i).attention for i in (1, 2)] == ["sliding_window", "full"]
    assert (cfg.for_layer(2).rope_scaling, cfg.for_layer(2).rope_fraction, cfg.for_layer(1).rope_fraction) == \
        ("proportional", 0.5, 1.0)
    assert (cfg.attn_head_gate, cfg.norm_placement, cfg.qk_norm, cfg.ssm_conv) == (True, "sandwich", "head", 3)
    check_parity(hf, ours, "Lfm3ForCausalLM", tmp_path)




BAILING = dict(vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=4, head_dim=16, kv_lora_rank=32, q_lora_rank=None,
               qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12, num_local_experts=8, num_experts_per_tok=2,
               n_shared_experts=1, n_group=4, topk_group=2, first_k_dense_replace=1, layer_group_size=3,
               short_conv_kernel_size=3, rope_theta=10000.0, pad_token_id=0, eos_token_id=2)


def perturbed_moe(hf):
    """conftest.perturbed, and the router far from uniform with a nonzero expert bias (a buffer)."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("mlp.gate.weight"):
                p.normal_(0, 0.5)
        for name, b in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.1)
    return perturbed(hf)


def test_bailing_hybrid(tmp_path):
    hf, ours = build("BailingHybridConfig", "BailingHybridForCausalLM", BAILING, tmp_path / "hf", perturbed_moe)
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(3)] == ["kda", "kda", "mla"]
    assert (cfg.positions, cfg.attn_head_gate, cfg.kda_full_gates, cfg.kda_gate_bound, cfg.delta_key_dim) == \
        ("rope", True, True, -5.0, 16)
    assert (cfg.moe_dense_first, cfg.n_experts, cfg.router_groups, cfg.router_scale) == (1, 8, 4, 2.5)
    check_parity(hf, ours, "BailingHybridForCausalLM", tmp_path)  # chunk crossing: test_kimi_linear (chunk_kda)


@pytest.mark.parametrize("model_type, change, message", [
    ("lfm3", dict(layer_types=["conv", "linear_attention", "conv", "conv"]), "layer_types"),
    ("lfm3", dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4}), "rope_parameters"),
    ("bailing_hybrid", dict(expert_swiglu_limit_list=[0, 7.0, 7.0]), "SwiGLU clipping"),
    ("bailing_hybrid", dict(swiglu_limits_shared=[0, 0, 7.0]), "SwiGLU clipping"),
    ("zaya", dict(num_experts_per_tok=2), "num_experts_per_tok 1"),
    ("zaya", dict(rope_parameters={"hybrid": {"rope_type": "yarn", "factor": 2.0}}), "rope_type 'default'"),
    ("zaya", dict(sliding_window=None), "need sliding_window"),
])
def test_unsupported_configs_are_refused(model_type, change, message):
    from llmarch.interop import FAMILIES

    base = {"lfm3": LFM3, "bailing_hybrid": BAILING, "zaya": ZAYA}[model_type]
    with pytest.raises(llmarch.LlmarchError, match=message):
        FAMILIES[model_type].to_config(dict(base, model_type=model_type, **change))


ZAYA = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, moe_intermediate_size=32, num_experts=4, router_hidden_size=16, cca_time0=2, cca_time1=3,
            sliding_window=6, layer_types=["hybrid", "hybrid_sliding"], lm_head_bias=True, pad_token_id=0,
            bos_token_id=1, eos_token_id=2)


def perturbed_zaya(hf):
    """conftest.perturbed (the residual scales, the key scale tau, biases, norms); router weights large enough that
    the carried router state moves the probabilities, and balancing biases that offset each choice's mean
    probability, so that tokens spread over the experts and the skip expert."""
    perturbed(hf)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if ".mlp.gate." in name and p.dim() == 2:
                p.normal_(0, 0.3)
        logits = hf(torch.randint(0, 128, (2, 16)), output_router_logits=True).router_logits
        for layer, lg in zip(hf.model.layers, logits):
            bias = -lg.softmax(-1).mean(0)
            # shifted (the choice does not change) so that the skip expert's is -1: transformers' _init_weights sets
            # it to -1 again on every from_pretrained, whatever the file holds
            layer.mlp.gate.balancing_biases.copy_(bias - 1.0 - bias[-1])
    return hf


def test_zaya(tmp_path):
    hf, ours = build("ZayaConfig", "ZayaForCausalLM", ZAYA, tmp_path / "hf", perturbed_zaya)
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(2)] == ["cca", "cca"]
    assert [cfg.for_layer(i).attention for i in range(2)] == ["full", "sliding_window"]
    assert (cfg.router_mlp, cfg.skip_experts, cfg.residual_mix, cfg.embed_affine, cfg.head_bias) == \
        (16, 1, "affine", True, True)
    check_parity(hf, ours, "ZayaForCausalLM", tmp_path)
