"""Youtu-LLM, Jais-2, MiniCPM5-MoE, HyperCLOVA X, IQuest-Coder, Param-2 MoE, Sarvam MoE and MLA, Apertus 1.5 against
transformers, through files (as test_dense_families.py's check_case: each a tiny seeded random model with its 1-D
parameters moved and its routers made decisive, saved and read by from_hf; logits on a left-padded batch within 1e-4
in fp32, 32 greedy tokens equal to transformers', cached decoding equal to the whole forward, and a to_hf round trip
that transformers loads with the same logits)."""
import pytest

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

import test_dense_families

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
GLM_MOE = dict(num_key_value_heads=2, head_dim=16, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
               n_group=2, topk_group=1, eos_token_id=None)
MLA = dict(kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12)
CASES = {
    # Youtu: DeepSeek-V3's latent attention (compressed query, interleaved RoPE rows) in dense LLaMA blocks, tied head
    "youtu": ("YoutuConfig", "YoutuForCausalLM", dict(COMMON, **MLA, q_lora_rank=24, bos_token_id=1, eos_token_id=2)),
    # Jais-2: LayerNorms with biases, an ungated squared-ReLU MLP, biases on q k v o but none on the MLP
    "jais2": ("Jais2Config", "Jais2ForCausalLM", dict(COMMON, num_key_value_heads=2, mlp_bias=False, eos_token_id=2)),
    # MiniCPM5-MoE: gated attention (q_gate_proj: each head's queries, then its gate); layer 0 dense, layer 1 4 experts
    # in 2 groups (1 chosen), top 2 by sigmoid plus bias, renormalised and times 3.66, one shared MLP
    "minicpm5_moe": ("MiniCPM5MoeConfig", "MiniCPM5MoeForCausalLM",
                     dict(COMMON, num_key_value_heads=2, head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
                          moe_intermediate_size=32, n_group=2, topk_group=1, eos_token_id=2, pad_token_id=0,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    # HyperCLOVA X: Granite's scalars (the logits multiplied by 0.5) with Peri-LN (a norm on each sublayer's output
    # before the residual multiplier); scores scaled by 1/sqrt(head_dim) (attention_multiplier null)
    "hyperclovax": ("HyperCLOVAXConfig", "HyperCLOVAXForCausalLM",
                    dict(COMMON, num_key_value_heads=2, embedding_multiplier=2.0, residual_multiplier=0.5,
                         logits_scaling=0.5, attention_bias=True, mlp_bias=True, eos_token_id=None)),
    # IQuest-Coder: LLaMA as transformers runs it, head_dim 24 (not d / heads)
    "iquestcoder": ("IQuestCoderConfig", "LlamaForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=24)),
    # Param-2 and Sarvam MoE: GLM-4.5 as transformers runs them, RoPE over the whole head, per-head QK-norm; layer 0
    # dense, layer 1 4 experts in 2 groups (1 chosen), top 2 by sigmoid plus bias, renormalised, times 2.5, shared
    # experts (2 widths for Param-2); q k v biases for Sarvam; tied (Param-2) and untied heads
    "param2moe": ("Param2MoeConfig", "Glm4MoeForCausalLM", dict(COMMON, **GLM_MOE)),
    "sarvam_moe": ("SarvamMoEConfig", "Glm4MoeForCausalLM", dict(COMMON, **GLM_MOE, attention_bias=True)),
    # Sarvam MLA: DeepSeek-V3 as transformers runs it: latent attention with one q_proj; layer 0 dense, layer 1 4
    # experts in 2 groups (1 chosen), top 2 by sigmoid plus bias, renormalised, times 2.5, one shared expert
    "sarvam_mla": ("SarvamMLAConfig", "DeepseekV3ForCausalLM",
                   dict(COMMON, **MLA, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, n_group=2,
                        topk_group=1, eos_token_id=None)),
    # Apertus 1.5: Apertus (QK-norm, xIELU) whose untied head scores the first 100 of the 128 ids only
    "apertus1p5_text": ("Apertus1p5TextConfig", "Apertus1p5TextForCausalLM",
                        dict(COMMON, num_key_value_heads=2, head_dim=16, output_vocab_size=100, pad_token_id=3,
                             eos_token_id=None, bos_token_id=1,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    # Flint: per-head QK-norm, a sink per head (moved off its init with the other 1-D parameters); layer 0 sliding
    # over 8 keys with RoPE and dense, layer 1 full without positions with 4 experts, top 2 by sigmoid, renormalised,
    # beside a shared expert of 48
    "flint": ("FlintConfig", "FlintForCausalLM",
              dict(COMMON, num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
                   moe_intermediate_size=32, shared_expert_intermediate_size=48, sliding_window=8, mlp_only_layers=[0],
                   layer_types=["sliding_attention", "full_attention"])),
    # A.X-K1: DeepSeek-V3 with an RMSNorm on each mixture's output; layers 0 and 1 dense, layer 2 4 experts in 2
    # groups (1 chosen), top 2 by sigmoid plus bias, renormalised, times 2.5, a shared expert (older config keys:
    # first_k_dense_replace 1 and moe_layer_freq 2)
    "axk1": ("AXK1Config", "AXK1ForCausalLM",
             dict(COMMON, **MLA, num_hidden_layers=3, q_lora_rank=24, n_routed_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=32, n_group=2, topk_group=1, first_k_dense_replace=1, moe_layer_freq=2,
                  bos_token_id=1, eos_token_id=None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    ours = test_dense_families.check_case(case, tmp_path, CASES)
    assert from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_hyperclovax_without_post_norms_is_granite_with_logits_multiplied():
    cfg = hf_model_config(dict(COMMON, model_type="hyperclovax", use_post_norm=False, logits_scaling=4.0))
    assert (cfg.norm_placement, cfg.logit_divisor, cfg.attn_scale) == ("pre", 0.25, None)
    assert hf_model_config(dict(COMMON, model_type="hyperclovax", attention_multiplier=0.2)).attn_scale == 0.2


def test_refusals():
    """Variants the families' tensors or parts cannot compute are refused in one line."""
    with pytest.raises(LlmarchError, match="rope_interleave false"):
        hf_model_config(dict(COMMON, **MLA, model_type="youtu", rope_interleave=False))
    with pytest.raises(LlmarchError, match="jais2: hidden_act 'silu'"):
        hf_model_config(dict(COMMON, model_type="jais2", hidden_act="silu"))
    with pytest.raises(LlmarchError, match="minicpm5_moe: partial_rotary_factor"):
        hf_model_config(dict(COMMON, model_type="minicpm5_moe", partial_rotary_factor=0.5))
    with pytest.raises(LlmarchError, match="iquestcoder: clip_qkv and use_sliding_window"):
        hf_model_config(dict(COMMON, model_type="iquestcoder", use_sliding_window=True))
    with pytest.raises(LlmarchError, match="pruned head .* tied"):
        hf_model_config(dict(COMMON, model_type="apertus1p5_text", output_vocab_size=100, tie_word_embeddings=True))
    with pytest.raises(LlmarchError, match="head_vocab=200 needs"):
        hf_model_config(dict(COMMON, model_type="apertus1p5_text", output_vocab_size=200))


@pytest.mark.parametrize("kind, tied, theta", [("param2moe", True, 5e5), ("sarvam_moe", False, 8e6)])
def test_glm4_moe_variants_read_original_configs_with_their_class_defaults(kind, tied, theta):
    """Param-2's and Sarvam's original config.json: the remote code's names (num_experts, num_shared_experts,
    use_qkv_bias), no rope_parameters: RoPE over the whole head (GLM-4.5's default is half), QK-norm on."""
    cfg = hf_model_config(dict(COMMON, model_type=kind, num_key_value_heads=2, num_experts=8, num_shared_experts=2,
                               use_qkv_bias=True, num_experts_per_tok=2, moe_intermediate_size=32))
    assert (cfg.rope_fraction, cfg.qk_norm, cfg.qkv_bias, cfg.n_experts, cfg.n_shared_experts) == (1.0, "head", True,
                                                                                                   8, 2)
    assert (cfg.tie_embeddings, cfg.rope_theta, cfg.head_dim, cfg.router_scale) == (tied, theta, 64, 2.5)


def test_sarvam_mla_reads_the_original_config_format():
    """sarvam-105b's original config.json: head_dim = kv_lora_rank + qk_rope_head_dim (for vLLM, not read),
    num_experts for n_routed_experts, RoPE scaling `deepseek_yarn` (YaRN), no q_lora_rank (one q_proj)."""
    cfg = hf_model_config(dict(COMMON, **MLA, model_type="sarvam_mla", head_dim=24, num_experts=8,
                               num_experts_per_tok=2, moe_intermediate_size=32, rope_theta=1e4,
                               rope_scaling={"type": "deepseek_yarn", "factor": 4.0, "mscale": 1.0,
                                             "mscale_all_dim": 1.0, "original_max_position_embeddings": 64}))
    assert (cfg.head_dim, cfg.n_experts, cfg.q_lora_rank, cfg.moe_dense_first) == (8, 8, None, 1)
    assert (cfg.rope_scaling, cfg.rope_factor, cfg.rope_original_context, cfg.rope_mscale) == ("yarn", 4.0, 64, 1.0)


def test_axk1_as_published_without_the_expert_bias(tmp_path):
    """A.X-K1's published checkpoints route without e_score_correction_bias (transformers keeps it at zero) and store
    post_mlp_layernorm for the dense layers too (unused): read as transformers reads them."""
    import torch
    from safetensors.torch import load_file, save_file

    test_dense_families.build_hf("axk1", tmp_path, CASES)
    file = next((tmp_path / "hf").glob("*.safetensors"))
    state = {k: v for k, v in load_file(file).items() if "e_score_correction_bias" not in k}
    save_file({**state, "model.layers.0.post_mlp_layernorm.weight": torch.full((64,), 3.0)}, file,
              metadata={"format": "pt"})
    hf = transformers.AXK1ForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 128, (2, 11))
    with torch.no_grad():
        assert (from_hf(tmp_path / "hf")(ids).logits - hf(ids).logits).abs().max() <= 1e-4
