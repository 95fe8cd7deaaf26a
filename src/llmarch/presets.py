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

# DeepSeek-V2/V3 (arXiv 2405.04434, 2412.19437): LLaMA's block with multi-head latent attention (latent of 512,
# RoPE key of 64, heads of 128 + 64 query/key and 128 value dims) and DeepSeekMoE FFNs (fine-grained routed
# experts plus shared ones) after the first dense layers; YaRN (factor 40 over 4096) for the 128K context.
_MLA = dict(_LLAMA, mixer="mla", kv_lora_rank=512, head_dim=64, qk_nope_head_dim=128, v_head_dim=128, norm_eps=1e-6,
            rope_scaling="yarn", rope_factor=40.0, rope_original_context=4096, context_length=163840)
_DEEPSEEK_V3 = dict(_MLA, router_scoring="sigmoid", expert_bias=True, router_renormalize=True,
                    rope_mscale=1.0, rope_mscale_all_dim=1.0, hf_model_type="deepseek_v3")

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
    # ~10M-parameter CPU presets for demos and tests (vocab matches the default BPE tokenizer).
    "gpt-tiny": dict(_GPT2, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, context_length=256),
    "llama-tiny": dict(_LLAMA, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4,
                       ffn_hidden=768, context_length=256),
    # llama-tiny's active shape: two experts of 384 per token are its one FFN of 768
    "mixtral-tiny": dict(_MIXTRAL, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4,
                         ffn_hidden=384, context_length=256),
    "palm-tiny": dict(_PALM, vocab_size=8192, d_model=256, n_layers=8, n_heads=4, ffn_hidden=768, context_length=256),
    "bert-tiny": dict(_BERT, vocab_size=8192, d_model=256, n_layers=8, n_heads=4, context_length=256),
    "mamba-tiny": dict(_MAMBA, vocab_size=8192, d_model=256, n_layers=6, context_length=256, ssm_chunk=32),
    "mamba2-tiny": dict(_MAMBA2, vocab_size=8192, d_model=256, n_layers=6, ssm_state=32, ssm_head_dim=32,
                        context_length=256, ssm_chunk=32),
    "hyena-tiny": dict(_HYENA, vocab_size=8192, d_model=256, n_layers=6, n_heads=4, context_length=256),
    # attention in layer 2 of every 4, Mamba elsewhere, every other FFN a top-2 mixture of 4 experts
    "hybrid-tiny": dict(_JAMBA, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4, ffn_hidden=512,
                        attn_period=4, attn_offset=2, n_experts=4, context_length=256, ssm_chunk=32),
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
    "deepseek-tiny": dict(_DEEPSEEK_V3, vocab_size=8192, d_model=256, n_layers=8, n_heads=8, n_kv_heads=8,
                          head_dim=16, qk_nope_head_dim=32, v_head_dim=32, kv_lora_rank=64, q_lora_rank=128,
                          ffn_hidden=768, expert_hidden=128, n_experts=16, experts_per_token=4, n_shared_experts=1,
                          router_groups=4, router_topk_groups=2, router_scale=2.5, expert_bias_update=1e-3,
                          rope_scaling="none", context_length=256, moe_dense_first=1),
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
    else:
        raise LlmarchError(
            f"unknown model {str(name_or_config)!r}: not a preset ({', '.join(sorted(PRESETS))}) "
            "nor a .json/.yaml config file"
        )
    return base.replace(**overrides) if overrides else base
