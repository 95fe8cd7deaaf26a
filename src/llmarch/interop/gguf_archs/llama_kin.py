"""Older LLaMA-kin architectures llama.cpp names for themselves, read as llmarch's LLaMA, Qwen2, Granite or StableLM
(Arch.read_only: llmarch has no family of their own, and writes those families as their own architectures). Their
converters (convert_hf_to_gguf.py's XverseModel, InternLM2Model, BaichuanModel, QwenModel, MiniCPMModel, OrionModel)
lay the tensors out as those families' are, and llama.cpp's graphs for them (src/models/<arch>.cpp) compute what
those families do:

- xverse: XVERSE's q and k permuted as LLaMA's (XverseModel._reverse_hf_permute), RoPE on whole heads; multi-head
  attention only (XVERSE's): with fewer key heads that converter permutes k by heads / kv_heads groups, not LLaMA's.
- internlm2: InternLM2's fused wqkv (per key/value group: its query heads, then k, then v) split into attn_q, attn_k,
  attn_v, q and k permuted as LLaMA's (InternLM2Model.modify_tensors).
- baichuan: Baichuan's fused W_pack (q | k | v) split into attn_q, attn_k, attn_v, q and k permuted as LLaMA's
  (BaichuanModel._reverse_hf_permute_part). llama.cpp turns q and k only in a 32-layer model (Baichuan-7B); at 40
  layers (13B) it takes ALiBi, at any other count no positions at all: such a file is refused.
- qwen: Qwen (v1)'s c_attn kept fused as attn_qkv with its bias (rows all q | all k | all v, as llama.cpp's graph
  views them; reading splits them into Qwen2's q, k, v), RoPE on half-split pairs unpermuted, and
  feed_forward_length twice the SwiGLU's width (Qwen's config.json counts w1 and w2 together; llama.cpp's qwen loads
  n_ff / 2).
- minicpm: MiniCPM (1, 2) as Granite (llama.cpp's minicpm runs the granite graph): LLaMA's tensors, q and k permuted,
  scale_emb as `embedding_scale`, scale_depth / sqrt(layers) as `residual_scale`, hidden_size / dim_model_base as
  `logit_scale` (the logits divided by it, as MiniCPM divides the hidden state before its head), attention by
  1/sqrt(head_dim); where a key is missing, llama.cpp's defaults (12, 1.4 / sqrt(layers), 256 / hidden_size).
- nanbeige: Nanbeige (NanbeigeModel, a LlamaModel: q and k permuted) with its layers run once (num_loops 1); a file
  looping them (num_loops > 1, llmarch has no looped stack for it) or with an attention.scale is refused.
- llama-embed: a LLaMA embedding model (LlamaEmbedNemotronModel, a LlamaModel: q and k permuted; llama-embed-
  nemotron): llama.cpp's llama graph without its head, the final norm's output pooled as pooling_type says (none where
  absent), attention bidirectional where attention.causal is false (else causal, llama.cpp's default); read as a
  LLaMA with head `embed`.
- cogvlm: CogVLM's language model (CogVLMModel) as LLaMA: the language expert's fused query_key_value as attn_qkv
  (q | k | v, unpermuted: llama.cpp's cogvlm turns halves), its dense as attn_output, its SwiGLU; no biases (llama.cpp
  loads none). The vision expert's tensors (vis_attn_qkv, vis_attn_output, vis_gate, vis_up, vis_down), which only
  image tokens pass through, are not read: on text the model is the LLaMA.
- orion: Orion as StableLM: LayerNorms with biases, RoPE on whole heads in half-split pairs (q and k unpermuted),
  SwiGLU without biases, no attention biases, the `output` head (llama.cpp requires it)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .phi2 import _fused_rows


def _llama(hf: dict, meta: Meta) -> dict:
    """A LLaMA without MLP biases (these graphs have none)."""
    return {**hf, "mlp_bias": False}


def _xverse(hf: dict, meta: Meta) -> dict:
    if hf["num_key_value_heads"] != hf["num_attention_heads"]:
        raise LlmarchError(f"{meta.path}: a GGUF xverse file with grouped keys is not supported (XverseModel "
                           "permutes their k otherwise than LLaMA's)")
    return _llama(hf, meta)


def _baichuan(hf: dict, meta: Meta) -> dict:
    if hf["num_hidden_layers"] != 32:
        raise LlmarchError(f"{meta.path}: llama.cpp computes baichuan with RoPE at 32 layers only (ALiBi at 40, no "
                           f"positions otherwise); this file has {hf['num_hidden_layers']}")
    return _llama(hf, meta)


def _qwen(hf: dict, meta: Meta) -> dict:
    """Qwen (v1) as Qwen2: q, k, v biases (attn_qkv.bias), none on attn_output, the SwiGLU's width half the
    file's feed_forward_length."""
    return {**hf, "model_type": "qwen2", "intermediate_size": hf["intermediate_size"] // 2,
            "attention_bias": meta.has("blk.0.attn_qkv.bias")}


