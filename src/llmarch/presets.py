"""Named presets as data: published shapes, plus small CPU presets. One exact-name lookup, and `resolve`:
a preset, a config file or a ModelConfig, with field overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ModelConfig
from .errors import LlmarchError

# GPT-2 (Radford et al. 2019): learned positions, pre-norm LayerNorm, tanh-GELU MLP, tied head.
_GPT2 = dict(vocab_size=50257, context_length=1024, ffn="gelu_tanh", positions="learned", norm="layernorm",
             tie_embeddings=True, bias=True, hf_model_type="gpt2")
# LLaMA (Touvron et al. 2023): RoPE, RMSNorm, SwiGLU, no biases, untied head.
_LLAMA = dict(positions="rope", norm="rmsnorm", ffn="swiglu", bias=False, norm_bias=False, tie_embeddings=False,
              hf_model_type="llama")

# BERT (Devlin et al. 2019): bidirectional, post-norm, learned positions + segment embeddings under a
# LayerNorm, exact-GELU MLP, MLM head with a transform and a tied, biased projection.
_BERT = dict(vocab_size=30522, context_length=512, ffn="gelu", positions="learned", norm="layernorm", norm_eps=1e-12,
             norm_placement="post", causal=False, type_vocab_size=2, embed_norm=True, head_transform=True,
             head_bias=True, tie_embeddings=True, hf_model_type="bert")

# T5 v1.0 (Raffel et al. 2020): pre-norm RMSNorm, relative position bias, unscaled attention, ReLU MLP, no
# biases, the head tied to the shared embedding with the decoder output scaled by d_model^-0.5.
_T5 = dict(vocab_size=32128, ffn="relu", norm="rmsnorm", norm_eps=1e-6, norm_bias=False, positions="t5_relative",
           bias=False, attn_scale=1.0, tie_embeddings=True, head_scale=True, context_length=512, pad_id=0,
           decoder_start_id=0, eos_id=1, init="t5", hf_model_type="t5")
# BART (Lewis et al. 2020): post-norm, learned positions offset by 2, LayerNorm over embeddings, GELU,
# shared embedding tied to the head, a logits bias.
_BART = dict(vocab_size=50265, ffn="gelu", norm="layernorm", norm_placement="post", positions="learned",
             position_offset=2, embed_norm=True, head_bias=True, tie_embeddings=True, context_length=1024, pad_id=1,
             decoder_start_id=2, eos_id=2, hf_model_type="bart")
# The original Transformer (Vaswani et al. 2017, base): post-norm, ReLU, sinusoidal positions, embeddings
# scaled by sqrt(d_model), one matrix for source and target embeddings and the pre-softmax projection (§3.4).
# The sinusoids are laid out as the reference code (tensor2tensor) and Marian do: sines, then cosines.
_TRANSFORMER = dict(ffn="relu", norm="layernorm", norm_eps=1e-6, norm_placement="post",
                    positions="sinusoidal_halves", embed_scale=True, tie_embeddings=True, context_length=512,
                    pad_id=0, decoder_start_id=0, eos_id=1, hf_model_type="marian")

# Mixtral (Jiang et al. 2024): Mistral's block with each FFN a mixture of 8 SwiGLU experts, top-2 with
# renormalised weights; the published 8x7B has no sliding window.
_MIXTRAL = dict(_LLAMA, n_experts=8, experts_per_token=2, router_aux_loss_weight=0.02, hf_model_type="mixtral")
# Switch Transformer (Fedus et al. 2022): T5 with every other FFN a top-1 mixture of ReLU experts, weighted
# by the router probability, capacity factor 1.25 in training (§2.2), jitter noise on the router (§2.4),
# load balancing with alpha = 1e-2 (§2.2), statistics per sequence as in the Mesh TensorFlow code.
_SWITCH = dict(_T5, n_experts=8, experts_per_token=1, router_renormalize=False, moe_period=2, moe_offset=1,
               capacity_factor=1.25, router_jitter=0.01, router_aux_loss_weight=0.01, router_z_loss_weight=0.001,
               router_aux_scope="sequence", hf_model_type="switch_transformers")
# PaLM (Chowdhery et al. 2022, §2): parallel block with one LayerNorm, multi-query attention, SwiGLU, RoPE,
# no biases in dense layers or norms, shared input/output embeddings, 256k SentencePiece vocabulary; §5:
# embeddings N(0, 1), other matrices fan-in, and the logits scaled by d^-0.5 as the head is the embedding.
_PALM = dict(block="parallel", shared_norm=True, n_kv_heads=1, ffn="swiglu", positions="rope", norm="layernorm",
             bias=False, norm_bias=False, tie_embeddings=True, head_scale=True, init="fan_in", vocab_size=256000,
             context_length=2048)
# Mamba (Gu & Dao 2023): residual blocks of RMSNorm + the selective SSM mixer and no FFN, no positions, tied
# head; state 16, inner width 2 x d_model, conv kernel 4, step-size rank ceil(d / 16) (§E.2).
_MAMBA = dict(mixer="mamba", ffn="none", norm="rmsnorm", norm_eps=1e-5, positions="none", bias=False,
              tie_embeddings=True, n_heads=1, hf_model_type="mamba")
# xLSTM-7B (Beck et al. 2025, "xLSTM 7B", §3): pre-norm blocks of an mLSTM layer (layers/mlstm.py: q/k half the
# width, v the whole width, gates soft-capped at 15) and a SwiGLU FFN of 2.667 x width rounded up to 64, RMSNorm,
# no positions, an untied head soft-capped at 30.
_XLSTM = dict(mixer="mlstm", ffn="swiglu", norm="rmsnorm", norm_eps=1e-6, norm_bias=False, positions="none", bias=False,
              tie_embeddings=False, final_softcap=30.0, mlstm_gate_softcap=15.0, hf_model_type="xlstm")
# RWKV-4 (Peng et al. 2023, §3): each layer a time-mixing block (the WKV recurrence) and a channel-mixing block, both
# pre-LayerNorm with token shift (layers/rwkv.py: two llmarch blocks a layer), a LayerNorm over the embeddings, no
# positions, an untied head.
_RWKV = dict(mixer="rwkv", ffn="none", norm="layernorm", embed_norm=True, positions="none", bias=False,
             tie_embeddings=False, n_heads=1, hf_model_type="rwkv")


def rwkv_layers(n: int, eps: float = 1e-5, every: int = 6) -> dict:
    """n RWKV layers: 2n blocks, time mixing then channel mixing, as transformers' Rwkv computes them at inference
    with rescale_every = `every` (0: none): the residual stream halved after every `every` layers, and those
    layers' output weights divided to match, which is exact in floating point except inside the LayerNorms, where
    the stream at layer j is 2^-(j // every) times smaller: LN(x / s; eps) = LN(x; eps s^2). So layer j's norms
    take eps * 4^(j // every) (layer types time_mix_k, channel_mix_k), and the final norm (eps 1e-5 in
    transformers) 1e-5 * 4^(n // every)."""
    depth = [j // every if every > 0 else 0 for j in range(n)]
    names = [f"{kind}_{k}" if k else kind for k in depth for kind in ("time_mix", "channel_mix")]
    overrides = {"channel_mix": {"mixer": "rwkv_channel"}}
    for k in sorted(set(depth) - {0}):
        overrides.update({f"time_mix_{k}": {"norm_eps": eps * 4 ** k},
                          f"channel_mix_{k}": {"mixer": "rwkv_channel", "norm_eps": eps * 4 ** k}})
    final = 1e-5 * 4 ** (n // every if every > 0 else 0)
    return dict(n_layers=2 * n, norm_eps=eps, final_norm_eps=None if final == eps else final, layer_types=names,
                layer_overrides=overrides)


# RWKV-7 "Goose" (Peng et al. 2025, arXiv 2503.14456, §4): RWKV-4's layout (two llmarch blocks a layer) with the
# generalized delta rule's time mixing (layers/rwkv7.py: heads of 64) and a ReLU^2 channel mixing without a gate.
_RWKV7 = dict(mixer="rwkv7", ffn="none", norm="layernorm", embed_norm=True, positions="none", bias=False,
              tie_embeddings=False, head_dim=64, hf_model_type="rwkv7")


def rwkv7_layers(n: int) -> dict:
    """n RWKV-7 layers: 2n blocks, time mixing (layer type time_mix) then channel mixing (channel_mix)."""
    return dict(n_layers=2 * n, layer_types=["time_mix", "channel_mix"] * n,
                layer_overrides={"channel_mix": {"mixer": "rwkv7_channel"}})


# RWKV-6 "Finch" (Peng et al. 2024, arXiv 2404.05892, §4): RWKV-4's layout with a matrix-valued state per head, a
# data-dependent decay and token shift (layers/rwkv6.py: heads of 64), and RWKV-4's channel mixing (ReLU^2, gated).
_RWKV6 = dict(mixer="rwkv6", ffn="none", norm="layernorm", embed_norm=True, positions="none", bias=False,
              tie_embeddings=False, head_dim=64, hf_model_type="rwkv6")


def rwkv6_layers(n: int) -> dict:
    """n RWKV-6 layers: 2n blocks, time mixing (layer type time_mix) then channel mixing (channel_mix)."""
    return dict(n_layers=2 * n, layer_types=["time_mix", "channel_mix"] * n,
                layer_overrides={"channel_mix": {"mixer": "rwkv_channel"}})


# Mamba-2 (Dao & Gu 2024): the same block with the SSD mixer, heads of 64 channels, a larger state.
_MAMBA2 = dict(_MAMBA, mixer="mamba2", ssm_state=128, ssm_head_dim=64, hf_model_type="mamba2")
# Hyena (Poli et al. 2023, §4.1): GPT's pre-norm block with attention replaced by an order-2 Hyena operator.
_HYENA = dict(mixer="hyena", ffn="gelu", norm="layernorm", positions="none", tie_embeddings=True, bias=True)
# Jamba (Lieber et al. 2024): Mamba layers (with RMSNorms over dt, B, C) and one attention layer in 8 (no
# positions: Mamba orders the tokens), SwiGLU FFNs, every other one a top-2 mixture of 16 experts whose
# top-k weights are not renormalised.
_JAMBA = dict(mixer="mamba", ssm_inner_norm=True, attn_period=8, attn_offset=4, ffn="swiglu", norm="rmsnorm",
              norm_eps=1e-6, norm_bias=False, positions="none", bias=False, tie_embeddings=False, n_experts=16,
              experts_per_token=2, moe_period=2, moe_offset=1, router_renormalize=False,
              router_aux_loss_weight=0.001, hf_model_type="jamba")
# gpt-oss (OpenAI 2025, model card §2): pre-norm RMSNorm, GQA with 8 KV heads of 64, biased projections, a
# learned sink per head, banded (sliding, 128 tokens) and dense layers alternating, YaRN RoPE (factor 32 over
# a 4096 pretraining context, theta 150k, no truncation), every FFN a mixture of clamped-SwiGLU experts of
# width 2880 with biases, top-4 from a biased router, o200k_harmony vocabulary, untied head.
_GPT_OSS = dict(positions="rope", norm="rmsnorm", norm_bias=False, ffn="swiglu_clamped", bias=True, attn_sinks=True,
                tie_embeddings=False, rope_theta=150000.0, rope_scaling="yarn", rope_factor=32.0,
                rope_original_context=4096, rope_truncate=False, n_experts=32, experts_per_token=4, router_bias=True,
                router_aux_loss_weight=0.001, hf_model_type="gpt_oss", vocab_size=201088, d_model=2880,
                n_heads=64, n_kv_heads=8, head_dim=64, ffn_hidden=2880, context_length=131072)


def _alternating(n_layers: int, window: int) -> dict:
    """gpt-oss's layers: sliding-window attention on even layers, full on odd ones."""
    types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    return dict(n_layers=n_layers, layer_types=types, layer_overrides={"sliding_attention": {"sliding_window": window}})


# Gemma 2 (Gemma Team 2024, §2, Table 1): Gemma's offset RMSNorm, sqrt(d)-scaled embeddings, tanh-GeGLU and tied
# head, with sandwich norms, scores scaled by query_pre_attn_scalar^-0.5 = 256^-0.5 and soft-capped at 50, logits
# at 30, and sliding-window (4096) layers alternating with full ones.
_GEMMA2 = dict(ffn="geglu_tanh", norm="rmsnorm_offset", norm_eps=1e-6, norm_placement="sandwich", norm_bias=False,
               positions="rope", bias=False, embed_scale=True, tie_embeddings=True, head_dim=256,
               attn_scale=256 ** -0.5, attn_softcap=50.0, final_softcap=30.0, hf_model_type="gemma2")
# Gemma 3 (Gemma Team 2025, §2): Gemma 2's block with QK-norm instead of soft-capping, five sliding-window layers
# to one full, the sliding ones with RoPE base 10k, the full ones 1M.
_GEMMA3 = dict(_GEMMA2, attn_softcap=None, final_softcap=None, qk_norm="head", rope_theta=1e6,
               hf_model_type="gemma3_text")


def _local_global(n_layers: int, period: int, window: int, **local) -> dict:
    """Gemma's layer types: every period-th layer full attention, the others a sliding window of `window`."""
    types = ["sliding_attention" if (i + 1) % period else "full_attention" for i in range(n_layers)]
    return dict(layer_types=types, layer_overrides={"sliding_attention": dict(sliding_window=window, **local)})



# Griffin (De et al. 2024, §2) as RecurrentGemma (Botev et al. 2024): two recurrent blocks (RG-LRU, layers/rglru.py)
# to one local multi-query attention layer (RoPE on half of each head), GeGLU MLPs (expansion 3) with biases, Gemma's
# (1 + g) RMSNorms, embeddings times sqrt(d) as a bfloat16 (embed_multiplier: 50.5 for d = 2560), logits soft-capped
# at 30, tied head.
_GRIFFIN = dict(ffn="geglu_tanh", norm="rmsnorm_offset", norm_eps=1e-6, norm_bias=False, positions="rope",
                rope_fraction=0.5, bias=True, qkv_bias=False, o_bias=True, ssm_bias=True, ssm_conv=4, n_kv_heads=1,
                final_softcap=30.0, tie_embeddings=True, layer_overrides={"recurrent": {"mixer": "rglru"}},
                hf_model_type="recurrent_gemma")


def _griffin(n_layers: int, window: int, multiplier: float) -> dict:
    types = [("recurrent", "recurrent", "attention")[i % 3] for i in range(n_layers)]
    return dict(_GRIFFIN, layer_types=types, sliding_window=window, embed_multiplier=multiplier)

# BLOOM (BigScience 2022, §3.2): ALiBi instead of position embeddings, a LayerNorm over the word embeddings
# (more stable training, at a small cost in zero-shot quality, §3.2.3), pre-norm LayerNorm with biases,
# tanh-GELU MLP of 4 x width, biases everywhere, the head tied to the embedding, a 250,880-token vocabulary.
_BLOOM = dict(positions="alibi", embed_norm=True, ffn="gelu_tanh", norm="layernorm", bias=True,
              tie_embeddings=True, hf_model_type="bloom")

# Qwen3 (Qwen Team 2025, §2): LLaMA with per-head QK RMSNorm, GQA, no q, k, v biases, RoPE base 10^6,
# head_dim 128 whatever the width, a 151,936-token vocabulary; the small models tie their head.
_QWEN3 = dict(_LLAMA, qk_norm="head", vocab_size=151936, head_dim=128, rope_theta=1e6, norm_eps=1e-6,
              context_length=40960, hf_model_type="qwen3")
# OLMo 2 (OLMo et al. 2024, §3.2): LLaMA with the norms moved onto each sublayer's output (res_post) and
# QK-norm over whole projections, RoPE base 5 x 10^5.
_OLMO2 = dict(_LLAMA, qk_norm="proj", norm_placement="res_post", norm_eps=1e-6, rope_theta=5e5, hf_model_type="olmo2")
# Phi-3 (Abdin et al. 2024): LLaMA's block with fused projections (a layout, not a shape), no biases.
_PHI3 = dict(_LLAMA, norm_eps=1e-5, hf_model_type="phi3")


def _nope_every(k: int, n_layers: int) -> dict:
    """Layer types for NoPE on every k-th layer, RoPE elsewhere (SmolLM3's no_rope_layer_interval)."""
    types = ["rope" if (i + 1) % k else "nope" for i in range(n_layers)]
    return dict(layer_types=types, layer_overrides={"nope": {"positions": "none"}})


# SmolLM3 (Hugging Face 2025): LLaMA with GQA, a tied head, and no positions on every 4th layer (NoPE).
_SMOLLM3 = dict(_LLAMA, tie_embeddings=True, rope_theta=5e6, norm_eps=1e-6, hf_model_type="smollm3")


# Qwen3-Next (Qwen team 2025, model card and config.json of Qwen3-Next-80B-A3B): three Gated DeltaNet layers
# (16 query/key heads and 32 value heads of 128) to one full-attention layer (GQA 16/2 heads of 256, QK-norm,
# RoPE on a quarter of each head, a sigmoid output gate), zero-centred RMSNorms, and every FFN a mixture of 512
# SwiGLU experts of 512, top-10 renormalised, plus one gated shared expert of 512.
_QWEN3_NEXT_TYPES = ["linear_attention", "linear_attention", "linear_attention", "full_attention"]
_QWEN3_NEXT = dict(_LLAMA, norm="rmsnorm_offset", norm_eps=1e-6, qk_norm="head", attn_output_gate=True,
                   rope_fraction=0.25, ssm_conv=4, ssm_conv_bias=False, ssm_bias=False, n_experts=512,
                   experts_per_token=10, n_shared_experts=1, shared_expert_gate=True, router_aux_loss_weight=0.001,
                   layer_overrides={"linear_attention": {"mixer": "gated_deltanet"}}, hf_model_type="qwen3_next")

# DeepSeek-V2/V3 (arXiv 2405.04434, 2412.19437): LLaMA's block with multi-head latent attention (latent of 512,
# RoPE key of 64, heads of 128 + 64 query/key and 128 value dims) and DeepSeekMoE FFNs (fine-grained routed
# experts plus shared ones) after the first dense layers; YaRN (factor 40 over 4096) for the 128K context.
_MLA = dict(_LLAMA, mixer="mla", kv_lora_rank=512, head_dim=64, qk_nope_head_dim=128, v_head_dim=128, norm_eps=1e-6,
            rope_scaling="yarn", rope_factor=40.0, rope_original_context=4096, context_length=163840)
_DEEPSEEK_V3 = dict(_MLA, router_scoring="sigmoid", expert_bias=True, router_renormalize=True,
                    rope_mscale=1.0, rope_mscale_all_dim=1.0, hf_model_type="deepseek_v3")

_DEEPSEEK_TINY = dict(_DEEPSEEK_V3, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=8, head_dim=16,
                      qk_nope_head_dim=32, v_head_dim=32, kv_lora_rank=64, q_lora_rank=128, ffn_hidden=768,
                      expert_hidden=128, n_experts=16, experts_per_token=4, n_shared_experts=1, router_groups=4,
                      router_topk_groups=2, router_scale=2.5, expert_bias_update=1e-3, rope_scaling="none",
                      context_length=256, moe_dense_first=1)

PRESETS: dict[str, dict] = {
    **{name: dict(_GPT2, d_model=d, n_layers=n, n_heads=h)
       for name, d, n, h in [("gpt2", 768, 12, 12), ("gpt2-medium", 1024, 24, 16),
                             ("gpt2-large", 1280, 36, 20), ("gpt2-xl", 1600, 48, 25)]},
    "llama2-7b": dict(_LLAMA, vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, ffn_hidden=11008,
                      context_length=4096, norm_eps=1e-5),
    "llama3-8b": dict(_LLAMA, vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                      ffn_hidden=14336, context_length=8192, rope_theta=500000.0, norm_eps=1e-5),
    "bert-base": dict(_BERT, d_model=768, n_layers=12, n_heads=12),
    "bert-large": dict(_BERT, d_model=1024, n_layers=24, n_heads=16),
    # RoBERTa (Liu et al. 2019): BERT's architecture, byte-level BPE vocabulary, one token type, positions
    # counted from padding_idx + 1 = 2.
    "roberta-base": dict(_BERT, vocab_size=50265, d_model=768, n_layers=12, n_heads=12, type_vocab_size=1,
                         position_offset=2, norm_eps=1e-5, hf_model_type="roberta"),
    "mixtral-8x7b": dict(_MIXTRAL, vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                         ffn_hidden=14336, context_length=32768, rope_theta=1e6, norm_eps=1e-5),
    # PaLM 8B (Table 1): 32 layers, width 4096, 16 heads of 256, FFN 4 x width
    "palm-8b": dict(_PALM, d_model=4096, n_layers=32, n_heads=16, ffn_hidden=16384),
    # state-spaces/mamba-130m: 24 layers of width 768, the GPT-NeoX vocabulary padded to 50280
    "mamba-130m": dict(_MAMBA, vocab_size=50280, d_model=768, n_layers=24, context_length=2048),
    # NX-AI/xLSTM-7b (config.json): 32 blocks of 4096, 8 heads (q/k 256 and v 512 wide), FFN 10944, 50,304 tokens
    "xlstm-7b": dict(_XLSTM, vocab_size=50304, d_model=4096, n_layers=32, n_heads=8, head_dim=256, delta_value_dim=512,
                     ffn_hidden=10944, ssm_chunk=64, context_length=1 << 20),
    # RWKV/rwkv-4-169m-pile (config.json): 12 layers of 768, FFN 3072, the GPT-NeoX vocabulary of 50,277
    "rwkv-4-169m": dict(_RWKV, vocab_size=50277, d_model=768, ffn_hidden=3072, context_length=1024, **rwkv_layers(12)),
    "gpt-oss-20b": dict(_GPT_OSS, **_alternating(24, 128)),
    "gpt-oss-120b": dict(_GPT_OSS, n_experts=128, **_alternating(36, 128)),
    # Qwen/Qwen3-0.6B and Qwen3-8B (config.json): 28 layers of 1024 (16 q, 8 kv heads) tied, 36 of 4096 untied
    "qwen3-0.6b": dict(_QWEN3, d_model=1024, n_layers=28, n_heads=16, n_kv_heads=8, ffn_hidden=3072,
                       tie_embeddings=True),
    "qwen3-8b": dict(_QWEN3, d_model=4096, n_layers=36, n_heads=32, n_kv_heads=8, ffn_hidden=12288),
    # allenai/OLMo-2-0425-1B: 16 layers of 2048, 16 heads, FFN 8192, a 100,352-token vocabulary
    "olmo2-1b": dict(_OLMO2, vocab_size=100352, d_model=2048, n_layers=16, n_heads=16, ffn_hidden=8192,
                     context_length=4096),
    # microsoft/Phi-3-mini-4k-instruct: 32 layers of 3072, 32 heads, FFN 8192, a sliding window of 2047
    "phi3-mini": dict(_PHI3, vocab_size=32064, d_model=3072, n_layers=32, n_heads=32, ffn_hidden=8192,
                      context_length=4096, sliding_window=2047),
    # HuggingFaceTB/SmolLM3-3B: 36 layers of 2048, 16 q and 4 kv heads, FFN 11008, NoPE on layers 3, 7, ...
    "smollm3-3b": dict(_SMOLLM3, vocab_size=128256, d_model=2048, n_layers=36, n_heads=16, n_kv_heads=4,
                       ffn_hidden=11008, context_length=65536, **_nope_every(4, 36)),
    # bigscience/bloom-560m: 24 layers of 1024, 16 heads
    "bloom-560m": dict(_BLOOM, vocab_size=250880, d_model=1024, n_layers=24, n_heads=16, context_length=2048),


    "qwen3-next-80b-a3b": dict(_QWEN3_NEXT, vocab_size=151936, d_model=2048, n_layers=48, n_heads=16, n_kv_heads=2,
                               head_dim=256, ffn_hidden=5120, expert_hidden=512, context_length=262144,
                               rope_theta=1e7, delta_heads=16, delta_value_heads=32, delta_key_dim=128,
                               delta_value_dim=128, layer_types=_QWEN3_NEXT_TYPES * 12),
    # ~10M-parameter CPU presets for demos and tests (vocab matches the default BPE tokenizer).
    "gpt-tiny": dict(_GPT2, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, context_length=256),
    "llama-tiny": dict(_LLAMA, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4,
                       ffn_hidden=768, context_length=256),
    # llama-tiny's active shape: two experts of 384 per token are its one FFN of 768
    "mixtral-tiny": dict(_MIXTRAL, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4,
                         ffn_hidden=384, context_length=256),
    "alibi-tiny": dict(_BLOOM, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, context_length=256),
    "qwen3-tiny": dict(_QWEN3, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4, head_dim=32,
                       ffn_hidden=768, tie_embeddings=True, context_length=256),
    "olmo2-tiny": dict(_OLMO2, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, ffn_hidden=768,
                       context_length=256),
    "smollm3-tiny": dict(_SMOLLM3, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4,
                         ffn_hidden=768, context_length=256, **_nope_every(4, 8)),
    "palm-tiny": dict(_PALM, vocab_size=8192, d_model=256, n_layers=8, n_heads=4, ffn_hidden=768, context_length=256),
    "bert-tiny": dict(_BERT, vocab_size=8192, d_model=256, n_layers=8, n_heads=4, context_length=256),
    "mamba-tiny": dict(_MAMBA, vocab_size=8192, d_model=256, n_layers=6, context_length=256, ssm_chunk=32),
    "mamba2-tiny": dict(_MAMBA2, vocab_size=8192, d_model=256, n_layers=6, ssm_state=32, ssm_head_dim=32,
                        context_length=256, ssm_chunk=32),
    # xLSTM-7B's block at mamba-tiny's width: 4 mLSTM heads (q/k 32 and v 64 wide), FFN 704
    "xlstm-tiny": dict(_XLSTM, vocab_size=8192, d_model=256, n_layers=6, n_heads=4, head_dim=32, delta_value_dim=64,
                       ffn_hidden=704, ssm_chunk=32, context_length=256),
    # RWKV-4 at mamba-tiny's width: 6 layers (12 blocks), FFN 1024, WKV chunks of 16
    "rwkv-tiny": dict(_RWKV, vocab_size=8192, d_model=256, ffn_hidden=1024, context_length=256, ssm_chunk=16,
                      **rwkv_layers(6)),
    # RWKV-7 at mamba-tiny's width: 6 layers (12 blocks) of 4 heads of 64, FFN 1024 (RWKV-7's 4 d)
    "rwkv7-tiny": dict(_RWKV7, vocab_size=8192, d_model=256, n_heads=4, ffn_hidden=1024, context_length=256,
                       **rwkv7_layers(6)),
    # RWKV-6 at mamba-tiny's width: 6 layers (12 blocks) of 4 heads of 64, FFN 896 (RWKV-6's 3.5 d), WKV chunks of 16
    "rwkv6-tiny": dict(_RWKV6, vocab_size=8192, d_model=256, n_heads=4, ffn_hidden=896, context_length=256,
                       ssm_chunk=16, **rwkv6_layers(6)),
    "hyena-tiny": dict(_HYENA, vocab_size=8192, d_model=256, n_layers=6, n_heads=4, context_length=256),
    # attention in layer 2 of every 4, Mamba elsewhere, every other FFN a top-2 mixture of 4 experts
    "hybrid-tiny": dict(_JAMBA, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4, ffn_hidden=512,
                        attn_period=4, attn_offset=2, n_experts=4, context_length=256, ssm_chunk=32),
    # gpt-oss's parts at mixtral-tiny's size: sinks, sliding (window 64) and full layers, YaRN over a
    # 64-token original context, 4 clamped-SwiGLU experts of 384, top-2
    "gpt-oss-tiny": dict(_GPT_OSS, vocab_size=8192, d_model=256, n_heads=8, n_kv_heads=4, head_dim=32,
                         ffn_hidden=384, n_experts=4, experts_per_token=2, context_length=256,
                         rope_theta=10000.0, rope_factor=4.0, rope_original_context=64, **_alternating(8, 64)),
    # google/gemma-2-2b, google/gemma-3-1b-pt and google/gemma-3-270m (config.json)
    "gemma2-2b": dict(_GEMMA2, vocab_size=256000, d_model=2304, n_layers=26, n_heads=8, n_kv_heads=4, ffn_hidden=9216,
                      context_length=8192, **_local_global(26, 2, 4096)),
    "gemma3-1b": dict(_GEMMA3, vocab_size=262144, d_model=1152, n_layers=26, n_heads=4, n_kv_heads=1, ffn_hidden=6912,
                      context_length=32768, **_local_global(26, 6, 512, rope_theta=1e4)),
    "gemma3-270m": dict(_GEMMA3, vocab_size=262144, d_model=640, n_layers=18, n_heads=4, n_kv_heads=1,
                        ffn_hidden=2048, context_length=32768, **_local_global(18, 6, 512, rope_theta=1e4)),
    "gemma3-tiny": dict(_GEMMA3, vocab_size=8192, d_model=256, n_layers=6, n_heads=4, n_kv_heads=2, head_dim=64,
                        attn_scale=64 ** -0.5, ffn_hidden=768, context_length=256,
                        **_local_global(6, 6, 32, rope_theta=1e4)),


    # google/recurrentgemma-2b (config.json): 26 layers of 2560, 10 heads, lru_width 2560, window 2048
    "recurrentgemma-2b": dict(vocab_size=256000, d_model=2560, n_layers=26, n_heads=10, ffn_hidden=7680,
                              context_length=8192, **_griffin(26, 2048, 50.5)),
    # its parts at llama-tiny's width: 8 layers (6 recurrent, 2 local attention with a window of 64)
    "griffin-tiny": dict(vocab_size=8192, d_model=256, n_layers=8, n_heads=4, ffn_hidden=768, context_length=256,
                         **_griffin(8, 64, 16.0)),
    # Kimi Linear in deepseek-tiny's shape: three Kimi Delta Attention layers (4 heads of 32) to one latent attention
    # layer without positions, the first FFN dense, then 16 experts of 128 (4 per token from 2 of 4 groups), 1 shared
    "kimi-linear-tiny": dict(_LLAMA, mixer="mla", positions="none", vocab_size=8192, d_model=256, n_layers=8, n_heads=8,
                             head_dim=16, qk_nope_head_dim=32, v_head_dim=32, kv_lora_rank=64, ffn_hidden=768,
                             expert_hidden=128, n_experts=16, experts_per_token=4, n_shared_experts=1,
                             router_scoring="sigmoid", expert_bias=True, router_groups=4, router_topk_groups=2,
                             router_scale=2.5, moe_dense_first=1, norm_eps=1e-5, context_length=256,
                             layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2,
                             layer_overrides={"linear_attention": {"mixer": "kda"}}, delta_heads=4, delta_key_dim=32,
                             ssm_conv_bias=False, ssm_chunk=32, hf_model_type="kimi_linear"),
    # Gated DeltaNet in llama-tiny's block: the delta rule in every layer, 4 query/key heads and 8 value heads of 32
    "gated-deltanet-tiny": dict(_LLAMA, vocab_size=8192, d_model=256, n_layers=8, n_heads=4, ffn_hidden=768,
                                context_length=256, mixer="gated_deltanet", delta_value_heads=8, delta_key_dim=32,
                                delta_value_dim=32, ssm_chunk=32),
    # DeepSeek-V3 (config.json of deepseek-ai/DeepSeek-V3): 61 layers, the first 3 dense; 256 routed experts of
    # 2048 (8 per token, from 4 of 8 groups) and 1 shared; 671B parameters, 37B active (the MTP module aside)
    "deepseek-v3": dict(_DEEPSEEK_V3, vocab_size=129280, d_model=7168, n_layers=61, n_heads=128, n_kv_heads=128,
                        q_lora_rank=1536, ffn_hidden=18432, expert_hidden=2048, n_experts=256, experts_per_token=8,
                        n_shared_experts=1, router_groups=8, router_topk_groups=4, router_scale=2.5, moe_dense_first=3),
    # DeepSeek-V2-Lite: no query compression, 27 layers (the first dense), 64 routed experts of 1408 (6 per
    # token, softmax, greedy, not renormalised) and 2 shared; 15.7B parameters, 2.4B active
    "deepseek-v2-lite": dict(_MLA, vocab_size=102400, d_model=2048, n_layers=27, n_heads=16, n_kv_heads=16,
                             ffn_hidden=10944, expert_hidden=1408, n_experts=64, experts_per_token=6,
                             n_shared_experts=2, router_renormalize=False, rope_mscale=0.707,
                             rope_mscale_all_dim=0.707, hf_model_type="deepseek_v2", moe_dense_first=1),
    # llama-tiny's shape with latent attention: a latent of 64 + a RoPE key of 16 per token and layer, where
    # llama-tiny's 4 KV heads of 32 cache 256
    "mla-tiny": dict(_LLAMA, mixer="mla", vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=8,
                     head_dim=16, qk_nope_head_dim=32, v_head_dim=32, kv_lora_rank=64, q_lora_rank=128,
                     ffn_hidden=768, context_length=256, hf_model_type="deepseek_v3"),
    # and V3's mixture: the first FFN dense (768), then 16 routed experts of 128 (4 per token from 2 of 4
    # groups, sigmoid scores, aux-loss-free bias updates) and 1 shared: 5 x 128 active
    "deepseek-tiny": _DEEPSEEK_TINY,
    # and DeepSeek-V3.2's sparse attention (arXiv 2512.02556): a lightning indexer of 4 heads of 32 in every layer,
    # each query attending to its 64 best keys (a quarter of the context)
    "deepseek-v3.2-tiny": dict(_DEEPSEEK_TINY, dsa_topk=64, dsa_heads=4, dsa_head_dim=32, hf_model_type="deepseek_v32"),
    "t5-small": dict(_T5, d_model=512, n_layers=6, n_decoder_layers=6, n_heads=8, ffn_hidden=2048),
    "t5-base": dict(_T5, d_model=768, n_layers=12, n_decoder_layers=12, n_heads=12, ffn_hidden=3072),
    "bart-base": dict(_BART, d_model=768, n_layers=6, n_decoder_layers=6, n_heads=12),
    # the paper's base model on WMT14 En-De: a shared BPE vocabulary of about 37000 tokens (§5.1)
    "transformer-base": dict(_TRANSFORMER, vocab_size=37000, d_model=512, n_layers=6, n_decoder_layers=6,
                             n_heads=8, ffn_hidden=2048),
    "t5-tiny": dict(_T5, vocab_size=8192, d_model=256, n_layers=4, n_decoder_layers=4, n_heads=4, ffn_hidden=1024,
                    context_length=256),
    "switch-tiny": dict(_SWITCH, vocab_size=8192, d_model=256, n_layers=4, n_decoder_layers=4, n_heads=4,
                        ffn_hidden=1024, context_length=256),
    "bart-tiny": dict(_BART, vocab_size=8192, d_model=256, n_layers=4, n_decoder_layers=4, n_heads=4,
                      context_length=256),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise LlmarchError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return ModelConfig(name=name, **PRESETS[name])


def resolve(name_or_config: str | Path | ModelConfig, **overrides: Any) -> ModelConfig:
    """A preset name, a JSON/YAML file or a ModelConfig, with field overrides applied."""
    if isinstance(name_or_config, ModelConfig):
        base = name_or_config
    elif str(name_or_config) in PRESETS:
        base = preset(str(name_or_config))
    elif Path(name_or_config).suffix in (".json", ".yaml", ".yml"):
        base = ModelConfig.load(name_or_config)
    elif Path(name_or_config).suffix == ".gguf" or "/" in str(name_or_config):  # meant as a file or directory
        raise LlmarchError(f"{name_or_config}: no such checkpoint, .gguf file or config file")
    else:
        raise LlmarchError(
            f"unknown model {str(name_or_config)!r}: not a preset ({', '.join(sorted(PRESETS))}) "
            "nor a .json/.yaml config file"
        )
    return base.replace(**overrides) if overrides else base
