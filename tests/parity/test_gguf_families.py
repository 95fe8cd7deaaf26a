"""GGUF in and out for more of llmarch's families, as convert_hf_to_gguf.py writes them: Mixtral (GGUF "llama" with
stacked experts ffn_{gate,up,down}_exps, the router ffn_gate_inp, expert_count and expert_used_count), Qwen3-MoE
(qwen3moe, with expert_feed_forward_length), Mistral (written as llama; it reads back as llama), Gemma (1), OLMo 2,
SmolLM3, GPT-NeoX, BLOOM and Falcon (qkv rows regrouped), GPT-2 (Conv1D weights stored transposed, the tied head
copied to output.weight). Each tiny random model (from a `transformers` config, through from_hf) is written by
`to_gguf` with llmarch's byte tokenizer and read back by from_gguf to equal logits (F32, max |dlogit| <= 1e-4);
llama.cpp (llama-cpp-python, where installed) decodes the file greedily to llmarch's tokens with llmarch's logits."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1,
             eos_token_id=2)
MOE = dict(num_experts_per_tok=2, router_jitter_noise=0.0)
LLAMA4 = dict(SMALL, num_hidden_layers=4, intermediate_size=32, intermediate_size_mlp=96, head_dim=16,
              num_local_experts=4, attention_chunk_size=8192, floor_scale=8192, attn_scale=0.1, pad_token_id=0)
S4, F4 = "sliding_attention", "full_attention"
# Gemma 4: sliding layers of 16-wide heads, 2 KV heads, over 8 keys; full layers of 32-wide heads under p-RoPE
GEMMA4 = dict(SMALL, num_hidden_layers=4, head_dim=16, global_head_dim=32, sliding_window=8,
              layer_types=[S4, F4, S4, F4], hidden_size_per_layer_input=0, final_logit_softcapping=30.0,
              tie_word_embeddings=True, pad_token_id=0)
CASES = {  # name: (transformers config class, its fields, the GGUF architecture)
    "mixtral": ("MixtralConfig", dict(SMALL, num_local_experts=4, **MOE), "llama"),
    "qwen3_moe": ("Qwen3MoeConfig", dict(SMALL, head_dim=16, num_experts=4, moe_intermediate_size=48,
                                         norm_topk_prob=True, **MOE), "qwen3moe"),
    "mistral": ("MistralConfig", dict(SMALL, sliding_window=None), "llama"),
    "gpt2": ("GPT2Config", dict(vocab_size=272, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=1,
                                    eos_token_id=2), "gpt2"),
    # StarCoder: GPT-2's blocks as nn.Linear, multi-query attention, learned positions
    "gpt_bigcode": ("GPTBigCodeConfig", dict(vocab_size=272, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                             bos_token_id=1, eos_token_id=2), "starcoder"),
    # partial rotary (a quarter of each head), the parallel residual, biases
    "gpt_neox": ("GPTNeoXConfig", dict(SMALL, rotary_pct=0.25), "gptneox"),
    # ALiBi, the embedding LayerNorm, the tied head
    "bloom": ("BloomConfig", dict(vocab_size=272, hidden_size=64, n_layer=2, n_head=4, bos_token_id=1,
                                  eos_token_id=2), "bloom"),
    # Falcon-40B's layout: 2 kv-head groups of 2 query heads, two norms per parallel block
    "falcon": ("FalconConfig", dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_kv_heads=2, new_decoder_architecture=True, bos_token_id=1, eos_token_id=2),
               "falcon"),
    "gemma": ("GemmaConfig", dict(SMALL, head_dim=16, tie_word_embeddings=True), "gemma"),
    "olmo2": ("Olmo2Config", dict(SMALL), "olmo2"),
    # OLMo 3 as llama.cpp's olmo2 with a window: layers 0-2 slide over 8 keys, layer 3 full, one RoPE
    "olmo3": ("Olmo3Config", dict(SMALL, num_hidden_layers=4, sliding_window=8,
                                  rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                                                   "sliding_attention": {"rope_type": "default", "rope_theta": 5e5}}),
              "olmo2"),
    # no norm tensors at all; q, k, v clamped (attention.clamp_kqv), which binds at 0.1 here
    "olmo": ("OlmoConfig", dict(SMALL, clip_qkv=0.1), "olmo"),
    # half of each head rotated in adjacent pairs (stored as Hugging Face has them), sandwich norms, fused gate_up
    "glm4": ("Glm4Config", dict(SMALL, head_dim=16, pad_token_id=0), "glm4"),
    # the parallel block under one bias-free LayerNorm, adjacent-pair RoPE, the logit scale, tied
    "cohere": ("CohereConfig", dict(SMALL, tie_word_embeddings=True, pad_token_id=0), "command-r"),
    # layers 0-2 slide over 8 keys with RoPE, layer 3 sees all without positions
    "cohere2": ("Cohere2Config", dict(SMALL, num_hidden_layers=4, tie_word_embeddings=True, sliding_window=8,
                                      pad_token_id=0), "cohere2"),
    # LLaMA with an ungated squared-ReLU MLP
    "arcee": ("ArceeConfig", dict(SMALL, pad_token_id=0), "arcee"),
    # q k v biases only
    "seed_oss": ("SeedOssConfig", dict(SMALL, head_dim=16, pad_token_id=0), "seed_oss"),
    # LayerNorm1P (stored as 1 + g), half of each head rotated, squared ReLU
    "nemotron": ("NemotronConfig", dict(SMALL, head_dim=16, pad_token_id=0), "nemotron"),
    # OLMo 2's norms with per-head QK-norm, every layer full with RoPE (EXAONE-4.0-1.2B's layout)
    "exaone4": ("Exaone4Config", dict(SMALL, sliding_window=None, layer_types=["full_attention"] * 2), "exaone4"),
    # per-head q/k norms after RoPE
    "hunyuan_v1_dense": ("HunYuanDenseV1Config", dict(SMALL, head_dim=16, pad_token_id=0, eod_token_id=0),
                         "hunyuan-dense"),
    # GLM-4.5: q k v biases, per-head q/k norms, half of each head rotated, layer 0 dense then experts with a
    # sigmoid router, expert bias, groups, renormalised and scaled weights, a shared expert
    "glm4_moe": ("Glm4MoeConfig", dict(SMALL, num_hidden_layers=3, head_dim=16, attention_bias=True, use_qk_norm=True,
                                       n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                                       n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2,
                                       routed_scaling_factor=2.5, pad_token_id=0), "glm4moe"),
    # gated short convolutions (layers 0, 2) beside attention with per-head q/k norms; the final norm as
    # token_embd_norm
    # convolutions and attention; layer 0 dense, then 4 experts by sigmoid score plus an expert bias
    "lfm2_moe": ("Lfm2MoeConfig", dict(SMALL, num_hidden_layers=4, moe_intermediate_size=32, num_experts=4,
                                       num_dense_layers=1, tie_word_embeddings=True,
                                       layer_types=["conv", "full_attention", "conv", "full_attention"], **MOE),
                 "lfm2moe"),
    "lfm2": ("Lfm2Config", dict(SMALL, num_hidden_layers=4, full_attn_idxs=[1, 3], block_multiple_of=32,
                                intermediate_size=144, tie_word_embeddings=True), "lfm2"),
    # experts (top 2, renormalised) and the ungated shared MLP on every layer
    "hunyuan_v1_moe": ("HunYuanMoEV1Config", dict(SMALL, head_dim=16, pad_token_id=0, eod_token_id=0, sep_token_id=0,
                                                  num_experts=4, moe_topk=2), "hunyuan-moe"),
    # adjacent-pair RoPE over whole heads
    "ernie4_5": ("Ernie4_5Config", dict(SMALL, head_dim=16, pad_token_id=0), "ernie4_5"),
    # the projections' QK-norm, experts not renormalised; as many key heads as query heads, as llama.cpp needs
    # QK-norm over whole projections, half of each head rotated, sigmoid routing with an expert bias
    "minimax_m2": ("MiniMaxM2Config", dict(SMALL, head_dim=16, rotary_dim=8, num_local_experts=4, **MOE),
                   "minimax-m2"),
    # Qwen3's attention with DeepSeek-V3's mixture: layer 0 dense, 8 experts in 4 groups (2 chosen), one shared
    "dots1": ("Dots1Config", dict(SMALL, head_dim=16, num_key_value_heads=4, n_routed_experts=8,
                                  moe_intermediate_size=32, n_group=4, topk_group=2, n_shared_experts=1,
                                  first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
                                  sliding_window=None, **MOE), "dots1"),
    "olmoe": ("OlmoeConfig", dict(SMALL, num_key_value_heads=4, num_experts=4, num_experts_per_tok=2), "olmoe"),
    # layer 3 without RoPE (llama.cpp's NoPE step of 4)
    "smollm3": ("SmolLM3Config", dict(SMALL, num_hidden_layers=4, no_rope_layer_interval=4, pad_token_id=0), "smollm3"),
    # A stored as -exp(A_log), the depthwise conv weight squeezed; no attention keys (head count 0)
    "mamba": ("MambaConfig", dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, state_size=8, expand=2,
                                  conv_kernel=4, time_step_rank=8, bos_token_id=1, eos_token_id=2), "mamba"),
    # attention in layers 1 and 3 (per-layer KV-head counts, 0 for Mamba), experts in layers 1 and 3, dense SwiGLU
    # in 0 and 2, Mamba with its dt/B/C norms
    "jamba": ("JambaConfig", dict(SMALL, num_hidden_layers=4, attn_layer_period=2, attn_layer_offset=1,
                                  expert_layer_period=2, expert_layer_offset=1, num_experts=4, num_experts_per_tok=2,
                                  mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8,
                                  use_mamba_kernels=False), "jamba"),
    # A and D as (heads, 1), the gated norm's weight per group of B and C, dt_bias as ssm_dt.bias
    # Scout's shape: experts (top 1 by sigmoid score, scaling their input) and a shared expert on every layer,
    # chunked attention with the QK-norm on layers 0-2, layer 3 NoPE with temperature tuning; llama.cpp's fixed
    # chunk of 8192 positions and temperature floor of 8192, which bind on no prompt here
    "llama4": ("Llama4TextConfig", LLAMA4, "llama4"),
    # experts on layers 1 and 3 (Maverick's interleaving), dense SwiGLU on 0 and 2; top 2
    "llama4_interleaved": ("Llama4TextConfig", dict(LLAMA4, interleave_moe_layer_step=2, num_experts_per_tok=2),
                           "llama4"),
    # Maverick's 128 experts, for which llama.cpp has no QK-norm (and no key says so): written and read without it
    "llama4_maverick": ("Llama4TextConfig", dict(LLAMA4, interleave_moe_layer_step=2, num_local_experts=128,
                                                  use_qk_norm=False), "llama4"),
    # p-RoPE on the full layers (a quarter of the frequencies turn), their own head width, value norm, layer
    # scalars, sandwich norms, the final soft-cap
    "gemma4": ("Gemma4TextConfig", GEMMA4, "gemma4"),
    # p-RoPE over half of each full head with a factor (rope_freqs), the sliding layers' own base, an untied head
    "gemma4_rope": ("Gemma4TextConfig", dict(GEMMA4, tie_word_embeddings=False, final_logit_softcapping=3.0,
                                              rope_parameters={S4: {"rope_type": "default", "rope_theta": 100.0},
                                                               F4: {"rope_type": "proportional", "rope_theta": 1e4,
                                                                    "partial_rotary_factor": 0.5, "factor": 2.0}}),
                    "gemma4"),
    # the full layers' keys are their values (no attn_v), one KV head of their own (head_count_kv per layer)
    "gemma4_k_eq_v": ("Gemma4TextConfig", dict(GEMMA4, attention_k_eq_v=True, num_global_key_value_heads=1),
                      "gemma4"),
    # the last three layers (sliding, sliding, full) read layers 1 and 2's keys and values (attention.shared_kv_layers)
    # and their FFNs are double-wide (feed_forward_length per layer)
    "gemma4_kv_shared": ("Gemma4TextConfig", dict(GEMMA4, num_hidden_layers=6, layer_types=[S4, S4, F4, S4, S4, F4],
                                                  num_kv_shared_layers=3, use_double_wide_mlp=True,
                                                  attention_k_eq_v=True, num_global_key_value_heads=1), "gemma4"),
    # per-layer inputs of 8 dims per layer (E2B/E4B's, a table as long as the vocabulary) beside KV sharing
    "gemma4_ple": ("Gemma4TextConfig", dict(GEMMA4, num_hidden_layers=6, layer_types=[S4, S4, F4, S4, S4, F4],
                                            num_kv_shared_layers=3, hidden_size_per_layer_input=8,
                                            vocab_size_per_layer_input=272), "gemma4"),
    # 26B-A4B's block: every layer's 4 experts (top 2 of a softmax over the scaled, normed residual, renormalised,
    # times per-expert scales) beside its MLP, each with its norms; the full layers' keys their values
    "gemma4_moe": ("Gemma4TextConfig", dict(GEMMA4, attention_k_eq_v=True, num_global_key_value_heads=1,
                                            enable_moe_block=True, num_experts=4, top_k_experts=2,
                                            moe_intermediate_size=24), "gemma4"),
    # no final soft-cap, written as final_logit_softcapping 0 (llama.cpp caps at 30 without the key); logits of
    # ~9 (embeddings x10, see tiny); plain RoPE on the full layers (rope_freqs all ones)
    "gemma4_uncapped": ("Gemma4TextConfig", dict(GEMMA4, final_logit_softcapping=None,
                                                  rope_parameters={S4: {"rope_type": "default", "rope_theta": 1e4},
                                                                   F4: {"rope_type": "default", "rope_theta": 1e5}}),
                        "gemma4"),
    "mamba2": ("Mamba2Config", dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, state_size=16, expand=2,
                                    num_heads=4, head_dim=32, n_groups=2, conv_kernel=4, chunk_size=8,
                                    bos_token_id=1, eos_token_id=2, tie_word_embeddings=False), "mamba2"),
}


def tiny(case, tmp_path, **changes):
    """The case's random model as llmarch reads it from a Hugging Face directory (norm gains perturbed)."""
    conf_cls, kwargs, _ = CASES[case]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(**{**kwargs, **changes})
    hf = transformers.AutoModelForCausalLM.from_config(conf)
    if case.startswith("llama4"):  # its router as routed_apart makes the others' decisive
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if name.endswith("feed_forward.router.weight"):
                    p.mul_(20.0)
    if case.startswith("gemma4"):  # its layer scalars (buffers, 1 at init) moved, so a dropped one shows
        with torch.no_grad():
            for name, b in hf.named_buffers():
                if name.endswith("layer_scalar"):
                    b.copy_(torch.rand(1) + 0.5)
            for name, p in hf.named_parameters():  # the router decisive and the experts apart, as in test_gemma4
                if name.endswith("router.proj.weight"):
                    p.mul_(20.0)
                elif ".experts." in name:
                    p.mul_(10.0)
                elif case == "gemma4_uncapped" and name.endswith("embed_tokens.weight"):
                    p.mul_(10.0)
    return perturbed_from_hf(routed_apart(hf), tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == CASES[case][2]
    # llama.cpp's gemma4 graph rounds the GeGLU's gate to F16 for ggml's GELU table (measured: 0.0013 of logits of
    # 0.7 apart, 0.0002 once llmarch's gate is rounded so too); the other graphs' GELU keeps F32. The uncapped
    # case's logits of ~9 are 0.02 apart with the F16 KV cache (0.005 with F32); a cap of 30 would move them 0.2
    apart = 0.04 if case == "gemma4_uncapped" else 5e-3 if case.startswith("gemma4") else 1e-3
    back = gguf_reads_back(path, model, exact=False, apart=apart)
    want = {"mistral": "llama"}.get(case, case)
    want = "llama4_text" if case.startswith("llama4") else "gemma4_text" if case.startswith("gemma4") else want
    assert back.config.hf_model_type == want


@pytest.mark.parametrize("case,changes,problem", [
    ("qwen3_moe", dict(norm_topk_prob=False), "router_renormalize=False"),  # llama.cpp's qwen3moe renormalises
    ("smollm3", dict(no_rope_layer_interval=2), "layer_types="),  # llama.cpp's NoPE step is 4
    ("mistral", dict(sliding_window=16), "sliding_window=16"),  # llama.cpp's llama has no window
    ("falcon", dict(bias=True), "no biases"),  # llama.cpp refuses a falcon file with them
    ("mamba", dict(use_bias=True), "use_bias"),  # llama.cpp's mamba graph has no projection biases
    ("jamba", dict(mamba_proj_bias=True), "mamba_proj_bias"),
    ("ernie4_5", dict(use_bias=True), "use_bias"),  # llama.cpp refuses a file with them
    ("gpt_bigcode", dict(multi_query=False), "multi-query"),  # llama.cpp splits c_attn as all q, all k, all v
    # OLMo 3's YaRN on its full layers only: how llama.cpp's olmo2 would apply it is unverified
    ("olmo3", dict(rope_parameters={"full_attention": {"rope_type": "yarn", "rope_theta": 5e5, "factor": 2.0,
                                                       "original_max_position_embeddings": 64},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 5e5}}),
     "one plain RoPE on every layer"),
    # llama.cpp decoded a windowed EXAONE 4.0 0.25 logits apart
    ("exaone4", dict(num_hidden_layers=4, sliding_window=8, layer_types=None), "without a sliding window"),
    ("dots1", dict(num_key_value_heads=2), "key/value heads"),  # llama.cpp's dots1 sizes k and v for all heads
    ("dots1", dict(sliding_window=8, layer_types=["full_attention", "sliding_attention"]), "no sliding layers"),
    ("lfm2_moe", dict(routed_scaling_factor=1.5), "routed_scaling_factor 1.5"),  # llama.cpp's lfm2moe scales not
    ("lfm2_moe", dict(norm_topk_prob=False), "norm_topk_prob False"),
    ("olmoe", dict(clip_qkv=8.0), "clip_qkv"),  # llama.cpp's olmoe graph clamps nothing
    ("olmoe", dict(norm_topk_prob=True), "norm_topk_prob"),  # nor renormalises
    ("olmoe", dict(num_key_value_heads=2), "key/value heads"),  # and sizes k's norm for all heads
    # llama.cpp's llama4 fixes the chunk at 8192 positions, NoPE on every 4th layer, the temperature tuning's
    # scale 0.1 and floor 8192 (it reads no temperature keys), the QK-norm on unless 128 experts (measured: 0.27
    # logits apart without it), and experts on the layers (i + 1) % step == 0
    ("llama4", dict(attention_chunk_size=16), "attention_chunk_size 16"),
    ("llama4", dict(no_rope_layer_interval=2), "no_rope_layers"),
    ("llama4", dict(attn_temperature_tuning=False), "attn_temperature_tuning False"),
    ("llama4", dict(floor_scale=4), "floor_scale 4"),
    ("llama4", dict(attn_scale=0.5), "attn_scale 0.5"),
    ("llama4", dict(use_qk_norm=False), "use_qk_norm False"),
    ("llama4", dict(interleave_moe_layer_step=2, moe_layers=[0, 2]), "moe_layers"),
    # Gemma 4's sliding layers under p-RoPE: llama.cpp's gemma4 turns them by plain RoPE (rope_freqs is the full
    # layers')
    ("gemma4", dict(rope_parameters={S4: {"rope_type": "proportional", "partial_rotary_factor": 0.5,
                                          "rope_theta": 1e4},
                                     F4: {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                          "rope_theta": 1e6}}),
     "plain RoPE on the sliding layers"),
    # llama.cpp's KV-shared layers read layer n - shared - 1 (full) or - 2 (sliding), and abort where that one is of
    # the other kind (here layer 3, sliding, for the full layers 4 and 5)
    ("gemma4", dict(num_hidden_layers=6, layer_types=[S4, F4, S4, S4, F4, F4], num_kv_shared_layers=2),
     "num_kv_shared_layers 2"),
    ("gemma4", dict(hidden_size_per_layer_input=8, vocab_size_per_layer_input=300), "vocab_size_per_layer_input 300"),
    ("gemma4", dict(hidden_activation="silu"), "ffn='swiglu'"),  # llama.cpp's gemma4 GeGLU is tanh-GELU's
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(case, changes, problem, tmp_path):
    from llmarch.errors import LlmarchError

    model = tiny(case, tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("dtype,kernel", [("q8_0", "Int8Linear"), ("q4_0", "Int4Linear")])
def test_quantized_moe_file_keeps_its_experts_on_the_kernels(tmp_path, dtype, kernel):
    """A Q8_0 or Q4_0 Mixtral file: from_gguf(kernels=True), what `generate` loads, puts each expert's stacked
    matrices on the int8/int4 kernels (Q4_0: the file's own codes) and keeps the router F32, as llama.cpp's
    quantizer leaves it; its logits are the dequantized model's within the kernels' bf16 rounding (and Q8_0's
    re-quantization per channel)."""
    from llmarch.quant.experts import QuantExperts

    path = tmp_path / f"{dtype}.gguf"
    to_gguf(tiny("mixtral", tmp_path), path, dtype, ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.ffn_gate_exps.weight"] == dtype.upper() and types["blk.0.ffn_gate_inp.weight"] == "F32"
    model = llmarch.from_gguf(path, kernels=True)
    ref = llmarch.from_gguf(path)
    experts = [m for m in model.modules() if isinstance(m, QuantExperts)]
    assert len(experts) == 2 and model.quantization.method == dtype[:2].replace("q", "int")
    assert all(type(layer).__name__ == kernel for e in experts for layer in (*e.gate_up, *e.down))
    assert model.blocks[0].mlp.router.weight.dtype == torch.float32
    if kernel == "Int4Linear":  # the file's Q4_0 codes: expert 1's down projection of block 0, up to the scales'
        want = ref.blocks[0].mlp.experts.down[1]  # rounding from fp16 to the kernel's bf16 (at most 2^-8 of 8 |d|)
        assert (experts[0].down[1].dequantized().float() - want).abs().max() < 4e-3 * want.abs().max()
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        want, got = ref(ids).logits, model(ids).logits
    assert 0 < (want - got).abs().max() < 0.05 * want.abs().max()

@pytest.mark.parametrize("case", ["mamba", "mamba2", "jamba"])
def test_quantized_mamba_file_keeps_its_ssm_tensors_f32_for_llama_cpp(case, tmp_path):
    """A Q8_0 Mamba, Mamba-2 or Jamba file: A, D, the conv weights and the gated norm stay F32 (llama.cpp's SSM kernels
    assert F32 and abort the process on F16), the projections are Q8_0; llmarch reads it back close to the
    model, and llama.cpp's greedy tokens on the same file are llmarch's top ones but at near-ties (measured:
    logits within 0.044 on a scale of 5.9, Mamba; 0.079 on 2.8, Mamba-2; 0.005 on 0.58, Jamba)."""
    model = tiny(case, tmp_path)
    path = tmp_path / "q8.gguf"
    to_gguf(model, path, "q8_0", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.ssm_a"] == types["blk.0.ssm_conv1d.weight"] == types["blk.0.ssm_d"] == "F32"
    assert case != "mamba2" or types["blk.0.ssm_norm.weight"] == "F32"
    assert types["blk.0.ssm_in.weight"] == "Q8_0"
    back = llmarch.from_gguf(path)
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        want, got = model(ids).logits, back(ids).logits
    assert (want - got).abs().max() < 0.05 * want.abs().max()
    llama_cpp_test = pytest.importorskip("test_llama_cpp", reason="llama-cpp-python is not installed")
    prompt = ids[0, :8].tolist()
    seq, theirs = llama_cpp_test.llama_cpp_greedy(path, prompt, 8)
    with torch.no_grad():
        logits = back(torch.tensor([seq[:-1]])).logits[0].numpy()
    apart = np.abs(theirs - logits).max()
    assert apart <= 0.1
    # each token llama.cpp chose is llmarch's top token on the same prefix, unless llmarch's two are nearer than
    # the two libraries' logits are apart (a near-tie, which 8-bit activations in llama.cpp may flip)
    for pos in range(len(prompt) - 1, len(seq) - 1):
        top = int(logits[pos].argmax())
        assert top == seq[pos + 1] or logits[pos, top] - logits[pos, seq[pos + 1]] <= 2 * apart


@pytest.mark.parametrize("case", ["mamba", "jamba"])
def test_quantized_mamba_file_decodes_on_the_kernels(case, tmp_path):
    """A Q8_0 Mamba or Jamba file on the kernels (what `generate` loads): its float SSM tensors and short-rowed
    dt projection do not make it a mix; the projections are int8 layers, A and the conv stay float, and the
    logits are the dequantized model's within the kernels' rounding."""
    from llmarch.quant import Int8Linear

    path = tmp_path / "q8.gguf"
    to_gguf(tiny(case, tmp_path), path, "q8_0", ByteTokenizer())
    model, ref = llmarch.from_gguf(path, kernels=True), llmarch.from_gguf(path)
    assert model.quantization.method == "int8"
    mixer = model.blocks[0].mixer
    assert isinstance(mixer.in_proj, Int8Linear) and isinstance(mixer.dt_proj, Int8Linear)
    assert mixer.A_log.dtype == torch.float32
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        want, got = ref(ids).logits, model(ids).logits
    assert 0 < (want - got).abs().max() < 0.05 * want.abs().max()


@pytest.mark.parametrize("preset", ["mamba-tiny", "mamba2-tiny"])
def test_mamba_presets_round_trip_through_gguf_with_their_context(preset, tmp_path):
    """llmarch's own Mamba models (a preset's context of 256, which Hugging Face's Mamba has no field for) write
    and read back: the context goes out as the file's context_length, not llama.cpp's default 2^20."""
    model = llmarch.build(preset).eval()
    path = tmp_path / "m.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    back = llmarch.from_gguf(path)
    assert back.config.context_length == model.config.context_length == 256
    ids = torch.randint(0, model.config.vocab_size, (1, 16))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4


def test_glm4moe_file_with_nextn_layers_reads_without_them(tmp_path):
    """GLM-4.5's GGUF files count their multi-token-prediction (NextN) layers in block_count and hold their tensors
    as blk.{n}.*: read without them, to the same logits."""
    model = tiny("glm4_moe", tmp_path)
    to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(tmp_path / "x.gguf"))
    from llmarch.interop.gguf_writer import _writer_class  # it writes the byte vocabulary's empty merges

    w = _writer_class()(str(tmp_path / "nextn.gguf"), "glm4moe")
    for k, f in reader.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        vtype = f.types[0]
        value = f.contents() + 1 if k == "glm4moe.block_count" else f.contents()
        w.add_key_value(k, value, vtype, sub_type=f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    w.add_uint32("glm4moe.nextn_predict_layers", 1)
    for t in reader.tensors:
        w.add_tensor(t.name, np.array(t.data))
    w.add_tensor("blk.3.nextn.eh_proj.weight", np.zeros((64, 128), np.float32))
    w.add_tensor("blk.3.attn_norm.weight", np.ones(64, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    back = llmarch.from_gguf(tmp_path / "nextn.gguf")
    assert back.config.n_layers == 3
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4
