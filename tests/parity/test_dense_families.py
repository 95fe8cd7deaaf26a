"""Families against transformers, through files (as test_hf_families.py does): BLOOM and Falcon-RW (ALiBi), Qwen3
(per-head QK-norm, sliding layers), OLMo 1, 2 and 3 and OLMoE (norms without parameters, clamped q k v, QK-norm
over whole projections, norms after each sublayer, RoPE per layer type, experts), EXAONE 4.0, GLM, GLM-4 and
GLM-4.5, Command R and R7B, ERNIE 4.5 and its MoE (RoPE in adjacent pairs), Qwen3.5 (split delta-rule
projections), StarCoder, OPT, Arcee, Nemotron, Seed-OSS, Helium, Hunyuan and its MoE, LFM2 (gated short
convolutions), Granite MoE with a shared MLP, Phi-3 (fused projections, LongRoPE) and SmolLM3 (NoPE every k-th
layer); and the vision-language checkpoints' text models (Qwen3.5, Mistral 3). Each: a tiny seeded random model,
saved and loaded with from_hf, logits on a left-padded batch within 1e-4 (fp32), greedy generation of 32 tokens
equal to transformers', cached decoding equal to the whole forward, and a to_hf round trip that transformers loads
with the same logits."""
import pytest
import torch

from llmarch.interop import from_hf

from conftest import routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
QWEN3_5 = dict(num_key_value_heads=2, head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
               linear_key_head_dim=16, linear_value_head_dim=8, layer_types=["linear_attention", "full_attention"])