def _minicpm(hf: dict, meta: Meta) -> dict:
    """MiniCPM as Granite with its three scalars (llama.cpp's minicpm reads no attention.scale: 1/sqrt(head_dim));
    MLP biases where the file has them (llama.cpp loads them where present). Experts (MiniCPM-MoE) and LongRoPE's
    factors (MiniCPM 3's, another architecture) are not read."""
    if meta.get("expert_count", 0):
        raise LlmarchError(f"{meta.path}: a GGUF minicpm file with experts is not supported")
    n, d = hf["num_hidden_layers"], hf["hidden_size"]
    return {**hf, "model_type": "granite", "attention_multiplier": hf["head_dim"] ** -0.5,
            "embedding_multiplier": meta.get("embedding_scale", 12.0),
            "residual_multiplier": meta.get("residual_scale", 1.4 / n ** 0.5),
            "logits_scaling": meta.get("logit_scale", 256.0 / d), "mlp_bias": meta.has("blk.0.ffn_down.bias")}


def _nanbeige(hf: dict, meta: Meta) -> dict:
    if meta.get("num_loops", 1) != 1 or meta.get("attention.scale", 0.0):
        raise LlmarchError(f"{meta.path}: a GGUF nanbeige file with num_loops > 1 or attention.scale is not supported")
    return _llama(hf, meta)


def _llama_embed_in(meta: Meta) -> dict:
    from .encoders import _embedding_in

    return {**_embedding_in(meta), "causal": bool(meta.get("attention.causal", True))}


def _orion(hf: dict, meta: Meta) -> dict:
    """Orion as StableLM: every dim of each head rotated (llama.cpp asserts it), the sequential residual (llama.cpp's
    orion graph has ffn_norm), no q, k, v biases."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    rope = {**(hf.pop("rope_scaling", None) or {"rope_type": "default"}), "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": 1.0}
    if meta.get("rope.dimension_count", head_dim) != head_dim:
        raise LlmarchError(f"{meta.path}: llama.cpp's orion rotates every dim of a head ({head_dim})")
    return {**hf, "hidden_act": "silu", "layer_norm_eps": meta.get("attention.layer_norm_epsilon"),
            "use_qkv_bias": False, "qk_layernorm": False, "use_parallel_residual": False, "rope_parameters": rope}


# read only (no converter split): Qwen2's q, k, v (weight and bias) from the file's attn_qkv, named as Phi-3's
# qkv_proj, which the qwen name map gives attn_qkv
_FUSED = tuple((rf"\.{p}_proj\.(weight|bias)$", (r".qkv_proj.\1",), None, _fused_rows(i)) for i, p in enumerate("qkv"))

ARCHS = {
    "xverse": Arch("llama", permuted_qk=True, fields=_xverse, read_only=True),
    "internlm2": Arch("llama", permuted_qk=True, fields=_llama, read_only=True),
    "baichuan": Arch("llama", permuted_qk=True, fields=_baichuan, read_only=True),
    "qwen": Arch("qwen2", fields=_qwen, read_only=True, split=_FUSED),
    "minicpm": Arch("granite", permuted_qk=True, fields=_minicpm, read_only=True),
    "nanbeige": Arch("llama", permuted_qk=True, fields=_nanbeige, read_only=True, names="llama"),  # no map of its own
    "llama-embed": Arch("llama", permuted_qk=True, fields=lambda hf, meta: {**_llama(hf, meta),
                                                                          "tie_word_embeddings": True},
                        read_only=True, dropped=r"^lm_head\.", model_in=_llama_embed_in),
    "orion": Arch("stablelm", fields=_orion, read_only=True, layer_norm=True),
    "cogvlm": Arch("llama", fields=_llama, read_only=True, split=_FUSED, unread=r"^blk\.\d+\.vis_"),
}
