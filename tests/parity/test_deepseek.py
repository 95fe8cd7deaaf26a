"""DeepSeek-V2 and V3 (`deepseek_v2`, `deepseek_v3`, and GLM-4.7-Flash's `glm4_moe_lite`) against transformers: a
tiny seeded random model of each
(latent attention with and without query compression, interleaved RoPE, YaRN with DeepSeek's mscales, dense
first layers, shared experts, softmax and sigmoid routers, greedy and group-limited choice, the expert bias) is
saved, loaded with from_hf and compared on a left-padded batch (fp32, max |dlogit| <= 1e-4); greedy generation
of 32 tokens equals transformers' generate (and for LLaMA with YaRN); cached decoding, absorbed or expanded,
equals the full forward; to_hf output loads back into transformers with the same logits."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf

from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, padded_batch

transformers = pytest.importorskip("transformers")

MLA = dict(vocab_size=128, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
           kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12, moe_intermediate_size=32,
           n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=128)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32,
        "mscale": 1.0, "mscale_all_dim": 0.8, "beta_fast": 32, "beta_slow": 1}
CASES = {
    # V3: compressed queries, sigmoid router with bias, 2 of 4 groups, renormalised and scaled, YaRN
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM",
                    dict(MLA, q_lora_rank=48, n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5,
                         norm_topk_prob=True, rope_parameters=YARN)),
    "deepseek_v3-biased-ungrouped": ("DeepseekV3Config", "DeepseekV3ForCausalLM",
                                     dict(MLA, q_lora_rank=48, n_group=1, topk_group=1, n_shared_experts=2,
                                          norm_topk_prob=False, attention_bias=True, first_k_dense_replace=0)),
    # GLM-4.7-Flash: V3's layout under GLM's name, its dense layers named by mlp_layer_types (first_k_dense_replace
    # is not a field of it); 2 of 4 groups as V3's router takes them
    "glm4_moe_lite": ("Glm4MoeLiteConfig", "Glm4MoeLiteForCausalLM",
                      dict({k: v for k, v in MLA.items() if k != "first_k_dense_replace"}, q_lora_rank=48, n_group=4,
                           topk_group=2, n_shared_experts=1, routed_scaling_factor=1.8, norm_topk_prob=True,
                           num_key_value_heads=4, mlp_layer_types=["dense", "sparse", "sparse"])),
    # V2-Lite's shape: no query compression, softmax greedy routing, two shared experts
    "deepseek_v2-lite": ("DeepseekV2Config", "DeepseekV2ForCausalLM",
                         dict(MLA, q_lora_rank=None, n_shared_experts=2, topk_method="greedy")),
    "deepseek_v2-grouped": ("DeepseekV2Config", "DeepseekV2ForCausalLM",
                            dict(MLA, q_lora_rank=40, n_shared_experts=1, topk_method="group_limited_greedy",
                                 n_group=4, topk_group=2, routed_scaling_factor=1.5, rope_parameters=YARN)),
    # YaRN through the shared RoPE reader, as gpt-oss sets it: no mscales, the ramp's ends not rounded
    "llama-yarn": ("LlamaConfig", "LlamaForCausalLM",
                   dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                        num_key_value_heads=2, max_position_embeddings=128,
                        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                         "original_max_position_embeddings": 32, "truncate": False})),
}


def perturb(hf):
    """Non-trivial gains and biases; routers far from uniform (and V3's expert bias set) so a swap cannot hide."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("mlp.gate.weight"):
                p.mul_(20.0)
        for name, b in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.1)
    return hf


def build_hf(case, tmp_path):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = perturb(getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(case, tmp_path)
    ours = from_hf(tmp_path / "hf")
    assert ours.config.mixer == ("attention" if case == "llama-yarn" else "mla")
    assert_matches_transformers(hf, ours, CASES[case][1], tmp_path)


@pytest.mark.parametrize("absorb", [True, False])
@pytest.mark.parametrize("case", ["deepseek_v3", "deepseek_v2-lite"])
def test_cached_decoding_equals_the_full_forward(case, absorb, tmp_path):
    build_hf(case, tmp_path)
    loaded = from_hf(tmp_path / "hf")
    ours = llmarch.build(loaded.config.replace(mla_absorb=absorb)).eval()
    ours.load_state_dict(loaded.state_dict())
    ids, mask = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        ours.setup_cache(2, 24)
        steps = [ours(ids[:, :14], attention_mask=mask[:, :14], input_pos=torch.arange(14), kv_len=14).logits]
        steps += [ours(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], input_pos=torch.tensor([t]),
                       kv_len=t + 1).logits for t in range(14, 20)]
        ours.clear_cache()
    assert_close_on_real_tokens(torch.cat(steps, dim=1), full, mask)