CASES = {
    # 6 heads: slopes for a head count that is not a power of two (4 of 4 heads, then 2 of 8)
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(vocab_size=128, hidden_size=48, n_layer=2, n_head=6)),
    # Falcon-RW: ALiBi, per-head q k v, sequential block, biases; its bias is scaled and rounded to bf16
    # (12 heads: slopes 2^-0.5, 2^-1.5, ... that bf16 rounds)
    "falcon-rw": ("FalconConfig", "FalconForCausalLM",
                  dict(vocab_size=128, hidden_size=96, num_hidden_layers=2, num_attention_heads=12, alibi=True,
                       multi_query=False, parallel_attn=False, bias=True, ffn_hidden_size=96)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=24)),
    # layer 1 slides over 8 keys (max_window_layers=1): shorter than the 13-20-token prompts
    "qwen3-sliding": ("Qwen3Config", "Qwen3ForCausalLM",
                      dict(COMMON, num_key_value_heads=2, use_sliding_window=True, sliding_window=8,
                           max_window_layers=1)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(COMMON, num_key_value_heads=2)),
    # OLMo 1: no norm parameters at all; q, k, v clamped at 0.1 (the projections here reach 0.5: it binds)
    "olmo": ("OlmoConfig", "OlmoForCausalLM", dict(COMMON, num_key_value_heads=2, clip_qkv=0.1)),
    # OLMoE: the projections' QK-norm, then the clamp (0.5 binds on normalised values), 4 experts, top 2 not
    # renormalised
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM",
              dict(COMMON, num_key_value_heads=2, clip_qkv=0.5, num_experts=4, num_experts_per_tok=2)),
    # EXAONE 4.0: OLMo 2's norms with Qwen3's QK-norm; layers 0-2 slide over 8 keys with RoPE, layer 3 sees all
    # without positions
    "exaone4": ("Exaone4Config", "Exaone4ForCausalLM",
                dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, sliding_window=8, sliding_window_pattern=4)),
    # fewer layers than the pattern's period of 4: every layer slides, none is full (it was refused)
    "exaone4-all-sliding": ("Exaone4Config", "Exaone4ForCausalLM",
                            dict(COMMON, num_key_value_heads=2, sliding_window=8, sliding_window_pattern=4)),
    # without a window (EXAONE-4.0-1.2B): every layer full, with RoPE (transformers needs layer_types given then)
    "exaone4-full": ("Exaone4Config", "Exaone4ForCausalLM",
                     dict(COMMON, num_key_value_heads=2, sliding_window=None, layer_types=["full_attention"] * 2)),
    # OLMo 3: layers 0-2 slide over 8 keys, layer 3 is full with YaRN (factor 4 over 32 positions), the sliding
    # layers plain RoPE of another base
    "olmo3": ("Olmo3Config", "Olmo3ForCausalLM",
              dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, sliding_window=8, max_position_embeddings=128,
                   rope_parameters={"full_attention": {"rope_type": "yarn", "rope_theta": 50000.0, "factor": 4.0,
                                                       "original_max_position_embeddings": 32,
                                                       "attention_factor": 1.2},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})),
    # GLM: half of each head rotated in adjacent pairs, q k v biases only, gate and up fused
    "glm": ("GlmConfig", "GlmForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16, pad_token_id=0)),
    # GLM-4: the same with sandwich norms; a quarter rotated here, and GQA
    "glm4": ("Glm4Config", "Glm4ForCausalLM",
             dict(COMMON, num_key_value_heads=2, head_dim=16, pad_token_id=0,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})),
    # Command R: the parallel block under one bias-free LayerNorm, adjacent-pair RoPE, logits times 1/16, tied
    "cohere": ("CohereConfig", "CohereForCausalLM", dict(COMMON, num_key_value_heads=2)),
    # Command R7B: layers 0-2 slide over 8 keys with RoPE, layer 3 sees all without positions
    "cohere2": ("Cohere2Config", "Cohere2ForCausalLM",
                dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, sliding_window=8)),
    # ERNIE 4.5: adjacent-pair RoPE over whole heads, with and without its one use_bias
    "ernie4_5": ("Ernie4_5Config", "Ernie4_5ForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16)),
    "ernie4_5-bias": ("Ernie4_5Config", "Ernie4_5ForCausalLM",
                      dict(COMMON, num_key_value_heads=2, head_dim=16, use_bias=True, tie_word_embeddings=False)),
    # GLM-4.5: half of each head rotated (halves), q k v biases, per-head QK-norm, layer 0 dense, then 8 experts in
    # 4 groups (2 chosen), top 2 by sigmoid score plus bias, renormalised and scaled, one shared expert
    "glm4_moe": ("Glm4MoeConfig", "Glm4MoeForCausalLM",
                 dict(COMMON, num_hidden_layers=3, num_key_value_heads=2, head_dim=16, attention_bias=True,
                      use_qk_norm=True, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                      n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                      pad_token_id=0)),
    # Qwen3.5: Qwen3-Next's hybrid (a Gated DeltaNet layer, then gated full attention) with its delta-rule
    # projections stored apart and a dense MLP; 2 key heads serving 4 value heads; the MoE one with experts
    "qwen3_5": ("Qwen3_5TextConfig", "Qwen3_5ForCausalLM", dict(COMMON, **QWEN3_5)),
    "qwen3_5_moe": ("Qwen3_5MoeTextConfig", "Qwen3_5MoeForCausalLM",
                    dict(COMMON, **QWEN3_5, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                         shared_expert_intermediate_size=48)),
    # StarCoder: GPT-2's blocks as nn.Linear, multi-query attention; SantaCoder-style without it (q k v per head)
    "gpt_bigcode": ("GPTBigCodeConfig", "GPTBigCodeForCausalLM",
                    dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_inner=96, n_positions=128)),
    "gpt_bigcode-mha": ("GPTBigCodeConfig", "GPTBigCodeForCausalLM",
                        dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_inner=96, n_positions=128,
                             multi_query=False, scale_attn_weights=False)),
    # OPT: learned positions from offset 2 counted from each row's first real token, a ReLU MLP, biases, tied
    # GPT-Neo: unscaled attention scores, q k v without biases, global and local (8 keys) layers alternating
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM",
                dict(vocab_size=128, hidden_size=64, num_layers=4, num_heads=4, window_size=8,
                     max_position_embeddings=128, attention_types=[[["global", "local"], 2]])),
    # GPT-J: one LayerNorm before parallel attention and MLP, RoPE on 8 of 16 dims in adjacent pairs, no attention
    # biases, an MLP and a head with them
    "gptj": ("GPTJConfig", "GPTJForCausalLM",
             dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=128)),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(vocab_size=128, hidden_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, ffn_dim=96, max_position_embeddings=128,
                                                pad_token_id=0)),
    # Arcee AFM: LLaMA with an ungated squared-ReLU MLP
    "arcee": ("ArceeConfig", "ArceeForCausalLM", dict(COMMON, num_key_value_heads=2, pad_token_id=0)),
    # Seed-OSS: q k v biases only
    "seed_oss": ("SeedOssConfig", "SeedOssForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16,
                                                             pad_token_id=0)),
    # Helium: adjacent-pair RoPE, q k v biases here
    "helium": ("HeliumConfig", "HeliumForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16,
                                                         attention_bias=True, pad_token_id=0)),
    # Nemotron: LayerNorm1P with biases, half of each head rotated, squared-ReLU MLP, biases everywhere here
    "nemotron": ("NemotronConfig", "NemotronForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16,
                                                               attention_bias=True, mlp_bias=True, pad_token_id=0)),
    # ERNIE 4.5 MoE: layer 0 dense, then 4 experts (top 2 by softmax plus an expert bias, renormalised) and a
    # shared expert
    "ernie4_5_moe": ("Ernie4_5_MoeConfig", "Ernie4_5_MoeForCausalLM",
                     dict(COMMON, num_hidden_layers=3, num_key_value_heads=2, head_dim=16, moe_num_experts=4,
                          moe_k=2, moe_intermediate_size=32, moe_num_shared_experts=1, moe_layer_start_index=1)),
    # Hunyuan: per-head QK-norm after RoPE; RoPE "dynamic" with a fixed alpha (a stretched base)
    "hunyuan": ("HunYuanDenseV1Config", "HunYuanDenseV1ForCausalLM",
                dict(COMMON, num_key_value_heads=2, head_dim=16, pad_token_id=0, eod_token_id=0,
                     rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "alpha": 1000.0, "factor": 1.0})),
    # LFM2: gated short convolutions (layers 0 and 2) and attention with per-head QK-norm (1 and 3); the FFN's
    # width 2/3 of intermediate_size rounded up to 32
    "lfm2": ("Lfm2Config", "Lfm2ForCausalLM",
             dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, full_attn_idxs=[1, 3], block_multiple_of=32,
                  intermediate_size=144)),
    # Hunyuan's mixture: 4 experts, top 2 renormalised, and an ungated shared MLP on every layer
    "hunyuan_moe": ("HunYuanMoEV1Config", "HunYuanMoEV1ForCausalLM",
                    dict(COMMON, num_key_value_heads=2, head_dim=16, pad_token_id=0, eod_token_id=0, sep_token_id=0,
                         num_experts=4, moe_topk=2)),
    # Granite MoE with its shared MLP beside the experts, of a width no multiple of theirs (48 to 32)
    "granitemoeshared": ("GraniteMoeSharedConfig", "GraniteMoeSharedForCausalLM",
                         dict(COMMON, intermediate_size=32, num_key_value_heads=2, num_local_experts=4,
                              num_experts_per_tok=2, shared_intermediate_size=48, embedding_multiplier=2.0,
                              residual_multiplier=0.5, logits_scaling=4.0, attention_multiplier=0.3)),
    # MiniMax-M2: QK-norm over whole projections, RoPE on 8 of 16 dims (rotary_dim, as released), 4 experts, top 2
    # by sigmoid score plus an expert bias, renormalised
    "minimax_m2": ("MiniMaxM2Config", "MiniMaxM2ForCausalLM",
                   dict(COMMON, intermediate_size=32, num_key_value_heads=2, head_dim=16, rotary_dim=8,
                        num_local_experts=4, num_experts_per_tok=2)),
    # dots.llm1: Qwen3's attention, layer 2 sliding over 8 keys; layer 0 dense, then 8 experts in 4 groups (2
    # chosen), top 2 by sigmoid score plus bias, renormalised and scaled, one shared expert
    "dots1": ("Dots1Config", "Dots1ForCausalLM",
              dict(COMMON, num_hidden_layers=3, num_key_value_heads=2, head_dim=16, moe_intermediate_size=32,
                   n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2, n_shared_experts=1,
                   first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5, sliding_window=8,
                   layer_types=["full_attention", "full_attention", "sliding_attention"])),
    # LFM2-MoE: convolutions on layers 0 and 2, attention on 1 and 3; layer 0 dense (its width as given), then 4
    # experts, top 2 by sigmoid score plus an expert bias, renormalised and times 1.5
    "lfm2_moe": ("Lfm2MoeConfig", "Lfm2MoeForCausalLM",
                 dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, moe_intermediate_size=32, num_experts=4,
                      num_experts_per_tok=2, num_dense_layers=1, routed_scaling_factor=1.5,
                      layer_types=["conv", "full_attention", "conv", "full_attention"])),
    # EXAONE MoE: EXAONE 4.0's attention (layers 0-2 slide over 8 keys with RoPE, layer 3 full without positions)
    # in pre-norm blocks; layer 0 dense, then 8 experts in 4 groups (2 chosen) by sigmoid score plus bias, one shared
    "exaone_moe": ("ExaoneMoeConfig", "ExaoneMoeForCausalLM",
                   dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                        moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2,
                        eos_token_id=None)),
    # Ministral 8B: sliding (over 8 keys) and full layers interleaved
    "ministral": ("MinistralConfig", "MinistralForCausalLM",
                  dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                       layer_types=["sliding_attention", "full_attention"] * 2)),
    # Cohere2-MoE: Command R7B's attention (layers 1-3 slide over 8 keys with RoPE, layer 0 full without), layer
    # 0 a dense SwiGLU of 96, then 4 experts of 32 (top 2 by softmax) and a shared one, averaged; LayerNorm, or
    # RMSNorm with sigmoid routing
    "cohere2_moe": ("Cohere2MoeConfig", "Cohere2MoeForCausalLM",
                    dict(COMMON, num_key_value_heads=2, head_dim=16, intermediate_size=32,
                         prefix_dense_intermediate_size=96, num_experts=4, num_experts_per_tok=2, num_shared_experts=1,
                         sliding_window=8, first_k_dense_replace=1, pad_token_id=0)),
    "cohere2_moe-sigmoid": ("Cohere2MoeConfig", "Cohere2MoeForCausalLM",
                            dict(COMMON, num_key_value_heads=2, head_dim=16, intermediate_size=32,
                                 prefix_dense_intermediate_size=96, num_experts=4, num_experts_per_tok=2,
                                 num_shared_experts=1, sliding_window=8, first_k_dense_replace=1, pad_token_id=0,
                                 rms_norm_eps=1e-6, expert_selection_fn="sigmoid", norm_topk_prob=False,
                                 shared_expert_combination_strategy="sum")),
    # Apertus: per-head QK-norm, an ungated MLP with xIELU (its learned scalars perturbed with the other 1-D ones)
    "apertus": ("ApertusConfig", "ApertusForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=16)),
    # Phi-3.5-MoE: LayerNorms with biases, q k v o biases, a head bias, 4 experts by SparseMixer (its eps 0.5, so
    # the masks bind on these logits), LongRoPE with its mscale (the long factors as the short: transformers' phimoe
    # never applies long ones, interop/phimoe.py)
    "phimoe": ("PhimoeConfig", "PhimoeForCausalLM",
               dict(COMMON, intermediate_size=32, num_key_value_heads=2, num_local_experts=4, attention_bias=True,
                    lm_head_bias=True, router_jitter_noise=0.5, max_position_embeddings=96,
                    rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "short_mscale": 1.2,
                                     "long_mscale": 1.2, "original_max_position_embeddings": 24,
                                     "short_factor": [1.0 + 0.1 * i for i in range(8)],
                                     "long_factor": [1.0 + 0.1 * i for i in range(8)]})),
    "olmoe-renormalised": ("OlmoeConfig", "OlmoeForCausalLM",
                           dict(COMMON, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(COMMON, num_key_value_heads=2, pad_token_id=0)),
    # LongRoPE: 24 positions pretrained, stretched to 96: the 13-20-token prompts take the short factors, the
    # decoding steps past position 24 the long ones (over keys cached with the short ones, as in transformers)
    "phi3-longrope": ("Phi3Config", "Phi3ForCausalLM",
                      dict(COMMON, pad_token_id=0, max_position_embeddings=96, original_max_position_embeddings=24,
                           rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                            "short_factor": [1.0 + 0.1 * i for i in range(8)],
                                            "long_factor": [1.0 + 0.5 * i for i in range(8)]})),
    # NoPE on layers 1 and 3 of 4 (every 2nd), RoPE elsewhere
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM",
                dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, no_rope_layer_interval=2, pad_token_id=0)),
    # NoPE on layer 3 of 4, which also slides over 8 keys (transformers slides only the NoPE layers)
    "smollm3-sliding": ("SmolLM3Config", "SmolLM3ForCausalLM",
                        dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, use_sliding_window=True,
                             sliding_window=8, pad_token_id=0)),
}


