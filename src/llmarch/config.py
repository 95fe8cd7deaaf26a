"""`ModelConfig`: every swappable part of a model, named by field. Presets live in presets.py."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import LlmarchError, warn
from .layers.attention_kinds import ATTENTION_KINDS
from .layers.bitlinear import BITLINEARS
from .layers.canon import check_canon
from .layers.depth_attention import check_depth_attention
from .layers.recurrence import check_recurrence
from .layers.mixer import MIXERS
from .layers.altup import check as check_altup
from .layers.hyper import check as check_hyper
from .layers.ffn import FFN_ACTIVATION, check_ffn
from .layers.heads import check_head
from .layers.moe import check_moe
from .layers.positions import ROPE_SCALINGS
from .layers.residual_mix import check_residual_mix
from .layers.lang_adapters import check_lang_adapters
from .layers.table_types import check_table_types
from .layers.side_conv import check_side_conv
from .layers.input_proj import check_input_proj
from .layers.encoder_inputs import check_encoder_input
from .audio.config import check_audio
from .vision.config import check_vision


HEADS = ("classify", "detect", "embed", "lm", "tokens")
POOLINGS = ("none", "cls", "mean", "last")
_DERIVED = ("n_kv_heads", "head_dim", "ffn_hidden", "final_norm", "qkv_bias", "o_bias", "ffn_in_bias", "expert_hidden",
            "attention", "ssm_dt_rank", "shared_hidden", "expert_proj_bias")
_IMPLS = ("sdpa", "eager")
QK_NORMS = ("none", "head", "per_head", "proj", "head_after_rope", "rms_after_rope", "l2_clip")
# the share of the fields a config names from which it was written by llmarch, not by hand (ModelConfig.load)
WRITTEN_SHARE = 0.75
NORM_PLACEMENTS = ("pre", "post", "sandwich", "res_post", "normed_residual")
# the fields a layer type may change: which mixer and attention kind, its window, its positions, its FFN kind (a
# layer that is its mixer alone, ffn='none', beside one that is its FFN alone, mixer='none': Nemotron-H), its norms'
# epsilon (RWKV's inference rescaling: interop/rwkv.py), its attention output's bias (GPT-NeoX-Japanese: the last
# layer's alone)
LAYER_FIELDS = ("mixer", "attention", "sliding_window", "positions", "rope_theta", "rope_fraction", "rope_scaling",
                "rope_factor", "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_context", "n_experts",
                "ffn_hidden", "qk_norm", "rope_beta_fast", "rope_beta_slow", "rope_attn_factor", "rope_mscale",
                "rope_mscale_all_dim", "rope_truncate", "attn_temp_scale", "head_dim", "n_kv_heads", "attn_k_eq_v",
                "ffn", "dsa_shared", "ffn_sparsity", "norm_placement", "dsa_topk", "norm_eps", "attn_sinks", "n_heads",
                "o_bias", "local_block_offset", "attn_temp_power", "attn_scale", "rel_logits_extent", "swiglu_limit",
                "expert_ffn", "expert_swiglu_limit", "kv_fp4", "mla_no_rope", "qk_nope_head_dim",
                "window_ahead", "canon_kv_dynamic", "attn_split_inputs", "attention_chunk", "chunks_before",
                "chunks_after")
# the fields a byte-latent model's other stacks may set apart from its local decoder's (patch_stacks)
PATCH_STACK_FIELDS = ("d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_hidden", "norm_eps",
                      "rope_theta", "context_length", "sliding_window", "attention")
PATCH_STACKS = ("patcher", "encoder", "global")
# the fields a Perceiver IO model's latent stack and encoding cross-attention set apart (latent_parts)
LATENT_PART_FIELDS = ("d_model", "n_heads", "n_kv_heads", "head_dim", "value_dim", "ffn_hidden",
                      "query_residual")
LATENT_PARTS = ("latents", "encode")
# the stack-level fields an encoder-decoder's decoder may set apart from its encoder's (decoder_overrides)
DECODER_FIELDS = ("norm_placement", "final_norm", "embed_norm", "type_vocab_size", "position_offset", "ffn",
                  "ffn_hidden", "norm_eps", "positions")


@dataclass
class ModelConfig:
    name: str = "custom"  # a label for reports and checkpoints
    vocab_size: int = 50257  # token embeddings and output classes of the LM head
    d_model: int = 768  # width of the residual stream
    n_layers: int = 12  # blocks (an encoder-decoder: encoder blocks)
    n_heads: int = 12  # query heads of attention
    n_kv_heads: int | None = None  # None: = n_heads (MHA); 1: MQA; in between: GQA
    head_dim: int | None = None  # None: d_model // n_heads
    # each attention head's value width, which attention's output, o_proj's input and every KV cache's values take;
    # None: head_dim (also a layer type's own). Narrower than q and k: MiMo-V2-Flash's values of 128 beside queries and
    # keys of 192. Read as value_width
    value_dim: int | None = None
    # layers/ffn.py: gelu, gelu_tanh, relu, relu2, silu, swiglu, geglu, reglu, swiglu_clamped (gpt-oss), swiglu_limited
    # (DeepSeek-V4); none: no FFN, the block is its mixer alone (Mamba)
    ffn: str = "gelu"
    ffn_hidden: int | None = None  # None: 4 * d_model
    # layers/norms.py: layernorm, rmsnorm, rmsnorm_offset (Gemma), layernorm_plain (OLMo), layernorm1p (Nemotron),
    # rmsnorm_plain (RMSNorm without a gain: nanochat)
    norm: str = "layernorm"
    norm_eps: float = 1e-5  # epsilon of every norm
    # the final norm's epsilon; None: norm_eps (JetMoE: rms_norm_eps reaches only its final norm, its blocks' norms
    # keep transformers' default 1e-6)
    final_norm_eps: float | None = None
    # whether the final norm has a bias; None: norm_bias (ESM C: LayerNorms with biases in its blocks, without in its
    # final norm and its QK-norm)
    final_norm_bias: bool | None = None
    # whether the QK-norm has a bias; None: norm_bias (ESM C's has none), and none for qk_norm 'per_head' (a bias
    # per head and channel only where True: Chameleon's)
    qk_norm_bias: bool | None = None
    # the QK-norm's own norm kind where it differs from the blocks' (Chameleon: LayerNorms over each head's queries
    # and keys in a model of RMSNorms); None: norm
    qk_norm_kind: str | None = None
    qk_norm_eps: float | None = None  # the QK-norm's epsilon; None: norm_eps (Chameleon's: 1e-5, fixed)
    # pre (GPT-2, LLaMA), post (original Transformer, BERT), sandwich: pre and also a norm on each sublayer's
    # output before the residual add (Gemma 2/3: x += norm(attn(norm(x)))), res_post (OLMo 2): x += norm(f(x)),
    # normed_residual: the residual add keeps the normed input, x = n(x) + f(n(x)) (MiniMax-01's DeepNorm post-norm,
    # each norm moved before the sublayer it feeds)
    norm_placement: str = "pre"
    # False: block 0 has no norm before its mixer, whose input is embed_norm's output already (ModernBERT,
    # Warner et al. 2024, §2.1.1: the first LayerNorm is removed to avoid normalising twice); pre-norm only
    first_mixer_norm: bool = True
    final_norm: bool | None = None  # norm after the last block; None: False for post-norm, else True
    block: str = "sequential"  # sequential: x + attn, then + ffn; parallel: x + attn(n1(x)) + ffn(n2(x)) (GPT-NeoX)
    shared_norm: bool = False  # parallel block: one norm feeds both, x + attn(n(x)) + ffn(n(x)) (PaLM, GPT-J, Falcon)
    qk_norm: str = "none"  # none; head: a norm over each head's queries and keys before RoPE (Qwen3); per_head:
    # the same with a gain per head (StableLM-2-12B); proj: over the whole query and key projections, before they
    # split into heads (OLMo 2); head_after_rope: as head, on the rotated queries and keys (Hunyuan);
    # rms_after_rope: the rotated queries and keys of each head divided by their RMS, with no gain (Llama 4);
    # l2_clip: each head's queries times a learned gain per head and channel, then queries and keys scaled down to an
    # L2 norm of at most qk_clip (Inkling 2: layers/norms.py L2Clip)
    attn_output_gate: bool = False  # attention's output times sigmoid(x W_g) per head, before o_proj (Qwen3-Next)
    # each head's output times sigmoid(x w_h), one scalar per head from a projection of its own (g_proj: d_model to
    # n_heads), before o_proj: the headwise gate of Qiu et al. 2025, "Gated Attention for LLMs", §3 (LFM3's
    # use_attention_gate; Ling 3's latent attention; Laguna's gating 'per-head', with softplus)
    attn_head_gate: bool = False
    # the output gates' squashing of x W_g (attn_output_gate, attn_head_gate): sigmoid (Qwen3-Next, AFMoE) or
    # softplus (Laguna)
    attn_gate_fn: str = "sigmoid"
    # a learned bias per head added to attn_output_gate's pre-activations, sigmoid(x W_g + b_h) (Beam's gate_bias)
    attn_gate_bias: bool = False
    # no value projection: each head's values are its keys' projection, before the key norm and RoPE (Gemma 4's
    # global layers, attention_k_eq_v)
    attn_k_eq_v: bool = False
    v_norm: bool = False  # each head's values through an RMSNorm without a gain (Gemma 4)
    # the rotated queries times a learned gain per channel (n_heads x head_dim) before the scores: nGPT's s_qk
    # (Loshchilov et al. 2024, §2.3.2), which Dory puts, squared, on the queries alone
    attn_q_gain: bool = False
    # a norm (of the `norm` kind) over attention's concatenated heads before o_proj and over the FFN's hidden
    # activations before its down projection: BitNet b1.58's attn_sub_norm and ffn_sub_norm (SubLN, Wang et al.
    # 2022, "Foundation Transformers", §2)
    sub_norm: bool = False
    # none; online: every projection of the blocks' attention and FFN is BitNet b1.58's BitLinear (Ma et al. 2024,
    # "The Era of 1-bit LLMs", §2: weights rounded to {-1, 0, 1} by their absmean, inputs to 8 bits per token by
    # their absmax, quantized at every call from full-precision weights; layers/bitlinear.py)
    bitlinear: str = "none"
    # how the stack runs its blocks (layers/recurrence.py): none, each once in order; hrm, the Hierarchical Reasoning
    # Model's two recurrent modules (Wang et al. 2025, §2): the first n_layers / 2 blocks the low-level module, the
    # rest the high-level one, z_L = f_L(z_L + z_H) hrm_low_cycles times, then z_H = f_H(z_H + z_L), for
    # hrm_high_cycles cycles; loop, a recurrent-depth stack (Dory): loop_prelude blocks once, the middle blocks
    # loop_count times, each pass from norm(h) + norm(h_prelude), then loop_coda blocks once
    recurrence: str = "none"
    hrm_high_cycles: int = 2  # recurrence 'hrm': N, the high-level module's cycles
    hrm_low_cycles: int = 3  # recurrence 'hrm': T, the low-level module's cycles within each high-level one
    loop_prelude: int = 0  # recurrence 'loop': the first this-many blocks, run once before the looped ones
    loop_coda: int = 0  # recurrence 'loop': the last this-many blocks, run once after the looped ones
    loop_count: int = 2  # recurrence 'loop': passes through the looped (middle) blocks
    # recurrence 'loop', > 0: Inkling 2 Loop's passes (layers/loop_messages.py) instead of Dory's injection: each pass
    # restarts from the prelude's output and, after the first, its looped blocks read messages from the previous
    # pass through gates of this rank (loop_gate_rank); needs attn_residual_block. 0: Dory's
    loop_message_rank: int = 0
    # recurrence 'funnel' (layers/funnel.py, Funnel-Transformer): the encoder's blocks in groups of these sizes, the
    # sequence pooled to about half before each group after the first (block_sizes); None: no funnel
    funnel_blocks: list | None = None
    funnel_decoder_layers: int = 0  # recurrence 'funnel': blocks after upsampling back to full length (MLM decoder)
    funnel_pooling: str = "mean"  # recurrence 'funnel': mean or max over each pair of neighbours (pooling_type)
    funnel_separate_cls: bool = True  # recurrence 'funnel': the first token (<cls>) kept out of the pooling
    # recurrence 'funnel', with funnel_separate_cls: the last token dropped before pooling, so that the rest pairs up
    # (truncate_seq)
    funnel_truncate: bool = True
    # recurrence 'funnel': a pooled group's first block pools its queries only, attending over the unpooled keys and
    # values (pool_q_only); False: all three pooled
    funnel_pool_q_only: bool = True
    # 0: every block its own weights. G > 0: ALBERT's cross-layer parameter sharing (Lan et al. 2020, §3.1): G
    # blocks of weights, layer i running block i * G // n_layers (G = 1: every layer the same block); encoders only
    layer_groups: int = 0
    # with layer_groups G: layer i runs block i mod G, the G blocks repeated in order (Perceiver IO's num_blocks passes
    # over its self-attention layers, weights shared across passes), instead of ALBERT's block i * G // n_layers
    layer_groups_cyclic: bool = False
    # the last this-many layers project no keys or values: each attends with its own queries over those of the last
    # earlier layer of the same attention geometry (kind, window, heads, head_dim, RoPE), sharing its KV cache
    # (Gemma 3n and Gemma 4's num_kv_shared_layers)
    kv_shared_layers: int = 0
    # for each layer, the layer whose keys and values it attends over with its own queries: its own index, or an
    # earlier layer of the same attention geometry that keeps its own, whose KV cache it shares (Kolibri 1.1's
    # kv_source_layers); None: kv_shared_layers's rule
    kv_source_layers: list | None = None
    # keys and values rounded to NVFP4 before attention (E2M1 values, one E4M3 scale per 16 dims; layers/nvfp4.py),
    # as Kolibri 1.1's sparse layers were trained to attend
    kv_fp4: bool = False
    # each block's output (the residual stream) times a scalar stored with the weights (Gemma 4's layer_scalar)
    layer_scalar: bool = False
    # > 0: a drafter for a target of this width (Gemma 4's assistants; models/drafter.py), not a language model of its
    # own: it reads [the target's embedding of the last token, the target's final hidden state] (2 x this width) through
    # a projection, its layers (kv_shared_layers = n_layers) attend over the target's keys and values, and it returns
    # the next token's logits and a state of this width for the next draft step
    draft_target_width: int = 0
    # a drafter's logits through centroid-masked embeddings (Gemma 4 assistants' use_ordered_embeddings): the vocabulary
    # in this many clusters of tokens, only the tokens of the best draft_centroid_top_k clusters scored; 0: every token
    draft_centroids: int = 0
    draft_centroid_top_k: int = 32  # draft_centroids: how many clusters' tokens get logits (the rest: their min - 1)
    # > 0: per-layer input embeddings of this width (Gemma 3n / Gemma 4 PLE, layers/per_layer_inputs.py): each
    # token's vector for each layer, gated into the residual stream after that layer's FFN
    ple_dim: int = 0
    # rows of the per-layer embedding table; None: vocab_size. Fewer than vocab_size: the ids past the table read its
    # row 0 (Gemma 3n, whose last 256 ids are image and audio tokens)
    ple_vocab: int | None = None
    # token ids the token embedding and the per-layer table read as id 0, the padding token (Gemma 4's image, video
    # and audio tokens, which Gemma4Model looks up as pad_token_id; their features, where given, replace the first)
    placeholder_ids: list | None = None
    # > 1: AltUp (Baykal et al. 2023, "Alternating Updates for Efficient Transformers"; layers/altup.py): the residual
    # stream is this many copies of d_model; each block computes on one (altup_active), predicted from all by a
    # learned mix, and corrects the others with what it computed (Gemma 3n: 4). 1: one residual stream
    altup_streams: int = 1
    altup_active: int = 0  # AltUp: the stream each block's sublayers compute on (Gemma 3n's altup_active_idx)
    # AltUp: the corrected active stream times a learned gain per channel before it feeds the per-layer inputs'
    # gate (Gemma 3n's altup_correct_scale)
    altup_correct_scale: bool = False
    # > 0: LAuReL (Menghani et al. 2024, "LAuReL: Learned Augmented Residual Layer", LAuReL-LR; layers/laurel.py):
    # the attention sublayer's residual gains a low-rank learned term of this rank, x + attn + h + norm(h A B),
    # h = norm(x), the sum divided by sqrt(2) (Gemma 3n's laurel_rank: 64)
    laurel_rank: int = 0
    # hyper-connections (layers/hyper.py): the residual stream as hc_streams streams of d_model, each sublayer reading
    # a learned per-token mix of them and writing its output back into each with a learned gain: none (one plain
    # residual stream), mhc (DeepSeek-V4's manifold-constrained hyper-connections, the streams mixed by a matrix made
    # doubly stochastic by Sinkhorn-Knopp), ihc (HY-V4's independent ones: no mixing) or gated (Qwen4-Exp's gated
    # residual: the gate norms each sublayer's input, no ln1/ln2, and a gate without injection merges the streams)
    hyper_connection: str = "none"
    hc_rank: int = 320  # hyper_connection 'gated': rank of the low-rank map from the normed streams to the gates
    hc_streams: int = 4  # hyper_connection: the number of residual streams n_hc (DeepSeek-V4's hc_mult)
    hc_sinkhorn_iters: int = 20  # mhc: Sinkhorn-Knopp iterations that make the stream-mixing matrix doubly stochastic
    hc_eps: float = 1e-6  # hyper_connection: the floor added to its gates and to the Sinkhorn-Knopp divisors
    hc_post_gain: float = 2.0  # hyper_connection: g, the largest gain of a sublayer's output into a stream
    # hyper_connection 'reversible', in training: each block's inputs recomputed from its outputs in the backward pass
    # (RevNet; Reformer §3), activations O(1) in depth (layers/reversible_backward.py); Reformer checkpoints: True
    reversible_backward: bool = False
    # hyper_connection 'reversible': the head sets the streams side by side, the last first (hc_streams * d_model
    # wide: Reformer's [Y2; Y1]), and the final norm and the LM head read that width; False: they are merged
    hc_side_by_side: bool = False
    # layers/positions.py: learned, sinusoidal (sinusoidal_halves: Marian, PEGASUS; sinusoidal_fairseq: M2M-100;
    # sinusoidal_cos_sin: MusicGen), rope, alibi, t5_relative, learned_t5_relative (a learned table and the T5 bias:
    # MPNet), relative_embeddings (DeBERTa), relative_sinusoidal (Transformer-XL's R_{i-j}, read by xl_relative
    # attention: XLNet), none
    positions: str = "learned"
    # axial (Reformer's axial position embeddings): position p = r * axial_shape[1] + c takes [E1[r]; E2[c]], E1 of
    # axial_dims[0] features per row r < axial_shape[0], E2 of axial_dims[1] per column c (the dims sum to d_model)
    axial_shape: list | None = None
    axial_dims: list | None = None  # axial: the features of each of the two tables (above), summing to d_model
    rope_theta: float = 10000.0  # RoPE base frequency
    rope_fraction: float = 1.0  # share of each head's dims that RoPE rotates (GPT-NeoX: 0.25)
    # layers/positions.py: none, linear, dynamic (NTK), llama3, yarn, longrope, proportional (Gemma 4's p-RoPE: the
    # first rope_fraction of each head's frequencies over the whole head_dim, the rest zero)
    rope_scaling: str = "none"
    rope_factor: float = 1.0  # context-extension factor of the scaling
    rope_low_freq_factor: float = 1.0  # llama3 scaling
    rope_high_freq_factor: float = 4.0  # llama3 scaling
    rope_original_context: int | None = None  # context the model was pretrained with (dynamic, llama3, yarn, longrope)
    rope_beta_fast: float = 32.0  # yarn: dims turning more than this often over that context keep their frequency
    rope_beta_slow: float = 1.0  # yarn: dims turning less than this often are interpolated by rope_factor
    rope_attn_factor: float | None = None  # yarn, longrope: cos, sin scale; None: yarn 0.1 ln(factor) + 1 or
    # the mscale ratio, longrope sqrt(1 + ln f / ln original)
    rope_mscale: float | None = None  # yarn: DeepSeek's mscale (with rope_mscale_all_dim sets the factor above)
    rope_mscale_all_dim: float | None = None  # yarn: DeepSeek's mscale_all_dim
    rope_truncate: bool = True  # yarn: floor/ceil the ramp's ends to whole dims (gpt-oss: False)
    rope_short_factor: list | None = None  # longrope: a divisor per rotated pair's frequency, within that context
    rope_long_factor: list | None = None  # longrope: the divisors once a sequence runs past the original context
    # rope: each frequency times exp(alpha_i), alpha learned per rotated pair (Mistral Large 4's LeRoPE,
    # rotary_emb.alpha; zeros: RoPE as it is), on top of the scaling above
    rope_learned_freqs: bool = False
    # rope: multimodal RoPE's split of the rotated pairs' frequencies into temporal, height and width sections
    # (Qwen2-VL, Wang et al. 2024, §2.1; three counts summing to rotary_dim / 2), each turned by its own axis of a
    # visual token's position. llmarch's positions are a text token's, the same on all three axes, so RoPE turns as
    # plain RoPE; kept to write the model back as read. None: plain RoPE
    mrope_section: list | None = None
    # mrope_section's frequencies taken T, H, W in turn rather than in three runs (Qwen3-VL); text turns the same
    mrope_interleaved: bool = False
    alibi_scale: float = 1.0  # alibi: slopes multiplied by this (Falcon-RW: 1/sqrt(head_dim), scaled with the scores)
    alibi_bf16: bool = False  # alibi: slopes and slope * position rounded to bfloat16, as Falcon-RW computes them
    # alibi in a bidirectional encoder: head h adds -m_h |i - j| to the score of query i on key j, before or after it
    # (JinaBERT-v2: Günther et al. 2023, arXiv 2310.19923; llama.cpp's jina-bert-v2); needs causal=False
    alibi_symmetric: bool = False
    sliding_window: int | None = None  # each query sees itself and the window - 1 keys before it (Mistral)
    # a bidirectional sliding window's reach ahead: query i sees keys j with i - j < sliding_window and
    # j - i <= window_ahead (T5Gemma 2's encoder: sliding_window (w + 1) // 2, window_ahead w // 2); None: the
    # window's own, sliding_window - 1 (|i - j| < sliding_window)
    window_ahead: int | None = None
    # chunked: a query sees the earlier keys of its own chunk of this many positions; lsh_chunks, local_chunks: the
    # chunk length c of Reformer's sorted (LSH) or positional (local) chunks
    attention_chunk: int = 8192
    chunks_before: int = 1  # lsh_chunks, local_chunks: the chunks before its own that a query's chunk attends to
    chunks_after: int = 0  # lsh_chunks, local_chunks: the chunks after its own (bidirectional only)
    # lsh_chunks, local_chunks: a sequence longer than attention_pad_above positions is attended as if padded with
    # masked keys to a multiple of attention_pad_multiple (Reformer pads its inputs to the least common multiple of
    # its layers' chunk lengths when longer than the shortest); 0: never padded
    attention_pad_multiple: int = 0
    attention_pad_above: int = 0  # lsh_chunks, local_chunks: the length past which attention_pad_multiple applies
    # Llama 4's attention temperature tuning (Meta 2025; Nakanishi 2025, "Scalable-Softmax Is Superior for
    # Attention"): queries at position p times 1 + attn_temp_scale * ln(1 + floor((p + 1) / attn_temp_floor)), so
    # attention stays sharp over long contexts; 0.0 leaves queries as they are (Llama 4: 0.1 on its NoPE layers)
    attn_temp_scale: float = 0.0
    attn_temp_floor: int = 8192  # attn_temp_scale's unit of positions (Llama 4's floor_scale)
    # how the temperature grows with p: floor, 1 + s ln(1 + floor((p + shift) / unit)) (Llama 4); ratio,
    # 1 + s ln(max((p + shift) / unit, 1)) (Inkling's log_scaling_alpha and log_scaling_n_floor)
    attn_temp_form: str = "floor"
    # added to p before the floor: 1 (Llama 4), or 0 (Ministral 3 and Mistral 4's llama_4_scaling_beta, whose unit
    # is original_max_position_embeddings: 1 + beta * ln(1 + floor(p / unit)))
    attn_temp_shift: int = 1
    # > 0: the power form of that query scaling instead, queries at position p times
    # (1 + (p + attn_temp_shift) / attn_temp_floor) ** attn_temp_power (Beam's NoPE layers: 0.1, floor 2048, shift 1:
    # exp(0.1 ln(1 + (p + 1) / 2048))); 0.0: the log form of attn_temp_scale, or none
    attn_temp_power: float = 0.0
    attn_sinks: bool = False  # a learned logit per head in the softmax denominator, no value (gpt-oss; layers/sinks.py)
    embed_scale: bool = False  # multiply token embeddings by sqrt(d_model) (Gemma)
    # the token embeddings as (e + b) * s, b and s learned vectors of d_model (ZAYA1's input_hidden_states_bias and
    # _scale)
    embed_affine: bool = False
    # how each sublayer's output y joins the residual stream x (layers/residual_mix.py): none (x + y); depth_scaled,
    # x sqrt((k - 1) / k) + y / sqrt(k) at the stack's k-th add (Beam); gated, sigmoid(w) y + sqrt(1 - sigmoid(w)^2) x
    # with w learned per channel (Ergo); scaled, g x + y with g learned per channel (Doge); layer_scale, x + g y with
    # g learned per channel (CaiT's LayerScale, InternViT's); affine,
    # (y + b_y) * s_y + (x + b_x) * s_x with four vectors learned per sublayer (ZAYA1's ResidualScaling); ngpt,
    # norm(x) + |a| (y - norm(x)) on the unit sphere (nGPT, Dory; norm 'l2'). Sequential pre-norm or sandwich blocks
    # only
    residual_mix: str = "none"
    residual_rate_init: float = 0.05  # residual_mix 'ngpt': the learned rates' start (nGPT's alpha_init)
    # > 0: the norm before each mixer, and before each mixture-of-experts FFN (a dense FFN's stays plain), followed by a
    # low-rank gate on its own output, y * sigmoid(silu(y W_down) W_up), W_down of this rank (A.X-K2's GatedRMSNorm,
    # Megatron's GatedNormWrapper: 16); pre-norm sequential blocks
    norm_gate_rank: int = 0
    # Granite's muP-style scalars (IBM Granite 3.x; 1.0 leaves a model as it is, at no cost)
    embed_multiplier: float = 1.0  # token embeddings times this, after embed_scale (Granite's embedding_multiplier)
    residual_multiplier: float = 1.0  # each sublayer's output times this before its residual add (residual_multiplier)
    # the residual stream's own multiplier in each sequential sublayer's add, x = alpha * x + f(...) (DeepNorm's alpha,
    # Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers"; MiniMax-01's layernorm_*_alpha)
    residual_alpha: float = 1.0
    logit_divisor: float = 1.0  # the LM head's logits divided by this, before final_softcap (Granite's logits_scaling)
    bias: bool = True  # biases of the attention and FFN projections
    qkv_bias: bool | None = None  # biases of the q, k, v projections; None: = bias (Qwen2: True with bias False)
    o_bias: bool | None = None  # a bias on attention's output projection; None: = bias (GPT-J: none, its MLP's yes)
    # biases of a dense FFN's input projections (up, or gate and up); None: = bias (GTE: none there, down's yes)
    ffn_in_bias: bool | None = None
    # q, k and v (attention) each as this many groups of input channels mapped to their own outputs (block-diagonal
    # weights; layers/grouped_linear.py): SqueezeBERT's grouped 1x1 convolutions (Iandola et al. 2020, §3.2); 1: dense
    qkv_groups: int = 1
    ffn_groups: int = 1  # the same for a dense MLP's up and down projections (SqueezeBERT's intermediate/output_groups)
    norm_bias: bool = True  # LayerNorm bias (RMSNorm has none)
    tie_embeddings: bool = True  # LM head shares the token-embedding matrix
    dropout: float = 0.0  # dropout probability in training (attention, residual branches, embeddings)
    causal: bool = True  # False: bidirectional self-attention (encoders: BERT, RoBERTa)
    type_vocab_size: int = 0  # token-type (segment) embeddings added to the input (BERT: 2); 0: none
    default_token_type: int = 0  # the token type of tokens given no token_type_ids (CPM-Ant's text: segment 2)
    # token_type_ids, where given, are embedded with the token table and added as a second token (scaled as the tokens
    # are): transformers' GPT-2, GPT-Neo, GPT-J, CodeGen, GPT-BigCode, openai-gpt and CTRL, which have no table of
    # types; their checkpoints load with it set
    type_ids_from_tokens: bool = False
    # > 0: this many learned tokens before every sequence (CPM-Ant's task prompt): embedding rows task_prompt_id ..
    # task_prompt_id + P - 1 of token type 0 at cache slots 0..P-1, which the first call of a sequence puts before
    # its tokens and no output shows; the caller's slots count from the first token after them
    task_prompt: int = 0
    task_prompt_id: int = 0  # task_prompt: the embedding row of the first prompt token
    # a causal stack whose every call's tokens also see each other: a whole forward is bidirectional and decoding a
    # token a time causal, a prefix LM over the prompt (CPM-Ant as transformers runs it: its forward and generate).
    # prefix_lm's prefix_mask with every token of a call given by default (Stack.run)
    prefix_bidirectional: bool = False
    embed_norm: bool = False  # a norm over the summed input embeddings (BERT)
    # a decoder stack's embed_norm reads the token embeddings alone, before the positions are added: LN(e) + p, not
    # LN(e + p) (BlenderbotSmall's decoder; its encoder, as BART's, normalises the sum); needs embed_norm, causal
    decoder_embed_norm_first: bool = False
    # a second segment-like table added to the input embeddings, indexed by task_type_ids (default 0): ERNIE 2.0/3.0's
    # task embeddings (Sun et al. 2020, §4.2.1, transformers' use_task_id); 0: none
    task_type_vocab_size: int = 0
    # a table of language embeddings added to the input embeddings, indexed by lang_ids, one language per input or
    # per token (XLM's lang_embeddings, Lample & Conneau 2019, §3.1 and Fig. 1: translation language modeling);
    # nothing is added where a forward is given no lang_ids, as transformers does; 0: none
    lang_vocab_size: int = 0
    # 2-D position embeddings of each token's bounding box (layers/box_positions.py; LayoutLM, Xu et al. 2020, §2.2):
    # x, y, height and width tables of this many coordinates, added to the input embeddings, read by forward's bbox
    # (B, T, 4); boxes (0, 0, 0, 0) where a forward is given none, as transformers fills them; 0: none
    box_vocab_size: int = 0
    # several token-type tables in place of type_vocab_size's one (layers/table_types.py; TAPAS's seven, Herzig et
    # al. 2020, §2), one column of forward's token_type_ids (B, T, K) each, all added; None: none
    type_vocab_sizes: list | None = None
    # positions restart at each table cell (TAPAS's reset_position_index_per_cell): the tokens whose token types in
    # these columns of type_vocab_sizes agree count from their first token; None: absolute positions
    position_reset_types: list | None = None
    # width of the token, position and token-type embeddings and of embed_norm; None: d_model. Another width: a
    # linear projection (embed_proj) into the residual stream after embed_norm, and an LM head's transform projects
    # back to it before the tied output projection (ELECTRA's embedding_size, Clark et al. 2020, §3.2)
    embed_dim: int | None = None
    # width of the LM head transform's output, the vectors the output projection reads; None: the embedding width
    # (embed_dim). RemBERT's output_embedding_size: output embeddings decoupled from, and wider than, the input ones
    # (Chung et al. 2021, "Rethinking Embedding Coupling in Pre-trained Language Models", §3, §5); needs
    # head_transform and, where it differs from the embedding width, an untied head
    output_embed_dim: int | None = None
    # X-MOD's language adapters (layers/lang_adapters.py; Pfeiffer et al. 2022): one bottleneck adapter per language,
    # named here in order (forward's lang_ids index them), after every block's FFN; None: none
    languages: list | None = None
    lang_adapter_dim: int = 0  # languages: the adapters' bottleneck width (X-MOD: hidden_size / reduction factor)
    default_language: str | None = None  # languages: the adapter of inputs given no lang_ids; None: lang_ids needed
    # ESM-2's token dropout (layers/token_dropout.py): the embeddings of this token id (its mask) zeroed and each
    # row's embeddings scaled by (1 - 0.12) / (1 - the row's share of mask tokens); None: off. Encoders only
    token_dropout_id: int | None = None
    # a linear projection (embed_proj) after embed_norm even where embed_dim = d_model (FNet's embeddings.projection,
    # Lee-Thorp et al. 2021); False: a projection only between different widths
    embed_proj: bool = False
    # a linear map with a bias of the token embeddings alone, embed_width to embed_width, before the positions and
    # token types are added (RoCBert's map_inputs_layer under concat_input, read on the word embeddings' columns)
    token_proj: bool = False
    # token embeddings (embed_dim wide) projected into d_model before positions and token types are added at d_model
    # (layers/input_proj.py): token (no such projection: embed_dim, embed_proj), project (a linear projection), trigram
    # (each token's embedding beside its next and previous tokens', [e_t+1; e_t; e_t-1], then the projection:
    # MobileBERT's trigram_input, Sun et al. 2020, §4.1; bidirectional only)
    embed_input: str = "token"
    position_offset: int = 0  # added to position ids (RoBERTa counts from padding_idx + 1 = 2)
    head_transform: bool = False  # dense -> activation -> norm before the output projection (BERT's MLM head)
    head_transform_bias: bool = True  # a bias on the head transform's dense layer (ModernBERT's classifier_bias)
    # > 0: the LM head's transform is a bottleneck MLP of this width instead, h -> act(act(h W_1) W_2), W_1 (d_model
    # -> head_mlp) and W_2 (back) without biases and no norm (UltraBERT's prediction_head_size); needs head_transform
    head_mlp: int = 0
    # the head transform's activation (gelu, gelu_tanh, relu, silu, relu2); None: the FFN's (UltraBERT: gelu_tanh)
    head_act: str | None = None
    head_bias: bool = False  # a bias on the output projection
    # the LM head reads all d_model features of its transform while its tied embeddings are embed_dim wide: the first
    # embed_dim project onto the embeddings (lm_head), the rest through a matrix of the head's own (lm_head_extra,
    # no bias): MobileBERT's cls.predictions.dense
    head_extra: bool = False
    # the head transform's norm kind; None: norm (MobileBERT: layernorm beside its blocks' affine NoNorm)
    head_norm: str | None = None
    # rows of an untied LM head: it scores ids 0..head_vocab - 1 only, the ids past it are input-only (Apertus 1.5's
    # output_vocab_size: the head pruned of its image and audio codes); None: vocab_size
    head_vocab: int | None = None
    # parallel token streams (MusicGen's audio codebooks, layers/codebooks.py): input ids (B * codebooks, T), stream
    # k of each row looked up in its own table of vocab_size rows, the K embeddings summed, and its own head of
    # head_vocab rows, logits (B * codebooks, T, head_vocab); 0: one stream of tokens
    codebooks: int = 0
    # classify and tokens heads: the head transform (dense -> activation -> norm) on the pooled hidden state
    # (classify, pooled by `pooling`) or on each token's (tokens) before the classifier, in place of the pooler
    # (ModernBERT's ModernBertPredictionHead)
    classifier_transform: bool = False
    # lm: vocabulary logits per token; classify: n_labels per sequence; tokens: n_labels per token; detect: one
    # logit per token, (B, T), each token's state through the pooler's dense and pooler_act then a 1-wide projection
    # (ELECTRA's discriminator: was this token replaced? Clark et al. 2020, §2); embed: no head,
    # the final hidden states pooled by `pooling` (an embedding model, as llama.cpp runs BERT)
    head: str = "lm"
    n_labels: int = 2  # classes of the classify and tokens heads
    # head embed: none (each token's final hidden state), cls (the first token's), mean (over real tokens), last
    # (the last real token's); llama.cpp's pooling_type. Also what a classify head with classifier_transform
    # reads (none there: the first real token, or the last for a causal model)
    pooling: str = "none"
    # head embed: the output widths of sentence-transformers Dense projections applied in order after the pooling
    # (EmbeddingGemma's 2_Dense and 3_Dense: 3072, 768; Vera et al. 2025, §2); None: none
    embed_dense: list | None = None
    embed_dense_bias: bool = False  # the embed_dense projections have biases (sentence-transformers' Dense default)
    # the embed_dense projections' activation: identity (EmbeddingGemma's) or tanh (sentence-transformers' default)
    embed_dense_act: str = "identity"
    # head embed: each output scaled to unit length last (sentence-transformers' Normalize module)
    embed_normalize: bool = False
    # the classify and detect heads' pooler: dense, then this activation (tanh: BERT, RoBERTa; relu: DistilBERT's
    # pre_classifier; gelu: ELECTRA's classification head and discriminator)
    pooler_act: str = "tanh"
    # False: a classify head without classifier_transform reads the pooled token (by `pooling`) straight into the
    # classifier, no dense + pooler_act before it (XLM's sequence summary: the first token's state projected)
    pooler: bool = True
    n_decoder_layers: int = 0  # > 0: an encoder-decoder (T5, BART): n_layers encoder blocks, these decoder blocks
    # a decoder-only model whose blocks also hold an encoder-decoder cross-attention sublayer (ln_cross, cross_attn)
    # over memory this many wide, which they never run: TrOCR's decoder read alone (its encoder_attn reads an image
    # encoder's output, which a text-only forward has none of), kept so the checkpoint writes back whole; 0: none
    held_cross_width: int = 0
    # an encoder-decoder whose encoder reads a token-embedding table of its own, the decoder (and a tied head) the
    # other (T5Gemma: each stack keeps the embedding of the Gemma it was adapted from); False: one shared table
    encoder_embed: bool = False
    # rows of encoder_embed's table, a source vocabulary apart from the target's (FSMT's src_vocab_size beside its
    # tgt_vocab_size, the decoder's and head's vocab_size); None: vocab_size. Needs encoder_embed
    encoder_vocab_size: int | None = None
    # what an encoder-decoder's encoder reads (layers/encoder_inputs.py): tokens (source ids through the token
    # embedding) or a front end over float features: conv_stem (Whisper's log-mel frames through two convolutions,
    # the second of stride 2, and fixed sinusoids; Radford et al. 2022, §2.2), waveform_stem (Moonshine's raw
    # waveform through three strided convolutions, no positions: its encoder's blocks rotate theirs)
    encoder_input: str = "tokens"
    # the features' channels per frame that encoder_input reads (Whisper's num_mel_bins; 1: Moonshine's samples)
    input_channels: int = 0
    # an encoder-decoder's decoder positions (its learned table's rows, its KV cache's bound), where the encoder's,
    # context_length, differ (LED: 16384 source tokens, 1024 target tokens); None: context_length
    decoder_context_length: int | None = None
    # an encoder-decoder whose stacks differ in more than their depth (EncoderDecoderModel's BERT encoder beside a
    # GPT-2 decoder): the fields (of DECODER_FIELDS) the decoder stack sets apart from the encoder's, which the
    # rest of the config describes; the head is the decoder's
    decoder_overrides: dict | None = None
    # ProphetNet's n-gram predicting streams (ngram): a decoder stack appends, after its T token rows, the first
    # stream's T rows (the table's last row plus the position one ahead), runs both through attention 'ngram'
    # and returns that stream, which predicts the next token; the table holds all n rows (the others train)
    ngram_streams: int = 0
    # BLT (Pagnoni et al. 2024, "Byte Latent Transformer"): a byte model whose middle runs over patches. This config
    # describes its local decoder; patch_stacks holds the fields (of PATCH_STACK_FIELDS) in which its entropy model
    # ("patcher"), local encoder ("encoder") and global transformer over patches ("global") differ from it
    # (models/byte_latent.py); None: not a byte-latent model
    patch_stacks: dict | None = None
    # a patch begins after the first two bytes wherever the entropy model's next-byte entropy exceeds this (BLT §2.3)
    patch_threshold: float = 1.335442066192627
    patch_cross_k: int = 2  # each patch is this many vectors in the local stacks' cross-attention (BLT §3.2.2)
    hash_ngram_sizes: list | None = None  # the n-gram sizes whose hashed embeddings add to a byte's (BLT §3.2.1)
    hash_ngram_vocab: int = 0  # hash_ngram_sizes: the hash table's rows per size and function
    hash_ngram_functions: int = 1  # hash_ngram_sizes: the number of hash functions
    # patch_stacks: the mean bytes a patch, which llmarch info's FLOPs per byte assume (entropy patching's patches vary
    # with the text; BLT's main models average 4.5, Llama 3's BPE tokens 4.4 bytes); the model never reads it
    mean_patch_length: float = 4.5
    # Perceiver IO (Jaegle et al. 2021): this many learned latent vectors read the inputs by cross-attention, run
    # through a stack of their own and are read back by one query per position (models/perceiver.py); 0: not one
    n_latents: int = 0
    # n_latents: the fields (of LATENT_PART_FIELDS) in which the latent stack ("latents": its width, heads, FFN; its
    # depth is the top level's n_layers and layer_groups) and the cross-attention into it ("encode": heads, FFN,
    # query_residual; as wide as the latents) differ from the top level, which describes the inputs and the decoding
    # cross-attention over the latents
    latent_parts: dict | None = None
    # a cross-attention block (layers/cross_block.py) adds its queries back to its attention's output; False: the
    # output alone (Perceiver IO's decoder, whose queries are positions)
    query_residual: bool = True
    # an encoder-decoder composed of two Hugging Face models (EncoderDecoderModel): their model_types, the
    # encoder's then the decoder's, which name each stack's tensors (interop/encoder_decoder.py)
    hf_stack_types: list | None = None
    attn_scale: float | None = None  # scores are q.k * attn_scale; None: 1/sqrt(head_dim) (T5: 1.0)
    attn_key_multiplier: float = 1.0  # attention's keys times this after their projection (Falcon-H1's key_multiplier)
    # attention's values times this after their projection, before they are cached (MiMo-V2-Flash's
    # attention_value_scale, about sqrt(d_model / (n_heads * value_dim)))
    attn_value_multiplier: float = 1.0
    # q, k and v clamped to [-clip_qkv, clip_qkv] after their projections (and a 'proj' QK-norm), before RoPE:
    # OLMo's guard against loss spikes (Groeneveld et al. 2024, "OLMo", §2.1; OLMo 1.7, OLMoE)
    clip_qkv: float | None = None
    attn_softcap: float | None = None  # scores soft-capped, cap * tanh(s / cap), before the softmax (Gemma 2: 50)
    final_softcap: float | None = None  # the LM head's logits soft-capped the same way (Gemma 2: 30)
    # [start, stop) ranges of ids whose logits the LM head sets to the dtype's lowest value, so they are never
    # predicted (Chameleon's image tokens, suppressed when it writes text); None: none
    suppressed_logits: list | None = None
    # t5_relative positions: buckets of the relative-position bias; relative_embeddings: rows of the embedding table,
    # 2k for the offsets -k..k-1 (DeBERTa: 2 * position_buckets, or 2 * max_relative_positions without buckets)
    relative_buckets: int = 32
    # t5_relative, relative_embeddings with relative_log_buckets: distances past this share the last bucket
    relative_max_distance: int = 128
    # relative_embeddings: offsets past k/2 bucketed logarithmically up to relative_max_distance (DeBERTa-v2/v3's
    # position_buckets); False: offsets as they are, clamped to [-k, k - 1] (DeBERTa v1)
    relative_log_buckets: bool = True
    relative_norm: bool = False  # relative_embeddings: a norm over the embedding table (DeBERTa's norm_rel_ebd)
    relative_clamp: int | None = None  # relative_sinusoidal: distances clamped to +-this (XLNet clamp_len); None: not
    # disentangled attention (He et al. 2021, eq. 4): the relative terms added to the content-to-content scores:
    # c2p (content-to-position), p2c (position-to-content) or c2p+p2c (DeBERTa's pos_att_type)
    disentangled_terms: str = "c2p+p2c"
    # disentangled attention: the relative embeddings projected by the layer's own query and key projections
    # (DeBERTa-v2/v3's share_att_key); False: by projections of their own (pos_key_proj, pos_query_proj)
    disentangled_shared_proj: bool = True
    # disentangled attention without shared projections: a bias on pos_key_proj (DeBERTa v1's pos_proj has none)
    disentangled_key_bias: bool = True
    # attention 'relative_logits' (attention_kinds/relative_logits.py; Inkling): each query's relative state (this
    # wide per head, a projection of its token) mixes a learned bank of bias profiles over key distances 0..extent-1
    rel_logits_dim: int = 16
    rel_logits_extent: int = 1024  # relative_logits: distances the bias covers (0 beyond); may vary per layer type
    # > 0: Canon layers (layers/canon.py; Allen-Zhu 2025, Physics of LMs 4.1), causal depthwise convolutions of this
    # many taps with a residual: canon_kv on attention's projected keys and values (Inkling's k_sconv, v_sconv),
    # canon_out on each sublayer's output before its residual add (attn_sconv, mlp_sconv); 0: none
    canon_kv: int = 0
    canon_out: int = 0  # see canon_kv
    # Canon layers' sums divided by sqrt(K + 1) (sqrt(2K + 1) for dynamic ones), which keeps their scale (Inkling 2)
    canon_scaled: bool = False
    # canon_kv's taps plus per-token taps, a projection of the attention's input per key/value head (Inkling 2's full
    # layers: canon.DynamicCanon); a layer type may set it
    canon_kv_dynamic: bool = False
    # qk_norm 'l2_clip': the largest L2 norm of a query or key head (Inkling 2's qk_l2_clip_threshold)
    qk_clip: float = 1.0
    # relative_logits: each relative state through a learned gain per head and channel and an L2 clip at this norm
    # (Inkling 2's rel_l2_clip_threshold); None: as projected
    rel_logits_clip: float | None = None
    # the sink logits per token, a projection of the attention's input to one per head (Inkling 2's sink_proj),
    # instead of attn_sinks' one learned logit per head; attention 'relative_logits' only
    attn_sink_proj: bool = False
    # attention reads three inputs, stacked (B, T, 3, C): queries, keys and values each projected from its own (Inkling
    # 2's full layers, each from a depth attention of its own: attn_residual_block); a layer type may set it
    attn_split_inputs: bool = False
    # > 0: block attention residuals (layers/depth_attention.py; Inkling 2's n_layers_per_attn_res_block): the stream is
    # a stack of block sums, a new one started every this many layers, and each sublayer reads a softmax attention
    # over them with a learned query instead of the plain residual stream; 0: none
    attn_residual_block: int = 0
    # > 0: a 1-d convolution of this (odd) kernel over block 0's input, beside block 0: its output becomes
    # norm(block(x) + act(conv(x))) (DeBERTa-v2's ConvLayer, nGiE); 0: none
    side_conv: int = 0
    side_conv_act: str = "tanh"  # side_conv's activation: tanh, gelu or relu (DeBERTa-v2's conv_act)
    side_conv_groups: int = 1  # side_conv's groups of channels convolved apart (DeBERTa-v2's conv_groups)
    # t5_relative: every layer learns its own bias table instead of all sharing the first layer's (UMT5, Chung et
    # al. 2023, "UniMax", §4: the bias in each layer, as in T5X's per-layer relative attention)
    relative_bias_per_layer: bool = False
    # transient_global attention (LongT5, Guo et al. 2022, §3.1.2): tokens per fixed block summarised into one global
    # token; with t5_relative positions a bidirectional stack also learns a bias table over (global block - the
    # token's block) offsets (0: no global tokens)
    global_block_size: int = 0
    # learned global tokens of a bidirectional stack (PEGASUS-X's num_global_tokens, Phang et al. 2022, §3.1): G
    # vectors put before the first token (no positions), normalised before attention by their own ln1_global, run
    # through every block beside the tokens and dropped after the last; 0: none. Needs global_local attention
    global_tokens: int = 0
    # global_local attention (PEGASUS-X): each token sees the global tokens and the tokens of its block of this many
    # (block (p + local_block_offset) // local_block_size); the global tokens see every token
    local_block_size: int = 0
    # global_local attention: slots its blocks start earlier, varying per layer (PEGASUS-X staggers every other
    # layer's blocks by local_block_size // 2)
    local_block_offset: int = 0
    head_scale: bool = False  # multiply the final hidden states by d_model^-0.5 before the head (T5 v1.0, tied)
    pad_id: int = 0  # encoder-decoders: padding id (right padding of sources and targets)
    decoder_start_id: int = 0  # encoder-decoders: the first decoder input (T5: pad; BART: eos)
    eos_id: int | None = None  # encoder-decoders: end of sequence, stored for export and generation defaults
    # Mixture of experts (layers/moe.py, layers/router.py): the FFN of layer i is a mixture when n_experts > 0
    # and i % moe_period == moe_offset (Switch: every other layer; Jamba's expert_layer_period/offset)
    n_experts: int = 0
    experts_per_token: int = 2  # top-k of the router (Mixtral 2, Switch 1)
    expert_hidden: int | None = None  # hidden width of each expert; None: ffn_hidden
    n_shared_experts: int = 0  # experts every token passes through, unweighted (DeepSeekMoE)
    # the shared experts' one fused MLP's width; None: n_shared_experts * expert_hidden (Granite 4.0's shared MLP
    # and Qwen2-MoE's shared expert need not be a multiple of the experts' width)
    shared_hidden: int | None = None
    shared_expert_gate: bool = False  # the shared experts' output times sigmoid(x w) per token (Qwen3-Next)
    # the routed and the shared experts' outputs averaged, (routed + shared) / 2, not summed (Cohere2-MoE's
    # shared_expert_combination_strategy "average")
    shared_average: bool = False
    # expert scores: softmax over experts (Mixtral, DeepSeek-V2), sigmoid (V3), or sparsemixer (Phi-3.5-MoE: each
    # of the k choices weighted by a softmax over the logits within sparsemixer_eps of its own; layers/router.py), or
    # sqrtsoftplus, sqrt(softplus(logit)) per expert (DeepSeek-V4)
    router_scoring: str = "softmax"
    sparsemixer_eps: float = 0.01  # sparsemixer: logits more than 2 eps below a choice's (relatively) are masked
    router_scale: float = 1.0  # routed experts' weights times this (DeepSeek routed_scaling_factor)
    router_groups: int = 1  # experts in this many equal groups; each token picks from its best router_topk_groups
    router_topk_groups: int = 1  # (DeepSeek-V2 device-limited, V3 node-limited routing)
    expert_bias: bool = False  # a per-expert bias on the scores, for choosing only (DeepSeek-V3 aux-loss-free)
    # biases on the routed experts' own projections, (E, rows) and (E, C); None: = bias (nomic-bert-moe as llama.cpp
    # runs it: biased attention and dense MLPs beside experts without)
    expert_proj_bias: bool | None = None
    # expert_bias added to the router's logits for the choice, not to their scores (Kolibri-1: top-k of l + b, the
    # weights sigmoid(l) of the chosen)
    router_bias_on_logits: bool = False
    expert_bias_update: float = 0.0  # gamma: training updates b_e += gamma * sign(mean load - load_e) (V3 §2.1.2)
    moe_period: int = 1  # every moe_period-th layer's FFN is a mixture (see n_experts)
    moe_offset: int = 0  # the first mixture layer (see n_experts)
    moe_dense_first: int = 0  # the first k layers' FFNs stay dense (DeepSeekMoE's first_k_dense_replace)
    # the routed experts' gated kind where it differs from ffn, which the dense and shared FFNs keep (HY-V4: clamped
    # swiglu_limited experts beside plain swiglu ones); None: ffn
    expert_ffn: str | None = None
    # the first k layers (mixture layers all) choose each token's experts by a fixed table of its id (tid2eid, vocab x
    # experts_per_token, stored with the weights) instead of by score; the scores still weigh them (DeepSeek-V4's
    # hash MoE layers)
    router_hash_layers: int = 0
    router_renormalize: bool = True  # top-k weights rescaled to sum to 1 (Mixtral); False: softmax probs (Switch)
    # router_renormalize divides the top-k weights by their p-norm with this p (DBRX's moe_normalize_expert_weights);
    # 1: by their sum, as Mixtral
    router_renorm_p: float = 1.0
    # a chosen expert's routing weight scales its input, E(w * x), instead of its output, w * E(x) (Llama 4)
    expert_input_weighted: bool = False
    capacity_factor: float | None = None  # expert capacity per sequence = ceil(factor * T * k / n_experts)
    expert_capacity: int | None = None  # a fixed capacity per sequence instead (transformers' Switch)
    router_jitter: float = 0.0  # training: router inputs times U(1 - eps, 1 + eps) (Switch §2.4)
    router_aux_loss_weight: float = 0.0  # weight of the load-balancing loss in training (Switch eq. 4)
    router_z_loss_weight: float = 0.0  # weight of the router z-loss in training (ST-MoE eq. 5)
    router_aux_scope: str = "batch"  # batch: statistics over all tokens (Mixtral); sequence: per sequence (Switch)
    router_bias: bool = False  # a bias on the router's logits (gpt-oss)
    # the router's logits soft-capped, cap * tanh(l / cap), before their scores (Laguna's moe_router_logit_softcapping)
    router_softcap: float | None = None
    # the router reads RMSNorm(x) * s * d_model^-1/2, s a learned gain per channel, not x (Gemma 4's router)
    router_input_norm: bool = False
    router_expert_scale: bool = False  # each chosen expert's weight times a learned scale per expert (Gemma 4)
    # a mixture layer's FFN is a dense FFN of ffn_hidden beside the experts, each between a norm of its own on its
    # input and one on its output, summed; the router reads the residual stream (Gemma 4's enable_moe_block)
    moe_beside_dense: bool = False
    # the router reads the block's input, before the attention sublayer and its norm, while the experts read the FFN's
    # normed input (SmallThinker's early router, Song et al. 2025, so experts can be fetched while attention runs)
    router_early: bool = False
    # > 0: each group of this many routed experts (ids g*k .. g*k + k - 1) shares an adjugate expert of width
    # moe_adjugate_hidden, run for every chosen expert of its group with that expert's weight, its output times
    # moe_adjugate_scale added to the routed experts' (GroveMoE's chunk_experts, Wu et al. 2025); 0: none
    moe_adjugate_group: int = 0
    moe_adjugate_hidden: int = 128  # moe_adjugate_group: the adjugate experts' hidden width (GroveMoE: 128)
    moe_adjugate_scale: float = 0.05  # moe_adjugate_group: their output's multiplier (GroveMoE: 0.05)
    moe_out_bias: bool = False  # a bias (d_model) added to a mixture's summed output (JetMoE's MoE bias)
    # > 0: the router is an MLP of this width (ZAYA1's router_hidden_size; layers/router.py): h = x W_down + b, then
    # RMSNorm, two biased Linear + GELU layers of this width and a projection to the logits; 0: one projection of x
    router_mlp: int = 0
    # router_mlp: each mixture layer after the first adds to its h the previous mixture layer's h times a learned
    # gain per channel, carried along the forward (ZAYA1's router states, EDA)
    router_carry: bool = False
    # this many more choices the router scores that compute nothing: a token routed to one gets no expert output
    # for that choice (ZAYA1's skip expert); 0: none
    skip_experts: int = 0
    # a norm (of the `norm` kind) over a mixture's summed output, routed and shared experts together, before its
    # residual add; dense FFN layers have none (A.X-K1's post_mlp_layernorm)
    moe_out_norm: bool = False
    # each expert's output through an RMSNorm before it is weighted and summed: a gain per routed expert (E x d_model,
    # the checkpoint's), and a norm of its own over the shared experts' (Ergo's post_expert_norm, shared_experts.norm)
    expert_out_norm: bool = False
    # this many more experts the router chooses among that compute nothing: a token routed to one passes through
    # times its weight, w * x (LongCat-Flash's zero-computation experts, Meituan 2025, §2.1), so a token may spend
    # fewer real experts
    zero_experts: int = 0
    # shortcut-connected MoE (LongCat-Flash, after Cai et al. 2024, "Shortcut-connected Expert Parallelism"): a
    # mixture layer keeps its dense FFN and runs the experts beside it on the same normed input; their output joins
    # the residual stream at the end of the next layer, so the experts overlap that layer's computation
    moe_shortcut: bool = False
    # the router scores the shared experts too (its last n_shared_experts logits, never chosen) and renormalises their
    # sigmoid scores with the chosen experts'; each shared expert's output times its weight (Inkling's
    # shared_expert_sink)
    router_shared_sink: bool = False
    router_learned_scale: bool = False  # every routing weight times a learned scalar (Inkling's gate.global_scale)
    # a dense gated FFN's output times a learned scalar (Inkling's mlp.global_scale); not the experts'
    ffn_learned_scale: bool = False
    swiglu_alpha: float = 1.702  # swiglu_clamped: the gate's sigmoid gain (gpt-oss)
    # swiglu_clamped, swiglu_limited: gate clamped above, up clamped both sides, at this value (gpt-oss, DeepSeek-V4)
    swiglu_limit: float = 7.0
    # the routed experts' swiglu_limit where it differs from the dense and shared FFNs' (Step 3.7's swiglu_limits beside
    # swiglu_limits_shared); None: swiglu_limit
    expert_swiglu_limit: float | None = None
    # swiglu_softcapped: the gated kind c_g tanh(g / c_g) sigmoid(g) * c_u tanh(u / c_u) (Inkling 2's experts)
    swiglu_gate_cap: float = 4.0
    swiglu_up_cap: float = 25.0  # swiglu_softcapped: c_u, the cap on the up projection (c_g above: the gate's)
    # gated dense FFNs: act(m * x W_gate) * x W_up, the gate's pre-activation times m (Falcon-H1's muP
    # mlp_multipliers[0])
    ffn_gate_multiplier: float = 1.0
    ffn_out_multiplier: float = 1.0  # gated dense FFNs: the output times this (Falcon-H1's mlp_multipliers[1])
    # in (0, 1): a gated dense FFN's gate pre-activations g keep only what exceeds mean(g) + std(g) * Phi^-1(s), the
    # rest zeroed (relu(g - cutoff)): a statistical top-k keeping about 1 - s of them, if g is Gaussian (Gemma 3n's
    # activation_sparsity_pattern, 0.95 on its first 10 layers; Song et al. 2024, "ProSparse"). 0: dense
    ffn_sparsity: float = 0.0
    # The sequence mixer of every layer (layers/mamba.py, mamba2.py, hyena.py, gated_deltanet.py, shortconv.py,
    # rglru.py, kda.py, mlstm.py; parallel_mixer.py: several side by side; none: no mixer, the block is its FFN alone,
    # no_mixer.py), except that with attn_period > 0 layer i is
    # attention where i % attn_period == attn_offset (Jamba: mamba, 8, 4)
    mixer: str = "attention"
    attn_period: int = 0  # > 0: every attn_period-th layer is attention whatever the mixer (see mixer)
    attn_offset: int = 0  # the first such attention layer (see mixer)
    ssm_state: int = 16  # N: state size per channel (Mamba) or per head (Mamba-2)
    ssm_expand: int = 2  # the mixer's inner width is ssm_expand * d_model (Mamba, Mamba-2)
    ssm_conv: int = 4  # kernel of the depthwise causal convolution (Mamba, Mamba-2)
    ssm_dt_rank: int | None = None  # Mamba: rank of the step-size projection; None: ceil(d_model / 16)
    # Mamba: independent Mamba scans over this many equal slices of the inner width, each with its own x_proj and
    # dt_proj (Zamba's n_mamba_heads, Glorioso et al. 2024); 1: one scan (Mamba)
    ssm_heads: int = 1
    ssm_head_dim: int = 64  # Mamba-2: P, channels per head (heads = inner width / P)
    ssm_groups: int = 1  # Mamba-2: groups of heads that share B and C
    ssm_chunk: int = 64  # chunk length of the chunked scans
    ssm_bias: bool = False  # biases of the mixer's input and output projections
    ssm_conv_bias: bool = True  # a bias on that convolution
    ssm_inner_norm: bool = False  # RMSNorm over dt, B and C inside the mixer (Jamba)
    ssm_inner_norm_gain: bool = True  # ssm_inner_norm's learned gains (Jamba); False: x / rms(x) alone (Falcon Mamba)
    ssm_inner_norm_eps: float | None = None  # ssm_inner_norm's epsilon; None: norm_eps (Falcon Mamba: 1e-6)
    # Mamba-2: the inner width of x and z; None: ssm_expand * d_model (Falcon-H1's d_ssm, Nemotron-H's mamba_num_heads
    # x mamba_head_dim)
    ssm_inner: int | None = None
    # Mamba-2: in_proj's z, x, B, C and dt parts times these five constants (Falcon-H1's muP ssm_multipliers)
    ssm_proj_multipliers: list | None = None
    # Mamba-2's norm before out_proj: gated, norm(y * silu(z)) * g (Mamba-2); norm_gate, norm(y) * g * silu(z)
    # (Falcon-H1's mamba_norm_before_gate); none, y * silu(z) with no norm (Falcon-H1 without mamba_rms_norm)
    ssm_norm: str = "gated"
    # mixer 'parallel' (layers/parallel_mixer.py): the mixers it runs side by side on the same normed input, their
    # outputs summed (Falcon-H1: attention beside Mamba-2); None: attention and mamba2
    parallel_mixers: list | None = None
    parallel_in_multipliers: list | None = None  # mixer 'parallel': each part's input times this; None: 1 each
    parallel_out_multipliers: list | None = None  # mixer 'parallel': each part's output times this; None: 1 each
    # Mamba-2: each step size dt clamped to at least this after its softplus (the lower end of the reference
    # code's dt_limit; Zamba2's time_step_min); 0: no clamp
    ssm_dt_floor: float = 0.0
    # mixer 'shared_block' (layers/shared_block.py; Zamba, Glorioso et al. 2024): a transformer block whose weights
    # all such layers share reads [x; embeddings], and its output, projected by the layer, joins the input of the
    # layer's own mixer, shared_block_mixer. The layers cycle through shared_blocks distinct blocks (Zamba2's
    # num_mem_blocks), built from this config's attention and FFN fields on a 2 * d_model wide input
    shared_blocks: int = 1
    shared_block_mixer: str = "mamba2"  # mixer 'shared_block': the layer's own mixer, after the shared block
    # mixer 'shared_block': per-layer low-rank adapters (Zamba2 §2) added to the shared block's projections:
    # any of qkv (each of q, k, v its own) and gate_up (the FFN's fused gate and up); None: none
    shared_adapters: list | None = None
    shared_adapter_rank: int = 128  # mixer 'shared_block': the rank r of those adapters, x W_down (r) W_up
    # Multi-head latent attention (mixer "mla", layers/mla.py; DeepSeek-V2 §2.1): head_dim is the decoupled
    # RoPE part d_h^R of each query and the key all heads share (as transformers sets head_dim = qk_rope_head_dim)
    q_lora_rank: int | None = None  # mla: rank d_c' of the query compression (V3: 1536); None: one q projection
    kv_lora_rank: int = 512  # mla: d_c, the latent each token's keys and values are compressed to (and cached)
    qk_nope_head_dim: int = 128  # mla: d_h, each head's query/key dims without RoPE
    v_head_dim: int = 128  # mla: each head's value dims
    mla_absorb: bool = True  # mla: decode steps attend in the latent (W_UK into q, W_UV into o, §2.1.2)
    # mla: DeepSeek Sparse Attention (layers/dsa.py; DeepSeek-V3.2, arXiv 2512.02556, §2.1): a lightning indexer
    # scores the earlier tokens and each query attends to its dsa_topk best only (V3.2, GLM-5: 2048); None: dense
    dsa_topk: int | None = None
    dsa_heads: int = 64  # dsa: the lightning indexer's heads H^I (V3.2: 64, GLM-5: 32)
    dsa_head_dim: int = 128  # dsa: the indexer's query and key width d^I, whose first head_dim dims carry RoPE
    # dsa: this layer has no indexer and reuses the selection of the last earlier layer that has one (GLM-5's
    # indexer_types 'shared'); set per layer type (layer_overrides)
    dsa_shared: bool = False
    # attention 'qsa' (Qwen4-Exp's QSA indexer; attention_kinds/qsa.py): each query attends to the qsa_budget tokens
    # of its best-scored complete blocks of qsa_block tokens, plus the last incomplete block
    qsa_heads: int = 8  # qsa: the indexer's query heads (its key has one head)
    qsa_head_dim: int = 128  # qsa: the indexer's query and key width, whose first RoPE dims turn as the attention's
    qsa_budget: int = 2048  # qsa: tokens of complete blocks each query may select (a multiple of qsa_block)
    qsa_block: int = 64  # qsa: consecutive tokens whose indexer keys are averaged into one block key
    # mla: queries times sqrt(d_model / q_lora_rank) and the normed KV latent times sqrt(d_model / kv_lora_rank)
    # (LongCat-Flash's mla_scale_q_lora, mla_scale_kv_lora)
    mla_lora_scale: bool = False
    mla_latent_eps: float | None = None  # mla: eps of the latents' RMSNorms (and mla_rope_key_norm's); None: 1e-6
    # mla: the shared RoPE key k^R through an RMSNorm of its own before RoPE (dots.llm3's k_rope_only_layernorm)
    mla_rope_key_norm: bool = False
    # mla with q_lora_rank: no q_b_proj; one up-projection of [norm(c^Q), c^Q] (2 q_lora_rank) gives each head its query
    # and an output gate g of v_head_dim, the head's output times sigmoid(g) before o_proj (A.X-K2's q_gate_proj)
    mla_q_gate: bool = False
    dsa_key_norm_eps: float = 1e-6  # dsa: the epsilon of the indexer's key LayerNorm (HY-V4: rms_norm_eps)
    # mla: this layer's queries and shared key have no rotated dims (d_h^R = 0, no k^R in kv_a_proj; its indexer turns
    # nothing either): Mistral Large 4's NoPE layers, whose qk_nope_head_dim then holds the whole q.k width
    mla_no_rope: bool = False
    # dsa: where the indexer's queries come from: compressed (the attention's normed c^Q: V3.2, GLM-5), or hidden
    # (a LayerNorm of the hidden state, with bias, eps 1e-6: Mistral Large 4, whose attention has no q_lora_rank)
    dsa_query: str = "compressed"
    # mla: each head's queries (and its indexer's) at position p times a_h ln(1 + p) + b_h, a_h and b_h learned per
    # head (Mistral Large 4's softmax_scaling, a learned form of the log-length scaling of attn_temp_scale)
    attn_log_pos_gain: bool = False
    # mixer 'shared_kv' (layers/shared_kv.py, DeepSeek-V4): the heads' outputs in o_groups groups, each projected to
    # o_lora_rank dims by its own matrix, then all groups mixed into d_model by one more (grouped output projection)
    o_groups: int = 1
    o_lora_rank: int | None = None  # mixer 'shared_kv': each output group's width d_g; None: d_model // o_groups
    # mixer 'bottleneck' (layers/bottleneck.py, MobileBERT's block): the width of its inner stream
    # (intra_bottleneck_size)
    bottleneck_dim: int = 0
    # mixer 'bottleneck': what attention reads. shared_qk: queries and keys a second bottleneck of the block's input,
    # values the input itself (key_query_shared_bottleneck); inner: q, k, v the inner stream
    # (use_bottleneck_attention); input: q, k, v the block's input
    bottleneck_qkv: str = "shared_qk"
    # mixer 'bottleneck': post-norm FFNs stacked on the inner stream (num_feedforward_networks)
    bottleneck_ffns: int = 1
    span_conv_kernel: int = 9  # mixer 'mixed_attention': taps k of ConvBERT's span-based dynamic convolution (odd)
    # mixer 'mixed_attention': n_heads / this heads, each half attention and half convolution (ConvBERT's head_ratio)
    span_conv_head_ratio: int = 2
    hyena_order: int = 2  # N: long convolutions, each followed by a gate (Poli et al. 2023, Def. 3.1)
    hyena_filter_hidden: int = 64  # width of the implicit filter's FFN
    hyena_filter_features: int = 33  # positional features fed to it: t, and cos/sin of 16 frequencies
    hyena_short_conv: int = 3  # kernel of the short depthwise convolution on the projections
    # Gated DeltaNet and Kimi Delta Attention (layers/gated_deltanet.py, kda.py; their convolution, biases and chunk
    # are the ssm_conv, ssm_conv_bias, ssm_bias and ssm_chunk above). None: n_heads, delta_heads, head_dim,
    # delta_key_dim. kda: one count and width of heads (value heads and dims as the key ones); mlstm: heads, q/k and v
    # head widths (its value heads as many as the key heads)
    delta_heads: int | None = None  # query/key heads (Qwen3-Next's linear_num_key_heads, Kimi's linear_num_heads)
    delta_value_heads: int | None = None  # value heads, a multiple of delta_heads (linear_num_value_heads)
    delta_key_dim: int | None = None  # dims of each query/key head (linear_key_head_dim; Kimi's linear_head_dim)
    delta_value_dim: int | None = None  # dims of each value head (linear_value_head_dim)
    # gated_deltanet: beta = 2 sigmoid(b) in [0, 2], so the transition I - beta k k^T may have negative eigenvalues
    # (Grazzi et al. 2025, "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues"; OLMo Hybrid)
    delta_neg_eigval: bool = False
    delta_norm_eps: float | None = None  # gated_deltanet: eps of its gated output RMSNorm; None: norm_eps
    # the mLSTM (mixer "mlstm", layers/mlstm.py; xLSTM-7B): its input and forget gates' pre-activations soft-capped,
    # cap * tanh(x / cap) (xLSTM-7B's gate_soft_cap: 15); None: uncapped. Its heads and their q/k and v widths are
    # n_heads (or delta_heads), head_dim (or delta_key_dim) and delta_value_dim
    mlstm_gate_softcap: float | None = None
    mlstm_eps: float = 1e-6  # mlstm: eps added to its stabilised denominator, max(|n.q|, exp(-m)) + eps (xLSTM's eps)
    # kda: the decay's and the output gate's projections full-rank, f_proj and g_proj (d_model to heads x d_k: Ling
    # 3's); False: low-rank through d_k, f_a_proj f_b_proj and g_a_proj g_b_proj (Kimi Linear)
    kda_full_gates: bool = False
    # kda: None, each step's log-decay g = -exp(A) softplus(f + dt_bias) (Kimi Linear, arXiv 2510.26692 §3); a
    # negative bound b, g = b sigmoid(exp(A) (f + dt_bias)), so the decay exp(g) stays within [e^b, 1] however large
    # f grows (Ling 3's safe gate: kda_safe_gate, kda_lower_bound)
    kda_gate_bound: float | None = None
    # mixer 'cca' (layers/cca.py; ZAYA1's Compressed Convolutional Attention, arXiv 2510.04476): the taps of the
    # depthwise causal convolution over the projected queries and keys (cca_time0), and of the causal convolution
    # after it that mixes the channels of each head (cca_time1)
    cca_conv: int = 2  # cca: taps of the depthwise causal convolution over the projected queries and keys
    cca_group_conv: int = 2  # cca: taps of the causal convolution mixing the channels of each head after it
    # Griffin's recurrent block (mixer "rglru", layers/rglru.py: its convolution and biases are ssm_conv,
    # ssm_conv_bias and ssm_bias, its gates n_heads blocks): the RG-LRU's width; None: d_model (RecurrentGemma)
    lru_width: int | None = None
    # RWKV-7's time mixing (mixer "rwkv7", layers/rwkv7.py; Peng et al. 2025, arXiv 2503.14456 §4): heads of head_dim
    # channels (n_heads x head_dim = d_model), and the ranks of its low-rank (LoRA) maps; None: RWKV-7's sizes from
    # d_model, max(1, round(d^e m / 32)) 32 with (e, m) (0.5, 1.8) for the decay and the in-context learning rate,
    # (0.5, 1.3) for the value residual gate, (0.8, 0.6) for the output gate (the released models' and llama.cpp's
    # converter's rule)
    rwkv7_decay_rank: int | None = None  # rwkv7: rank of the decay's LoRA, w = w0 + W2 tanh(W1 x_w)
    rwkv7_iclr_rank: int | None = None  # rwkv7: rank of the in-context learning rate's LoRA, sigmoid(a0 + A2 A1 x_a)
    rwkv7_value_rank: int | None = None  # rwkv7: rank of the value residual gate's LoRA, sigmoid(v0 + V2 V1 x_v)
    rwkv7_gate_rank: int | None = None  # rwkv7: rank of the output gate's LoRA, g = G2 sigmoid(G1 x_g)
    # rwkv7: eps of the per-head group norm on the WKV output (64e-5: RWKV-LM's GroupNorm and llama.cpp's, whatever
    # the head width; flash-linear-attention's is head_dim x norm_eps)
    rwkv7_group_norm_eps: float = 64e-5
    # rwkv7: the output gate g = G2 sigmoid(G1 x^g) and its token-shift lerp (RWKV-7's); False: none (ARWKV's
    # wkv_has_gate: false)
    rwkv7_gate: bool = True
    rwkv7_group_norm: bool = True  # rwkv7: the per-head group norm on the WKV output (RWKV-7's ln_x); False: none
    # RWKV-6's time mixing (mixer "rwkv6", layers/rwkv6.py; Peng et al. 2024, arXiv 2404.05892 §4): heads of head_dim
    # channels (n_heads x head_dim = d_model) and the ranks of its two LoRAs (32 and 64 in the released models below
    # 4096 wide, 64 and 128 at 4096: llama.cpp's time_mix_extra_dim and time_decay_extra_dim)
    rwkv6_mix_rank: int = 32  # rwkv6: rank of the data-dependent token shift's LoRA (ddlerp), tanh(x W1) W2
    rwkv6_decay_rank: int = 64  # rwkv6: rank of the decay's LoRA, d = d0 + tanh(x_w D1) D2
    # rwkv6: QRWKV6's time mixing (llama.cpp's rwkv6qwen2 without time_mix_first): no bonus, keys scaled by 1 - w, the
    # state read after the current token's update at D^-1/2, a sigmoid gate, no group norm; keys and values of
    # n_kv_heads heads, biases on r, k, v by qkv_bias (rwkv6's own too)
    rwkv6_qrwkv: bool = False
    context_length: int = 1024  # longest sequence: positions, caches and training windows
    # which keys each query sees and how (layers/sparse_attention.py, layers/linear_attention.py): full,
    # sliding_window (needs sliding_window), strided, block_sparse, longformer (sliding_window + global tokens
    # from the forward's global_attention_mask), lsh, linear, performer, chunked, differential (two softmax maps
    # subtracted, Differential Transformer: even n_kv_heads), lightning (MiniMax-01's linear attention with a decay
    # per head, computed in blocks of attention_block; n_kv_heads = n_heads), lsh_chunks and local_chunks
    # (Reformer's, as transformers computes them); None: sliding_window if a window is set
    attention: str | None = None
    # full attention's kernel (layers/attention.py): sdpa (fused) or eager (materialises weights)
    attn_impl: str = "sdpa"
    # strided: the stride l; block_sparse, bigbird: the block; lightning: its blocks; the blockwise kernels' query block
    attention_block: int = 64
    # dynamic_mask (Doge's dynamic mask attention, attention_kinds/dynamic_mask.py): once more keys than this, each
    # query keeps only this many, those of the highest learned bias (Doge's keep_window_size)
    dma_keep: int = 2048
    strided_summary: int = 8  # strided: the last c positions of each block that every later query sees
    global_blocks: int = 2  # block_sparse: leading blocks that see and are seen by everything (BigBird)
    # block_sparse: random key blocks per query block, drawn per layer from attention_seed; bigbird: r, each block 0
    # again (transformers' eval), and full attention up to (5 + 2r) blocks
    random_blocks: int = 3
    performer_features: int = 256  # performer: random features m per head
    lsh_buckets: int = 8  # lsh, lsh_chunks: hash buckets per round (even); lsh's chunk is attention_block
    lsh_rounds: int = 4  # lsh, lsh_chunks: independent hashing rounds, merged into one softmax
    # nystrom (Nystromformer, Xiong et al. 2021): m landmarks, the means of m equal segments of the queries and keys;
    # m = nystrom_seq_len: exact softmax attention
    nystrom_landmarks: int = 64
    nystrom_seq_len: int = 64  # nystrom: the sequence length its landmark segments assume (inputs padded to it)
    # yoso (YOSO, Zeng et al. 2021): tau, the bits of its hash; a query's weight on a key is their collision
    # probability (1 - angle / pi)^tau
    yoso_hash_len: int = 9
    # mra (MRA-2, Zeng et al. 2022): the (query block, key block) pairs of attention_block tokens each head computes
    # at full resolution, those of the highest block-mean scores after the priors below
    mra_blocks: int = 64
    mra_approx: str = "full"  # mra: full (the other pairs at block resolution) or sparse (the chosen pairs alone)
    mra_first_blocks: int = 0  # mra: the first block rows and columns chosen before the scores (a prior)
    mra_diagonal_blocks: int = 0  # mra: a band this wide around the diagonal chosen before the scores (a prior)
    # nystrom, yoso: a depthwise convolution of this (odd) kernel over each head's values along the sequence, one
    # kernel per head, added to the attention's output (Nystromformer's conv_kernel_size, YOSO's conv_window); 0: none
    value_conv: int = 0
    # block_sparse's random blocks and performer's features, + the layer index; lsh_chunks: its rotations, the same in
    # every layer (transformers' hash_seed)
    attention_seed: int = 0
    init_std: float = 0.02  # standard deviation of the normal init
    # normal: N(0, init_std), residual outputs scaled (GPT-2); fan_in: N(0, 1/fan_in), embeddings N(0, 1)
    # (PaLM §5); t5: fan_in with queries also scaled by head_dim^-0.5 (Mesh TensorFlow)
    init: str = "normal"
    # Per-layer types (Gemma 2/3's sliding and full layers, SmolLM3's NoPE layers, Qwen3-Next's linear and full
    # attention): layer_types names each block's type, layer_overrides gives the fields a type changes (only the
    # LAYER_FIELDS below). A type without overrides is the config as it is. Block i is built from for_layer(i).
    # An encoder-decoder lists n_layers + n_decoder_layers types: the encoder's blocks, then the decoder's.
    layer_types: list | None = None
    layer_overrides: dict | None = None  # layer type -> the fields it changes (see layer_types)
    hf_model_type: str | None = None  # the Hugging Face `model_type` this config exports to (interop/)
    # image inputs (LLaVA, PaliGemma): the vision tower, projector and image token, as vision/config.py's
    # VisionConfig fields, or with tower 'qwen_vl' vision/qwen_config.py's (Qwen2-VL to Qwen3-VL); None: text only
    vision: dict | None = None
    # audio inputs (Qwen2-Audio, Voxtral): the Whisper-style encoder, projector and audio token, as audio/config.py's
    # AudioConfig fields; None: no audio
    audio: dict | None = None
    # prefix-LM (PaliGemma; Raffel et al. 2020, §3.2.1): the prompt, image and text, attends bidirectionally within
    # itself when generating; what follows is causal. A forward gives its prefix as prefix_mask (none given: causal;
    # with prefix_bidirectional, CPM-Ant's, the whole call)
    prefix_lm: bool = False
    # the token whose runs in one call each attend to themselves both ways, the rest causal (Gemma 3's image tokens:
    # transformers' token_type_ids blocks, on full and sliding layers alike); None: none
    bidirectional_token: int | None = None
    # with bidirectional_token: its blocks only on the sliding-window layers, the full layers causal (Gemma 4's
    # create_masks_for_vision_model: AND(window, OR(causal, block)) on sliding layers, causal on full ones)
    bidirectional_sliding: bool = False

    def __post_init__(self) -> None:
        # Remember which fields were derived, so replace(n_heads=...) derives them again.
        self._derived = frozenset(n for n in _DERIVED if getattr(self, n) is None)
        self._check_types()
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.head_dim is None:
            if self.n_heads > 0 and self.d_model % self.n_heads:
                raise LlmarchError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads} (or give head_dim)"
                )
            self.head_dim = self.d_model // max(self.n_heads, 1)
        if self.ffn_hidden is None:
            self.ffn_hidden = 4 * self.d_model
        if self.final_norm is None:
            self.final_norm = self.norm_placement != "post"
        if self.qkv_bias is None:
            self.qkv_bias = self.bias
        if self.o_bias is None:
            self.o_bias = self.bias
        if self.ffn_in_bias is None:
            self.ffn_in_bias = self.bias
        if self.expert_proj_bias is None:
            self.expert_proj_bias = self.bias
        if self.attention in _IMPLS:  # configs written before kinds existed named the kernel `attention`
            self.attn_impl, self.attention = self.attention, None
        if self.attention is None:
            self.attention = "full" if self.sliding_window is None else "sliding_window"
        if self.expert_hidden is None:
            self.expert_hidden = self.ffn_hidden
        if self.shared_hidden is None:
            self.shared_hidden = self.n_shared_experts * self.expert_hidden
        if self.ssm_dt_rank is None:
            self.ssm_dt_rank = -(-self.d_model // 16)
        self.validate()

    def _validate_embed_dim(self) -> None:
        if self.token_dropout_id is not None and (self.causal or self.n_decoder_layers or not (
                0 <= self.token_dropout_id < self.vocab_size)):
            raise LlmarchError(f"token_dropout_id={self.token_dropout_id} needs an encoder-only model and a token id "
                               "in the vocabulary")
        if self.output_embed_dim is not None and self.output_embed_dim != self.embed_width and self.head == "lm" and (
                self.output_embed_dim <= 0 or not self.head_transform or self.tied_head or self.head_mlp):
            raise LlmarchError(f"output_embed_dim={self.output_embed_dim} needs, on an LM head, a positive width, "
                               "head_transform (without head_mlp) and an untied head (tie_embeddings=False)")
        if self.token_proj and (self.n_decoder_layers or self.ple_dim or self.decoder_embed_norm_first):
            raise LlmarchError("token_proj (a map of the token embeddings) is for encoder-only and decoder-only stacks "
                               "without per-layer inputs or decoder_embed_norm_first")
        if self.embed_proj and (self.n_decoder_layers or self.ple_dim or self.embed_scale):
            raise LlmarchError("embed_proj (a projected embedding) is for encoder-only and decoder-only stacks without "
                               "per-layer inputs or embed_scale")
        if self.embed_dim is None or self.embed_dim == self.d_model:
            return
        if self.embed_dim <= 0:
            raise LlmarchError(f"embed_dim must be positive, got {self.embed_dim}")
        if self.n_decoder_layers or self.ple_dim or self.embed_scale:
            raise LlmarchError(f"embed_dim={self.embed_dim} (a projected embedding) is for encoder-only and "
                               "decoder-only stacks without per-layer inputs or embed_scale")
        if self.tied_head and not self.head_transform:
            raise LlmarchError(f"embed_dim={self.embed_dim} with a tied LM head needs head_transform, which projects "
                               "back to the embedding width")

    @property
    def output_embed_width(self) -> int:
        """Width of the LM head transform's output: output_embed_dim, or the embedding width."""
        return self.output_embed_dim or self.embed_width

    @property
    def embed_width(self) -> int:
        """Width of the input embeddings: embed_dim, or d_model."""
        return self.embed_dim or self.d_model

    @property
    def final_width(self) -> int:
        """Width of the final norm and of what the LM head reads: the streams side by side (hc_side_by_side) or
        d_model."""
        return self.d_model * self.hc_streams if self.hc_side_by_side else self.d_model

    @property
    def sum_width(self) -> int:
        """Width at which positions and token types join the token embeddings, and of embed_norm: d_model where
        embed_input projects the token embeddings first, else the embedding width."""
        return self.d_model if self.embed_input != "token" else self.embed_width

    def _check_types(self) -> None:
        optional = {f.name for f in fields(self) if "None" in str(f.type)}
        for name, kind in field_types().items():
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if kind in (list, dict):
                if not isinstance(value, (list, tuple) if kind is list else dict):
                    raise LlmarchError(f"{name} must be a {kind.__name__}, got {value!r}")
                continue
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
                ok = True
            if not ok:
                article = "an integer" if kind is int else f"a {kind.__name__}"
                raise LlmarchError(f"{name} must be {article}, got {value!r}")
            if kind is float and not math.isfinite(value):  # a NaN passes every range check after this
                raise LlmarchError(f"{name} must be a finite number, got {value!r}")
            if kind is int and abs(value) >= 2**63:  # past a C long: torch overflows
                raise LlmarchError(f"{name} is out of range, got {value!r}")

    def validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_hidden",
                     "context_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LlmarchError(f"{name} must be a positive integer, got {value!r}")
        if self.value_dim is not None and self.value_dim <= 0:
            raise LlmarchError(f"value_dim must be a positive integer (or None: head_dim), got {self.value_dim}")
        if self.n_heads % self.n_kv_heads:
            raise LlmarchError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise LlmarchError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm_eps <= 0 or (self.final_norm_eps is not None and self.final_norm_eps <= 0):
            raise LlmarchError(f"norm_eps and final_norm_eps must be positive, got {self.norm_eps} and "
                               f"{self.final_norm_eps}")
        if self.norm_placement not in NORM_PLACEMENTS:
            raise LlmarchError(f"unknown norm_placement {self.norm_placement!r}; "
                               f"choose one of: {', '.join(sorted(NORM_PLACEMENTS))}")
        if self.block not in ("sequential", "parallel"):
            raise LlmarchError(f"unknown block {self.block!r}; choose one of: parallel, sequential")
        if self.ple_dim < 0 or (self.ple_dim and (self.block != "sequential" or self.n_decoder_layers
                                                   or (self.ple_vocab or self.vocab_size) <= 0
                                                   or self.ffn not in FFN_ACTIVATION)):
            raise LlmarchError(f"ple_dim={self.ple_dim}: per-layer input embeddings need a sequential decoder-only "
                               f"or encoder-only stack, a positive ple_vocab and an FFN with an activation")
        ids = self.placeholder_ids
        if ids is not None and (self.codebooks or not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.vocab_size for i in ids)):
            raise LlmarchError(f"placeholder_ids={self.placeholder_ids!r}: a list of token ids (no codebooks)")
        if self.layer_scalar and self.block != "sequential":
            raise LlmarchError("layer_scalar scales a sequential block's output; block='parallel' has none")
        check_residual_mix(self)
        check_vision(self)
        check_audio(self)
        if self.prefix_lm and (not self.causal or self.is_encoder_decoder):
            raise LlmarchError("prefix_lm makes a causal decoder's prompt bidirectional; this config is not one")
        if self.bidirectional_sliding and self.bidirectional_token is None:
            raise LlmarchError("bidirectional_sliding limits bidirectional_token's blocks to sliding layers: set both")
        if self.bidirectional_token is not None:
            kinds = {(o.get("mixer", self.mixer), o.get("attention", self.attention))
                     for o in [{}, *(self.layer_overrides or {}).values()]}
            if not self.causal or self.is_encoder_decoder or self.task_prompt or not kinds <= {
                    ("attention", "full"), ("attention", "sliding_window")}:
                raise LlmarchError("bidirectional_token needs a causal decoder without prompt tokens (task_prompt) "
                                   "whose layers all attend by 'full' or 'sliding_window' attention")
        if self.norm_gate_rank < 0 or (self.norm_gate_rank and (
                self.block != "sequential" or self.norm_placement != "pre" or self.hyper_connection != "none"
                or self.laurel_rank or self.altup_streams > 1 or not self.first_mixer_norm)):
            raise LlmarchError(f"norm_gate_rank={self.norm_gate_rank} must be >= 0, and > 0 only in sequential "
                               "pre-norm blocks (no hyper-connections, LAuReL, AltUp, or first block without its norm)")
        if self.block == "parallel" and self.residual_alpha != 1.0:
            raise LlmarchError(f"residual_alpha={self.residual_alpha} scales a sequential block's residual adds; "
                               "block='parallel' has one add")
        if self.block == "parallel" and self.norm_placement != "pre":
            raise LlmarchError(f"block='parallel' needs norm_placement='pre', got {self.norm_placement!r}")
        if self.final_softcap is not None and (self.final_softcap <= 0 or self.head != "lm"):
            raise LlmarchError(f"final_softcap={self.final_softcap} must be positive, on an LM head "
                               f"(head={self.head!r})")
        if self.decoder_embed_norm_first and not (self.embed_norm and self.causal):
            raise LlmarchError("decoder_embed_norm_first moves a decoder's embed_norm before its positions: it needs "
                               "embed_norm and a causal stack")
        if self.encoder_vocab_size is not None and (not self.encoder_embed or self.encoder_vocab_size < 1):
            raise LlmarchError(f"encoder_vocab_size={self.encoder_vocab_size} sizes the encoder's own table: it needs "
                               "encoder_embed and at least one row")
        if self.decoder_context_length is not None and (not self.n_decoder_layers or self.decoder_context_length < 1):
            raise LlmarchError(f"decoder_context_length={self.decoder_context_length} bounds an encoder-decoder's "
                               "decoder (n_decoder_layers > 0): it must be positive")
        if self.ngram_streams < 0:
            raise LlmarchError(f"ngram_streams must be >= 0, got {self.ngram_streams}")
        bad = sorted(set(self.decoder_overrides or {}) - set(DECODER_FIELDS))
        if self.decoder_overrides is not None and (bad or not self.n_decoder_layers):
            raise LlmarchError("decoder_overrides sets an encoder-decoder's decoder stack apart (n_decoder_layers > 0) "
                               f"in the fields {', '.join(DECODER_FIELDS)}" + (f", not {bad[0]}" if bad else ""))
        if self.patch_stacks is not None:
            self._check_patch_stacks()
        if self.n_latents or self.latent_parts is not None:
            self._check_latent_parts()
        if self.encoder_embed and not self.n_decoder_layers:
            raise LlmarchError("encoder_embed (an encoder's own embedding table) is for encoder-decoders "
                               "(n_decoder_layers > 0)")
        for name in ("embed_multiplier", "residual_multiplier", "residual_alpha", "logit_divisor",
                     "attn_key_multiplier", "attn_value_multiplier", "ffn_gate_multiplier", "ffn_out_multiplier"):
            if getattr(self, name) <= 0:
                raise LlmarchError(f"{name} must be positive, got {getattr(self, name)}")
        if self.logit_divisor != 1.0 and (self.head != "lm" or self.n_decoder_layers):
            raise LlmarchError(f"logit_divisor={self.logit_divisor} divides the LM head's logits of a decoder-only or "
                               f"encoder-only model (head={self.head!r}, n_decoder_layers={self.n_decoder_layers})")
        if not self.first_mixer_norm and self.norm_placement not in ("pre", "sandwich"):
            raise LlmarchError(f"first_mixer_norm=False drops a pre-norm, which norm_placement="
                               f"{self.norm_placement!r} does not have")
        if self.shared_norm and self.block != "parallel":
            raise LlmarchError("shared_norm needs block='parallel' (a sequential block normalises twice)")
        if self.qk_norm not in QK_NORMS:
            raise LlmarchError(f"unknown qk_norm {self.qk_norm!r}; choose one of: {', '.join(QK_NORMS)}")
        self._validate_suppressed_logits()
        if self.bitlinear not in BITLINEARS:
            raise LlmarchError(f"unknown bitlinear {self.bitlinear!r}; choose one of: {', '.join(BITLINEARS)}")
        typed = any({"mixer", "ffn", "n_experts", "expert_ffn"} & set(f) for f in (self.layer_overrides or {}).values())
        if (self.sub_norm or self.bitlinear != "none") and (self.n_decoder_layers or self.block != "sequential"
                                                            or self.mixer != "attention" or self.attn_period
                                                            or self.n_experts or typed):
            raise LlmarchError("sub_norm and bitlinear are for a sequential decoder-only or encoder-only stack of "
                               "attention layers with dense FFNs (BitNet b1.58; layer types may change the "
                               "attention, not the mixer or FFN)")
        self._validate_layer_types()
        self._validate_kv_sharing()
        self._validate_moe()
        self._validate_attention()
        self._validate_mixers()
        from .layers import ATTENTION, FFNS, NORMS, POSITIONS

        for registry, value in ((FFNS, self.ffn), (NORMS, self.norm), (POSITIONS, self.positions),
                                (ATTENTION, self.attn_impl)):
            registry[value]  # raises a one-line error naming the choices
        if self.positions == "rope" and self.rotary_dim % 2:
            raise LlmarchError(f"rope needs an even number of rotated dims, got {self.rotary_dim}")
        if not 0.0 < self.rope_fraction <= 1.0:
            raise LlmarchError(f"rope_fraction must be in (0, 1], got {self.rope_fraction}")
        if self.rope_scaling not in ROPE_SCALINGS:
            raise LlmarchError(f"unknown rope_scaling {self.rope_scaling!r}; "
                               f"choose one of: {', '.join(sorted(ROPE_SCALINGS))}")
        if self.rope_scaling == "yarn" and not (self.rope_factor > 0 and self.rope_beta_fast > 0
                                                and self.rope_beta_slow > 0):
            raise LlmarchError(f"rope_scaling='yarn' needs positive rope_factor, rope_beta_fast and rope_beta_slow, "
                               f"got {self.rope_factor}, {self.rope_beta_fast} and {self.rope_beta_slow}")
        check_ffn(self)
        if self.qkv_groups != 1 and self.mixer != "attention":
            raise LlmarchError(f"qkv_groups={self.qkv_groups} groups attention's q, k and v: mixer 'attention' only")
        if self.attn_q_gain and self.mixer != "attention":
            raise LlmarchError("attn_q_gain scales attention's rotated queries: mixer 'attention' only")
        check_altup(self)
        check_hyper(self)
        check_side_conv(self)
        check_lang_adapters(self)
        check_table_types(self)
        check_canon(self)
        check_depth_attention(self)
        check_recurrence(self)
        check_input_proj(self)
        check_encoder_input(self)
        self._validate_longrope()
        self._validate_mrope()
        self._validate_alibi()
        if min(self.type_vocab_size, self.position_offset, self.task_type_vocab_size, self.lang_vocab_size,
               self.box_vocab_size) < 0:
            raise LlmarchError("type_vocab_size, task_type_vocab_size, lang_vocab_size, box_vocab_size and "
                               "position_offset must be >= 0")
        if self.codebooks < 0 or self.codebooks and (self.head != "lm" or self.tie_embeddings or self.n_decoder_layers
                                                     or not self.causal or self.vision is not None):
            raise LlmarchError(f"codebooks={self.codebooks} (parallel token streams) needs a decoder-only model with "
                               "an untied LM head and no vision tower, and codebooks >= 0")
        if self.held_cross_width < 0 or self.held_cross_width and (self.n_decoder_layers or not self.causal):
            raise LlmarchError("held_cross_width (a cross-attention sublayer each block holds and never runs) needs a "
                               "decoder-only model and a width >= 0")
        if not self.pooler and self.head == "detect":
            raise LlmarchError("head 'detect' reads each token through the pooler: it needs pooler=True")
        if not 0 <= self.default_token_type < max(self.type_vocab_size, 1):
            raise LlmarchError(f"default_token_type={self.default_token_type} is not a token type of type_vocab_size="
                               f"{self.type_vocab_size}")
        if self.task_prompt < 0 or self.task_prompt and not (
                0 <= self.task_prompt_id <= self.vocab_size - self.task_prompt and self.type_vocab_size
                and not self.n_decoder_layers and self.head == "lm"):
            raise LlmarchError(f"task_prompt={self.task_prompt} needs task_prompt_id={self.task_prompt_id} .. + "
                               f"P - 1 within vocab_size={self.vocab_size}, token types, and a single-stack LM")
        if self.prefix_bidirectional and not self.causal:
            raise LlmarchError("prefix_bidirectional=True is a causal stack's (causal=True)")
        if self.positions == "segment_relative" and not self.type_vocab_size:
            raise LlmarchError("positions='segment_relative' needs token types (type_vocab_size), its segments")
        if self.head not in HEADS:
            raise LlmarchError(f"unknown head {self.head!r}; choose one of: {', '.join(HEADS)}")
        if self.pooler_act not in ("tanh", "relu", "gelu"):
            raise LlmarchError(f"unknown pooler_act {self.pooler_act!r}; choose one of: tanh, relu, gelu")
        if self.head_vocab is not None and not (0 < self.head_vocab <= self.vocab_size and self.head == "lm"
                                                and not self.tie_embeddings and not self.n_decoder_layers):
            raise LlmarchError(f"head_vocab={self.head_vocab} needs an untied LM head of a decoder-only or "
                               f"encoder-only model, and 1 <= head_vocab <= vocab_size={self.vocab_size}")
        if self.head == "detect" and self.classifier_transform:
            raise LlmarchError("head 'detect' reads each token through the pooler, not classifier_transform")
        self._validate_embed_dim()
        check_head(self)
        if self.pooling not in POOLINGS:
            raise LlmarchError(f"unknown pooling {self.pooling!r}; choose one of: {', '.join(POOLINGS)}")
        if self.n_labels <= 0:
            raise LlmarchError(f"n_labels must be positive, got {self.n_labels}")
        if self.init not in ("normal", "fan_in", "t5"):
            raise LlmarchError(f"unknown init {self.init!r}; choose one of: fan_in, normal, t5")
        if self.n_decoder_layers and self.block == "parallel":
            raise LlmarchError("encoder-decoders are built with block='sequential'")
        if self.n_decoder_layers and self.value_width != self.head_dim:
            raise LlmarchError(f"value_dim={self.value_width} (not head_dim) is for decoder-only and encoder-only "
                               "stacks: cross-attention's values are head_dim wide")
        if self.n_decoder_layers < 0:
            raise LlmarchError(f"n_decoder_layers must be >= 0, got {self.n_decoder_layers}")
        if self.n_decoder_layers and (self.head != "lm" or not self.causal):
            raise LlmarchError("an encoder-decoder (n_decoder_layers > 0) needs head='lm' and causal=True "
                               "(its decoder is causal; its encoder is always bidirectional)")
        if self.relative_buckets < 2 or self.relative_max_distance < 1:
            raise LlmarchError("relative_buckets must be >= 2 and relative_max_distance >= 1")
        if self.global_tokens < 0 or (self.global_tokens and self.causal and not self.n_decoder_layers):
            raise LlmarchError(f"global_tokens={self.global_tokens}: global tokens see every token, so they are a "
                               "bidirectional stack's (an encoder's), and their count must be >= 0")
        if self.global_block_size < 0:
            raise LlmarchError(f"global_block_size must be >= 0, got {self.global_block_size}")
        if self.layer_groups_cyclic and (not self.layer_groups or self.n_layers % self.layer_groups):
            raise LlmarchError(f"layer_groups_cyclic repeats the layer_groups blocks in order: it needs layer_groups "
                               f"dividing n_layers, got {self.layer_groups} and {self.n_layers}")
        if self.layer_groups and not (0 < self.layer_groups <= self.n_layers and not self.causal
                                      and self.layer_types is None and not self.n_decoder_layers):
            raise LlmarchError(f"layer_groups={self.layer_groups} needs 1..n_layers ({self.n_layers}) groups in an "
                               "encoder (causal=False: a shared block holds one decode state) without layer_types")
        if self.relative_bias_per_layer and self.positions != "t5_relative":  # learned_t5_relative: one table
            raise LlmarchError("relative_bias_per_layer needs positions='t5_relative'")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise LlmarchError(f"sliding_window must be positive, got {self.sliding_window}")
        if self.window_ahead is not None and (self.window_ahead < 0 or self.sliding_window is None
                                              or self.attention != "sliding_window"):
            raise LlmarchError(f"window_ahead={self.window_ahead} is a bidirectional sliding window's reach ahead: "
                               "non-negative, with attention 'sliding_window' (a causal stack never reads it)")
        if self.attn_temp_power < 0 or (self.attn_temp_power and self.attn_temp_scale):
            raise LlmarchError(f"attn_temp_power={self.attn_temp_power} must be >= 0 and not beside attn_temp_scale="
                               f"{self.attn_temp_scale} (one form of the query scaling)")
        if self.attn_temp_scale < 0 or self.attn_temp_floor <= 0 or self.attn_temp_shift < 0:
            raise LlmarchError(f"attn_temp_scale and attn_temp_shift must be >= 0 and attn_temp_floor positive, got "
                               f"{self.attn_temp_scale}, {self.attn_temp_shift} and {self.attn_temp_floor}")

    def _validate_longrope(self) -> None:
        factors = ("rope_short_factor", "rope_long_factor")
        # a NoPE layer type of a model whose other layers turn (Mistral Large 4) keeps the field, unread
        if self.rope_learned_freqs and (self.positions not in ("rope", "none")
                                        or self.rope_scaling in ("dynamic", "longrope")):
            raise LlmarchError("rope_learned_freqs scales fixed RoPE frequencies: positions 'rope' without dynamic "
                               f"or longrope scaling, not {self.positions!r} with {self.rope_scaling!r}")
        if self.rope_attn_factor is not None and self.rope_scaling not in ("yarn", "longrope"):
            raise LlmarchError(f"rope_attn_factor goes with rope_scaling 'yarn' or 'longrope', not "
                               f"{self.rope_scaling!r}")
        if self.rope_scaling != "longrope":
            given = next((f for f in factors if getattr(self, f) is not None), None)
            if given:
                raise LlmarchError(f"{given} goes with rope_scaling='longrope', not {self.rope_scaling!r}")
            return
        for name in factors:
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != self.rotary_dim // 2 or not all(
                    isinstance(v, (int, float)) and v > 0 for v in value):
                raise LlmarchError(f"rope_scaling='longrope' needs {name}: {self.rotary_dim // 2} positive numbers "
                                   f"(one per rotated pair), got {value!r}")
        if self.rope_original_context is None:
            raise LlmarchError("rope_scaling='longrope' needs rope_original_context (the pretraining context)")
        if self.rope_attn_factor is not None and self.rope_attn_factor <= 0:
            raise LlmarchError(f"rope_attn_factor must be positive, got {self.rope_attn_factor}")

    def _validate_mrope(self) -> None:
        section = self.mrope_section
        if section is None:
            if self.mrope_interleaved:
                raise LlmarchError("mrope_interleaved orders mrope_section's frequencies; set mrope_section")
            return
        if self.positions != "rope" or not isinstance(section, (list, tuple)) or len(section) != 3 or not all(
                isinstance(n, int) and n >= 0 for n in section) or sum(section) != self.rotary_dim // 2:
            raise LlmarchError(f"mrope_section must be three counts (temporal, height, width) summing to the "
                               f"{self.rotary_dim // 2} rotated pairs of each head (positions 'rope'), got {section!r}")

    def _validate_alibi(self) -> None:
        if self.alibi_scale <= 0:
            raise LlmarchError(f"alibi_scale must be positive, got {self.alibi_scale}")
        if self.positions != "alibi" and (self.alibi_scale != 1.0 or self.alibi_bf16):
            raise LlmarchError(f"alibi_scale and alibi_bf16 go with positions='alibi', not {self.positions!r}")
        if self.positions != "alibi" and self.alibi_symmetric:
            raise LlmarchError(f"alibi_symmetric goes with positions='alibi', not {self.positions!r}")
        if self.positions == "alibi" and self.alibi_symmetric == self.causal:
            # the causal bias is added as m * pos(key), which equals -m * (i - j) up to a per-query constant only
            # when every key is at or before its query; a bidirectional encoder takes -m |i - j| instead
            raise LlmarchError("positions='alibi' needs causal=True, or causal=False with alibi_symmetric=True "
                               f"(-m |i - j|, JinaBERT-v2's); got causal={self.causal}")

    def _validate_suppressed_logits(self) -> None:
        if self.suppressed_logits is None:
            return
        ids = self.head_vocab or self.vocab_size
        try:
            ranges = [[int(a), int(b)] for a, b in self.suppressed_logits]
        except (TypeError, ValueError):  # not pairs of integers
            ranges = None
        if ranges is None or self.head != "lm" or self.codebooks or any(not 0 <= a < b <= ids for a, b in ranges):
            raise LlmarchError(f"suppressed_logits {self.suppressed_logits} needs an LM head of one stream and "
                               f"[start, stop) ranges within its {ids} ids")
        self.suppressed_logits = ranges

    def _validate_layer_types(self) -> None:
        types, overrides = self.layer_types, self.layer_overrides or {}
        if types is None:
            if overrides:
                raise LlmarchError("layer_overrides needs layer_types (which type each layer is)")
            return
        self.layer_types = types = [str(t) for t in types]
        if len(types) != self.n_layers + self.n_decoder_layers:  # an encoder-decoder: the encoder's, the decoder's
            raise LlmarchError(f"layer_types has {len(types)} entries for n_layers={self.n_layers}"
                               + (f" + n_decoder_layers={self.n_decoder_layers}" if self.n_decoder_layers else ""))
        for t, fields_ in overrides.items():
            if t not in types:
                raise LlmarchError(f"layer_overrides names type {t!r}, which no layer in layer_types has")
            if not isinstance(fields_, dict):
                raise LlmarchError(f"layer_overrides[{t!r}] must be a mapping of field names to values")
            bad = sorted(set(fields_) - set(LAYER_FIELDS))
            if bad:
                raise LlmarchError(f"layer_overrides[{t!r}] sets {bad[0]}, which cannot vary per layer "
                                   f"(these can: {', '.join(LAYER_FIELDS)})")
            positions = fields_.get("positions", self.positions)
            if positions != self.positions and not {positions, self.positions} <= {"rope", "none"}:
                raise LlmarchError(f"layer_overrides[{t!r}]: positions may vary per layer between rope and none "
                                   f"only (got {self.positions} and {positions})")
        self._layer_cfgs = {}
        for t, fields_ in overrides.items():
            if "sliding_window" in fields_ and "attention" not in fields_ and self.attention in ("full",
                                                                                                "sliding_window"):
                fields_ = {**fields_, "attention": None}  # a window alone: the kind follows it, as at the top level
            self._layer_cfgs[t] = self.replace(layer_types=None, layer_overrides=None, **fields_)

    def _validate_kv_sharing(self) -> None:
        if self.kv_source_layers is not None:
            self._validate_kv_sources()
            return
        if self.draft_target_width or self.draft_centroids:
            self._validate_drafter()
            return
        if not self.kv_shared_layers:
            self._kv_sources = None
            return
        if not 0 < self.kv_shared_layers < self.n_layers or self.n_decoder_layers:
            raise LlmarchError(f"kv_shared_layers must be in [0, n_layers) of a decoder-only or encoder-only stack, "
                               f"got {self.kv_shared_layers} of {self.n_layers} layers")
        first = self.n_layers - self.kv_shared_layers
        self._kv_sources = list(range(first))
        for i in range(first, self.n_layers):
            want = _kv_geometry(self, i)
            source = next((j for j in reversed(range(first)) if _kv_geometry(self, j) == want), None)
            if source is None or self.layer_mixer(i) != "attention":
                raise LlmarchError(f"kv_shared_layers={self.kv_shared_layers}: layer {i} is not an attention layer "
                                   f"with an earlier layer of the same attention geometry to take keys and values from")
            self._kv_sources.append(source)

    def _validate_drafter(self) -> None:
        """draft_target_width: a causal stack of attention layers with no keys or values of their own
        (kv_shared_layers = n_layers: each reads its target's, kv_source -1); draft_centroids: clusters of equal size,
        top_k of them."""
        n = self.n_layers
        if self.draft_target_width <= 0 or self.kv_shared_layers != n or self.n_decoder_layers or not self.causal \
                or any(self.layer_mixer(i) != "attention" or self.for_layer(i).attention not in ("full",
                                                                                              "sliding_window")
                       for i in range(n)):
            raise LlmarchError(f"draft_target_width={self.draft_target_width}: a drafter is a causal stack of full or "
                               "sliding-window attention layers that all read their target's keys and values "
                               f"(kv_shared_layers = n_layers = {n}, got {self.kv_shared_layers})")
        C, k = self.draft_centroids, self.draft_centroid_top_k
        if C and (C < 0 or self.vocab_size % C or not 0 < k <= C):
            raise LlmarchError(f"draft_centroids={C} must divide vocab_size {self.vocab_size} into equal clusters, "
                               f"of which draft_centroid_top_k={k} (1 to {C}) are scored")
        self._kv_sources = [-1] * n

    def _validate_kv_sources(self) -> None:
        """kv_source_layers: each layer's own index, or an earlier attention layer of its geometry keeping its own."""
        sources = list(self.kv_source_layers)
        if self.kv_shared_layers or self.n_decoder_layers or len(sources) != self.n_layers:
            raise LlmarchError(f"kv_source_layers needs one entry per layer ({self.n_layers}) of a decoder-only or "
                               f"encoder-only stack, and no kv_shared_layers; got {len(sources)} entries")
        for i, j in enumerate(sources):
            if j != i and not (isinstance(j, int) and 0 <= j < i and sources[j] == j and self.layer_mixer(i) ==
                               "attention" and _kv_geometry(self, i) == _kv_geometry(self, j)):
                raise LlmarchError(f"kv_source_layers: layer {i} reads layer {j}'s keys and values, which is not an "
                                   "earlier attention layer of the same geometry that keeps its own")
        self._kv_sources = sources

    def kv_source(self, i: int) -> int:
        """The layer whose keys and values block i attends over: itself, or for the last kv_shared_layers blocks
        the last earlier layer of the same attention geometry; -1: none of this stack (a drafter reads its target's)."""
        return i if self._kv_sources is None else self._kv_sources[i]

    def for_layer(self, i: int) -> "ModelConfig":
        """The config block i is built from: this one with its layer type's overrides."""
        if self.layer_types is None:
            return self
        return self._layer_cfgs.get(self.layer_types[i], self)

    def layer_type(self, i: int) -> str | None:
        return None if self.layer_types is None else self.layer_types[i]

    def _validate_attention(self) -> None:
        """The attention kind checks its own fields (layers/attention_kinds/)."""
        ATTENTION_KINDS[self.attention].check(self)

    def _validate_moe(self) -> None:
        """The mixture of experts checks its own fields (layers/moe.py)."""
        check_moe(self)

    def _validate_mixers(self) -> None:
        """The layer pattern here; each mixer in it checks its own fields (layers/mixer.py)."""
        if self.attn_period < 0 or (self.attn_period and not 0 <= self.attn_offset < self.attn_period):
            raise LlmarchError(f"attn_period must be >= 0 and attn_offset in [0, attn_period), got "
                               f"{self.attn_period} and {self.attn_offset}")
        if self.ffn == "none" and self.n_experts:
            raise LlmarchError("ffn='none' has no FFN to make a mixture of experts of; give the experts' kind")
        if self.ffn == "none" and self.block != "sequential":
            raise LlmarchError("ffn='none' needs block='sequential'")
        MIXERS[self.mixer].check(self)
        for (name, _), i in {(self.layer_mixer(i), self.layer_type(i)): i for i in range(self.n_layers)}.items():
            MIXERS[name].check(self.for_layer(i))
        if self.dsa_topk is not None and "mla" not in map(self.layer_mixer, range(self.n_layers)):
            raise LlmarchError("dsa_topk (DeepSeek Sparse Attention) needs some layer of mixer 'mla'")

    def layer_mixer(self, i: int) -> str:
        """Block i's sequence mixer: its layer type's (or `mixer`), or attention where the attention period says."""
        if self.attn_period and i % self.attn_period == self.attn_offset:
            return "attention"
        return self.for_layer(i).mixer

    @property
    def attention_layers(self) -> list[int]:
        return [i for i in range(self.n_layers) if self.layer_mixer(i) == "attention"]

    def is_moe_layer(self, i: int) -> bool:
        """Whether block i's FFN is a mixture of experts."""
        return self.for_layer(i).n_experts > 0 and i % self.moe_period == self.moe_offset and i >= self.moe_dense_first

    @property
    def tied_head(self) -> bool:
        """An LM head whose projection is the token-embedding matrix (classifier heads tie nothing)."""
        return self.head == "lm" and self.tie_embeddings

    @property
    def is_encoder_decoder(self) -> bool:
        return self.n_decoder_layers > 0

    def stack_config(self, part: str) -> "ModelConfig":
        """The config one stack of an encoder-decoder is built from: part 'encoder' (bidirectional, n_layers
        blocks) or 'decoder' (causal, n_decoder_layers blocks, with cross-attention, decoder_overrides applied)."""
        if part == "encoder":
            fields = dict(causal=False, n_decoder_layers=0, encoder_embed=False, decoder_embed_norm_first=False,
                          encoder_vocab_size=None, decoder_context_length=None, decoder_overrides=None,
                          ngram_streams=0, encoder_input="tokens", input_channels=0)
        else:
            fields = dict(causal=True, n_layers=self.n_decoder_layers, n_decoder_layers=0, encoder_embed=False,
                          encoder_vocab_size=None, decoder_context_length=None, global_tokens=0,
                          encoder_input="tokens", input_channels=0,
                          context_length=self.decoder_context_length or self.context_length,
                          decoder_overrides=None, **(self.decoder_overrides or {}))
        if self.layer_types is not None:  # the encoder's entries come first, then the decoder's
            own = self.layer_types[:self.n_layers] if part == "encoder" else self.layer_types[self.n_layers:]
            kept = {t: f for t, f in (self.layer_overrides or {}).items() if t in own}
            fields.update(layer_types=own, layer_overrides=kept or None)
        return self.replace(**fields)

    def _check_patch_stacks(self) -> None:
        stacks = self.patch_stacks
        if sorted(stacks) != sorted(PATCH_STACKS):
            raise LlmarchError(f"patch_stacks needs exactly the stacks {', '.join(PATCH_STACKS)}, got {sorted(stacks)}")
        bad = sorted({k for v in stacks.values() for k in v} - set(PATCH_STACK_FIELDS))
        if bad:
            raise LlmarchError(f"patch_stacks sets the fields {', '.join(PATCH_STACK_FIELDS)}, not {bad[0]}")
        if self.n_decoder_layers or self.patch_cross_k < 1 or not self.hash_ngram_sizes or self.hash_ngram_vocab < 1 \
                or self.hash_ngram_functions < 1 or min(self.hash_ngram_sizes) < 1 or self.mean_patch_length < 1:
            raise LlmarchError("a byte-latent model (patch_stacks) is decoder-only, with patch_cross_k >= 1, "
                               "hash_ngram_sizes of sizes >= 1, hash_ngram_vocab >= 1, hash_ngram_functions >= 1 "
                               "and mean_patch_length >= 1")
        if stacks["encoder"].get("d_model", self.d_model) != self.d_model:
            raise LlmarchError("a byte-latent model's local encoder and decoder share their width (d_model)")
        if (self.block, self.norm_placement, self.mixer, self.layer_types) != ("sequential", "pre", "attention", None):
            raise LlmarchError("a byte-latent model's stacks are of pre-norm sequential attention blocks (a padded "
                               "byte's encoder state is computed as such a block's: models/byte_latent.py)")

    def _check_latent_parts(self) -> None:
        parts = self.latent_parts or {}
        if self.n_latents < 1 or sorted(parts) != sorted(LATENT_PARTS):
            raise LlmarchError(f"a Perceiver IO model needs n_latents >= 1 and latent_parts with exactly the parts "
                               f"{', '.join(LATENT_PARTS)}, got {self.n_latents} and {sorted(parts)}")
        bad = sorted({k for v in parts.values() for k in v} - set(LATENT_PART_FIELDS)) or \
            (["d_model"] if "d_model" in parts["encode"] else [])
        if bad:
            raise LlmarchError(f"latent_parts sets the fields {', '.join(LATENT_PART_FIELDS)} (d_model: the latents' "
                               f"only), not {bad[0]}")
        if self.causal or self.n_decoder_layers or self.head != "lm" or self.positions != "learned" \
                or self.mixer != "attention" or self.layer_types is not None or self.block != "sequential" \
                or self.norm_placement != "pre" or self.final_norm or self.embed_dim is not None:
            raise LlmarchError("a Perceiver IO model (n_latents) is a bidirectional masked LM of pre-norm sequential "
                               "attention blocks with learned positions, no final norm and no embed_dim")

    @property
    def value_width(self) -> int:
        """Each attention head's value width: value_dim, or head_dim (the one place a part reads it from)."""
        return self.head_dim if self.value_dim is None else self.value_dim

    @property
    def rotary_dim(self) -> int:
        """Dims of each head that RoPE rotates (the first ones; the rest pass through)."""
        return int(self.head_dim * self.rope_fraction)

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if "residual_affine" in data:  # saved before ZAYA1's affine adds became residual_mix "affine"
            data = dict(data)
            if data.pop("residual_affine"):
                data["residual_mix"] = "affine"
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LlmarchError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **overrides: Any) -> "ModelConfig":
        data = self.to_dict()
        data.update({name: None for name in self._derived})
        data.update(overrides)
        return ModelConfig.from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise LlmarchError(f"cannot read config {path}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise LlmarchError(f"cannot parse config {path}: not UTF-8 text (byte {e.start})") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:  # json and yaml raise different types; both mean a malformed file
            raise LlmarchError(f"cannot parse config {path}: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise LlmarchError(f"config {path} must hold a mapping of field names to values")
        if "model_type" in data and "d_model" not in data:  # not ours: a Hugging Face checkpoint's
            raise LlmarchError(f"{path} is a Hugging Face config.json (model_type {data['model_type']!r}): give its "
                               "directory as --checkpoint, or llmarch convert --from-hf it")
        cfg = cls.from_dict(data)
        # A config llmarch writes has every field; a hand-written one may leave some out, and the reader should
        # not have to guess what it got (an FFN that silently became gelu): name them, with the values taken.
        # Fields derived from others (n_kv_heads, head_dim, ...) are not assumptions and go unnamed. A config
        # that names most fields was written by llmarch, an older version: what it lacks are fields added since,
        # whose defaults keep earlier models as they were (docs/adding-an-architecture.md), so nothing to name.
        left = [f.name for f in fields(cls) if f.name not in data and f.name not in _DERIVED and f.name != "name"]
        if left and len(data) < WRITTEN_SHARE * len(fields(cls)):
            warn(f"config {path} leaves {len(left)} field(s) at their defaults: "
                 f"{', '.join(f'{n}={getattr(cfg, n)!r}' for n in left)} (write them out to make this explicit)")
        return cfg


def _kv_geometry(cfg: ModelConfig, i: int) -> tuple:
    """What makes layer i's keys and values (kv_shared_layers): its mixer, attention kind and window, heads and their
    width, key norm, values, and every positions field."""
    lc = cfg.for_layer(i)
    return (cfg.layer_mixer(i), lc.attention, lc.sliding_window, lc.n_kv_heads, lc.head_dim, lc.value_width,
            lc.qk_norm, lc.attn_k_eq_v,
            *(getattr(lc, f.name) for f in fields(lc) if f.name.startswith(("rope_", "positions"))))


def field_types() -> dict[str, type]:
    """The scalar type of each field (Optional stripped), for the type checks of __post_init__."""
    kinds = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}
    out = {}
    for f in fields(ModelConfig):
        base = str(f.type).split("|")[0].strip()
        out[f.name] = kinds[base]
    return out
