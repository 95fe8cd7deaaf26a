"""Decoder families that are configurations of parts llmarch has, against transformers through files (as
test_dense_families.py's check_case: logits on a left-padded batch within 1e-4 in fp32, greedy generation equal to
transformers', cached decoding equal to the whole forward, a to_hf round trip): FlexOlmo (OLMo 2's block with
OLMoE's experts), InternLM3 and EXAONE 3 (LLaMA under other names), CWM (sliding and full layers), Solar Open
(GLM-4.5's mixture on every layer), AFMoE and HY V3 (sigmoid-routed experts; AFMoE's gated attention and NoPE full
layers), Granite SWA and Granite MoE SWA (attention sinks, a RoPE base per layer) and OLMo Hybrid (Gated DeltaNet
and attention layers, each with its own norm placement)."""
import pytest

from test_dense_families import COMMON, check_case

transformers = pytest.importorskip("transformers")

CASES = {
    # OLMo 2's norms after each sublayer and QK-norm over projections; 4 experts, top 2, not renormalised
    "flex_olmo": ("FlexOlmoConfig", "FlexOlmoForCausalLM",
                  dict(COMMON, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, pad_token_id=0,
                       eos_token_id=None)),
    # LLaMA as transformers runs it, biases on q k v o and the MLP (qkv_bias and bias)
    "internlm3": ("InternLM3Config", "LlamaForCausalLM",
                  dict(COMMON, num_key_value_heads=2, head_dim=16, qkv_bias=True, bias=True, pad_token_id=0)),
    # LLaMA under GPT-2-like tensor names, which transformers writes too
    "exaone": ("ExaoneConfig", "LlamaForCausalLM", dict(COMMON, num_key_value_heads=2, eos_token_id=None)),
    # layers 0 and 4 full, 1-3 slide over 8 keys; LLaMA 3 RoPE scaling (its default) over 32 positions
    "cwm": ("CwmConfig", "CwmForCausalLM",
            dict(COMMON, num_hidden_layers=5, num_key_value_heads=2, head_dim=16, sliding_window=8,
                 eos_token_id=None, bos_token_id=1, max_position_embeddings=128,
                 rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 4.0,
                                  "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                  "original_max_position_embeddings": 32})),
    # every layer 8 experts in 4 groups (2 chosen), top 2 by sigmoid plus bias, renormalised and scaled, one shared;
    # q k v biases
    "solar_open": ("SolarOpenConfig", "SolarOpenForCausalLM",
                   dict(COMMON, num_key_value_heads=2, head_dim=16, attention_bias=True, moe_intermediate_size=32,
                        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=4, topk_group=2,
                        routed_scaling_factor=2.5)),
    # AFMoE: gated attention with per-head QK-norm, layers 0-2 sliding over 8 keys with RoPE and layer 3 full
    # without positions, sandwich norms, embeddings times sqrt(d); layer 0 dense, then 4 experts (top 2 by sigmoid
    # plus an expert bias, renormalised, times 1.5) and a shared one
    "afmoe": ("AfmoeConfig", "AfmoeForCausalLM",
              dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                   moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, num_shared_experts=1,
                   route_scale=1.5, mup_enabled=True)),
    # HY V3: per-head QK-norm; layer 0 dense, then 4 experts (top 2 by sigmoid plus an expert bias, renormalised,
    # times 2.826) and a shared one
    "hy_v3": ("HYV3Config", "HYV3ForCausalLM",
              dict(COMMON, num_hidden_layers=3, num_key_value_heads=2, head_dim=16, moe_intermediate_size=32,
                   num_experts=4, num_experts_per_tok=2, num_shared_experts=1)),
    # Granite SWA: Granite's scalars, a sink per head (moved off its zero init with the other 1-D parameters), layers
    # 0 and 4 full, 1-3 sliding over 8 keys; RoPE bases per layer: layer 2 none, layer 3 another base
    "granite_swa": ("GraniteSWAConfig", "GraniteSWAForCausalLM",
                    dict(COMMON, num_hidden_layers=5, num_key_value_heads=2, sliding_window=8,
                         layer_rope_theta=[10000.0, 10000.0, 0, 500.0, 10000.0], embedding_multiplier=2.0,
                         residual_multiplier=0.5, logits_scaling=4.0, attention_multiplier=0.3, eos_token_id=None,
                         bos_token_id=None)),
    # its mixture: 4 experts, top 2, and a shared MLP of 48; layers 1-3 slide, layer 2 without positions
    "granitemoe_swa": ("GraniteMoeSWAConfig", "GraniteMoeSWAForCausalLM",
                       dict(COMMON, intermediate_size=32, num_hidden_layers=4, num_key_value_heads=2, sliding_window=8,
                            layer_rope_theta=[10000.0, 10000.0, 0, 10000.0], num_local_experts=4,
                            num_experts_per_tok=2, shared_intermediate_size=48, embedding_multiplier=2.0,
                            residual_multiplier=0.5, logits_scaling=4.0, attention_multiplier=0.3)),
    # OLMo Hybrid: Gated DeltaNet layers 0-2 (pre-norm; 2 key heads serving 4 value heads; beta in [0, 2]) and OLMo
    # 3's attention on layer 3 (norms after each sublayer, QK-norm over projections, RoPE)
    "olmo_hybrid": ("OlmoHybridConfig", "OlmoHybridForCausalLM",
                    dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, linear_num_key_heads=2,
                         linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=8, pad_token_id=0,
                         eos_token_id=None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    check_case(case, tmp_path, CASES)