def build_hf(case, tmp_path, cases=None):
    """A seeded tiny transformers model of `case` in `cases` (default: this file's CASES), saved under tmp_path/hf."""
    conf_cls, model_cls, kwargs = (cases or CASES)[case]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval()
    with torch.no_grad():  # random non-trivial norm gains and biases, so a swapped one cannot hide
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    routed_apart(hf)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    return hf


def check_case(case, tmp_path, cases=None):
    """The family's parity: logits, greedy generation and the to_hf round trip against transformers
    (assert_matches_transformers), and cached decoding equal to the whole forward; -> llmarch's model."""
    cases = cases or CASES
    hf = build_hf(case, tmp_path, cases)
    ours = from_hf(tmp_path / "hf")
    ids, mask, generated = assert_matches_transformers(hf, ours, cases[case][1], tmp_path)
    # cached decoding equals the whole forward, recomputed without a cache (not for LongRoPE, whose frequencies
    # follow the longest sequence of each call, so a cache holds keys rotated with the short set)
    if ours.config.rope_scaling != "longrope":
        full_mask = torch.cat([mask, torch.ones(mask.shape[0], 32, dtype=mask.dtype)], 1)
        with torch.no_grad():
            again = ours(generated, attention_mask=full_mask).logits
        assert torch.equal(again[:, ids.shape[1] - 1:-1].argmax(-1), generated[:, ids.shape[1]:])
    return ours


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    check_case(case, tmp_path)


