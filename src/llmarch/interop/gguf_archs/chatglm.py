"""GLM (GGUF `chatglm`, llmarch's glm: THUDM's glm-4-9b-chat-hf, transformers' GlmForCausalLM), as
convert_hf_to_gguf.py's ChatGLMModel writes it: q, k, v apart with their biases, unpermuted (llama.cpp's chatglm
turns adjacent dims, as GLM does), the fused gate | up matrix as `ffn_up` (ggml's SwiGLU splits it so, gate first),
RoPE on rope.dimension_count of each head's dims (the converter: half), RMSNorm's epsilon. llama.cpp loads no o
bias, which llmarch's glm has none of."""
from __future__ import annotations

from .arch import Arch, Meta


def _chatglm(hf: dict, meta: Meta) -> dict:
    head_dim = hf["head_dim"]
    return {**hf, "partial_rotary_factor": meta.get("rope.dimension_count", head_dim // 2) / head_dim}


ARCHS = {"chatglm": Arch("glm", fields=_chatglm)}
