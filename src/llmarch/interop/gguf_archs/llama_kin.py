"""Older LLaMA-kin architectures llama.cpp names for themselves, read as llmarch's LLaMA or Qwen2 (Arch.read_only:
llmarch has no family of their own, and writes those families as llama and qwen2). Their converters (convert_hf_to_
gguf.py's XverseModel, InternLM2Model, BaichuanModel, QwenModel) lay the tensors out as LLaMA's or Qwen2's, what the
graphs of llama.cpp (src/models/<arch>.cpp) compute is LLaMA's or Qwen2's:

- xverse: XVERSE's q and k permuted as LLaMA's (XverseModel._reverse_hf_permute), RoPE on whole heads.
- internlm2: InternLM2's fused wqkv (per key/value group: its query heads, then k, then v) split into attn_q, attn_k,
  attn_v, q and k permuted as LLaMA's (InternLM2Model.modify_tensors).
- baichuan: Baichuan's fused W_pack (q | k | v) split into attn_q, attn_k, attn_v, q and k permuted as LLaMA's
  (BaichuanModel._reverse_hf_permute_part). llama.cpp turns q and k only in a 32-layer model (Baichuan-7B); at 40
  layers (13B) it takes ALiBi, at any other count no positions at all: such a file is refused.
- qwen: Qwen (v1)'s c_attn kept fused as attn_qkv with its bias (rows all q | all k | all v, as llama.cpp's graph
  views them; reading splits them into Qwen2's q, k, v), RoPE on half-split pairs unpermuted, and
  feed_forward_length twice the SwiGLU's width (Qwen's config.json counts w1 and w2 together; llama.cpp's qwen loads
  n_ff / 2)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .phi2 import _fused_rows


def _llama(hf: dict, meta: Meta) -> dict:
    """A LLaMA without MLP biases (these graphs have none)."""
    return {**hf, "mlp_bias": False}


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


# read only (no converter split): Qwen2's q, k, v (weight and bias) from the file's attn_qkv, named as Phi-3's
# qkv_proj, which the qwen name map gives attn_qkv
_FUSED = tuple((rf"\.{p}_proj\.(weight|bias)$", (r".qkv_proj.\1",), None, _fused_rows(i)) for i, p in enumerate("qkv"))

ARCHS = {
    "xverse": Arch("llama", permuted_qk=True, fields=_llama, read_only=True),
    "internlm2": Arch("llama", permuted_qk=True, fields=_llama, read_only=True),
    "baichuan": Arch("llama", permuted_qk=True, fields=_baichuan, read_only=True),
    "qwen": Arch("qwen2", fields=_qwen, read_only=True, split=_FUSED),
}