def test_glm4_moe_skips_its_multi_token_prediction_layer_and_nothing_past_it(tmp_path):
    """GLM-4.5 checkpoints hold an MTP layer after the last (model.layers.{n_layers}), which transformers does not
    load: read past it, while a tensor of any other layer index is still an error."""
    from safetensors.torch import load_file, save_file

    from llmarch.errors import LlmarchError

    hf = build_hf("glm4_moe", tmp_path)
    file = next((tmp_path / "hf").glob("*.safetensors"))
    state = load_file(file)
    save_file({**state, "model.layers.3.eh_proj.weight": torch.zeros(4, 8)}, file, metadata={"format": "pt"})
    ids = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        assert torch.allclose(from_hf(tmp_path / "hf")(ids).logits, hf(ids).logits, atol=1e-4)
    save_file({**state, "model.layers.4.eh_proj.weight": torch.zeros(4, 8)}, file, metadata={"format": "pt"})
    with pytest.raises(LlmarchError, match="model.layers.4.eh_proj.weight"):
        from_hf(tmp_path / "hf")


def test_qwen3_5_vision_language_checkpoint_reads_its_text_model(tmp_path):
    """A Qwen3_5ForConditionalGeneration checkpoint (as Qwen3.5 is published): config text_config, the text model
    under model.language_model., its vision tower read beside it (tests/parity/test_qwen3_5_vision.py runs it); text
    logits equal the checkpoint's own."""
    torch.manual_seed(0)
    rope = dict(rope_type="default", rope_theta=1e4, mrope_section=[1, 1, 0])  # 2 rotated pairs of 16-wide heads
    conf = transformers.Qwen3_5Config(text_config=dict(COMMON, **QWEN3_5, rope_parameters=rope), vision_config=dict(
        depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=4))
    hf = transformers.Qwen3_5ForConditionalGeneration(conf).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.hf_model_type == "qwen3_5" and ours.config.vision["n_layers"] == 1
    ids = torch.randint(0, 128, (2, 11))
    with torch.no_grad():
        assert (ours(ids).logits - hf(input_ids=ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("tied", [True, False])
def test_mistral3_vision_language_checkpoint_reads_its_text_model(tmp_path, tied):
    """Mistral Small 3.1/3.2 (Mistral3ForConditionalGeneration): a Mistral text model under the wrapper, its
    head tied or not as the checkpoint stores it (the wrapper's and the text config's flags may disagree)."""
    torch.manual_seed(0)
    conf = transformers.Mistral3Config(
        text_config=dict(COMMON, num_key_value_heads=2, head_dim=16, sliding_window=None),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           head_dim=16, patch_size=4, image_size=16), tie_word_embeddings=tied)
    hf = transformers.Mistral3ForConditionalGeneration(conf).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.hf_model_type == "mistral3" and ours.config.tie_embeddings == tied
    ids = torch.randint(0, 128, (2, 11))
    with torch.no_grad():
        assert (ours(ids).logits - hf(input_ids=ids).logits).abs().max() <= 1e-4


def test_opt_as_published_without_the_model_prefix(tmp_path):
    """facebook/opt-* checkpoints are OPTModel's: `decoder.*` without `model.`, no lm_head (tied)."""
    from safetensors.torch import load_file, save_file

    hf = build_hf("opt", tmp_path)
    file = next((tmp_path / "hf").glob("*.safetensors"))
    state = {k.removeprefix("model."): v for k, v in load_file(file).items() if k != "lm_head.weight"}
    assert all(k.startswith("decoder.") for k in state)
    save_file(state, file, metadata={"format": "pt"})
    ids = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        assert (from_hf(tmp_path / "hf")(ids).logits - hf(ids).logits).abs().max() <= 1e-4
