"""Kimi Linear (`kimi_linear`) against transformers, through files: tiny seeded random models with both layer types
(Kimi Delta Attention and latent attention without positions), a dense first layer and DeepSeek-V3's mixtures,
compared on left-padded batches (fp32, max |dlogit| <= 1e-4) with prompts longer than transformers' 64-token
chunk, greedy generation of 32 tokens, cached decoding equal to the full forward, and the to_hf round trip. The
transformers model runs its pure-torch KDA (the fla kernels are not installed: it says so and falls back)."""
import json

import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf
from llmarch.interop.kimi_linear import to_config

import test_qwen3_next
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
TYPES = ["linear_attention", "linear_attention", "full_attention", "linear_attention"]
CONFIG = dict(vocab_size=128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
              intermediate_size=96, moe_intermediate_size=32, kv_lora_rank=32, q_lora_rank=None, qk_rope_head_dim=8,
              qk_nope_head_dim=16, v_head_dim=12, num_local_experts=8, num_experts_per_tok=2, n_shared_experts=1,
              n_group=4, topk_group=2, routed_scaling_factor=2.0, linear_num_heads=4, linear_head_dim=16,
              pad_token_id=0, layer_types=TYPES)
CASES = {
    "base": CONFIG,
    # query compression, biased latent projections, two shared experts, weights not renormalised, no dense layer
    "compressed-biased": dict(CONFIG, q_lora_rank=24, attention_bias=True, n_shared_experts=2, norm_topk_prob=False,
                              n_group=1, topk_group=1, mlp_layer_types=["sparse"] * 4, linear_conv_kernel_dim=3),
}


def perturb(hf):
    """Non-trivial gains, step sizes, decays and expert bias; routers far from uniform."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1 or name.endswith("A_log"):
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("mlp.gate.weight"):
                p.normal_(0, 0.4)
        for name, b in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.1)
    return hf


def build_hf(case, path):
    torch.manual_seed(0)
    hf = perturb(transformers.KimiLinearForCausalLM(transformers.KimiLinearConfig(**CASES[case])).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    return hf


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kimi_linear")
    hf = build_hf("base", tmp / "hf")
    return hf, from_hf(tmp / "hf"), tmp


def test_config_reads_both_layer_types_and_the_mixture(models):
    _, ours, _ = models
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(4)] == ["kda", "kda", "mla", "kda"]
    assert (cfg.positions, cfg.delta_heads, cfg.delta_key_dim, cfg.ssm_conv, cfg.ssm_conv_bias) == \
        ("none", 4, 16, 4, False)
    assert (cfg.n_experts, cfg.moe_dense_first, cfg.router_scoring, cfg.expert_bias, cfg.router_groups,
            cfg.router_topk_groups, cfg.router_scale, cfg.norm_eps) == (8, 1, "sigmoid", True, 4, 2, 2.0, 1e-5)


# Qwen3-Next's checks (left-padded logits, with prompts past one 64-token chunk; greedy generation; cached
# decoding), run on this file's `models`
test_logits_on_a_left_padded_batch = test_qwen3_next.test_logits_on_a_left_padded_batch
test_greedy_generation = test_qwen3_next.test_greedy_generation
test_cached_decoding_equals_the_full_forward = test_qwen3_next.test_cached_decoding_equals_the_full_forward


def test_to_hf_round_trip_in_moonshots_layout(models):
    """to_hf writes the dense layer's MLP under mlp. (Moonshot's files; transformers saves it under
    block_sparse_moe.) and the experts one by one; transformers loads it to the same logits."""
    _, ours, tmp = models
    to_hf(ours, tmp / "out")
    from safetensors import safe_open

    with safe_open(str(tmp / "out" / "model.safetensors"), "pt") as f:
        names, a_log = set(f.keys()), tuple(f.get_slice("model.layers.0.self_attn.A_log").get_shape())
    assert {"model.layers.0.mlp.gate_proj.weight", "model.layers.1.block_sparse_moe.experts.7.w2.weight"} <= names
    assert a_log == (1, 1, 4, 1)
    again = transformers.KimiLinearForCausalLM.from_pretrained(tmp / "out").eval()
    ids, mask = padded_batch(128)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        back = from_hf(tmp / "out")(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(hf_logits(again, ids, mask), mine, mask)
    assert torch.equal(back, mine)


def test_a_second_shape(tmp_path):
    hf = build_hf("compressed-biased", tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert (ours.config.q_lora_rank, ours.config.qkv_bias, ours.config.moe_dense_first, ours.config.ssm_conv) == \
        (24, True, 0, 3)
    assert_matches_transformers(hf, ours, "KimiLinearForCausalLM", tmp_path)


def test_moonshots_config_json_reads_the_same(models):
    """Moonshot's config.json spells the linear layers as a linear_attn_config dict (1-indexed layers) and the
    mixture by transformers' attribute_map names; both read as the same config."""
    _, ours, tmp = models
    hf = json.loads((tmp / "hf" / "config.json").read_text())
    for key in ("layer_types", "mlp_layer_types", "linear_num_heads", "linear_head_dim", "linear_conv_kernel_dim"):
        hf.pop(key)
    hf.update(linear_attn_config={"full_attn_layers": [3], "kda_layers": [1, 2, 4], "num_heads": 4, "head_dim": 16,
                                  "short_conv_kernel_size": 4}, first_k_dense_replace=1)
    assert to_config(hf) == ours.config.replace(name=ours.config.name)


@pytest.mark.parametrize("change, message", [
    (dict(num_key_value_heads=2), "num_key_value_heads must equal num_attention_heads"),
    (dict(layer_types=["linear_attention", "sliding_attention", "full_attention", "linear_attention"]),
     "are not 4 of"),
])
def test_unsupported_configs_are_refused(models, change, message):
    _, _, tmp = models
    hf = json.loads((tmp / "hf" / "config.json").read_text())
    with pytest.raises(llmarch.LlmarchError, match=message):
        to_config({**hf, **change})
