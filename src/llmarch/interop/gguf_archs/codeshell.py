"""CodeShell as llama.cpp's `codeshell` (convert_hf_to_gguf.py's CodeShellModel; src/models/codeshell.cpp), read as
llmarch's StarCoder2 (Arch.read_only: llmarch has no CodeShell family, and writes StarCoder2 as starcoder2):
LayerNorms with biases, c_attn kept fused as attn_qkv with its bias (rows all q | all k | all v, CodeShell's query
then its key/value groups' k and v, as llama.cpp's graph views them; reading splits them into q, k, v), RoPE on
whole heads in half-split pairs (llama.cpp's neox rotation; unpermuted), attn_output with its bias, a tanh-GELU FFN
with biases (ffn_up, ffn_down; feed_forward_length 4 * d, as the converter writes it), the `output` head."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .llama_kin import _FUSED


def _codeshell(hf: dict, meta: Meta) -> dict:
    """CodeShell as StarCoder2: the converter's linear RoPE scaling of factor 1 is none; every dim of a head
    rotated (llama.cpp asserts it)."""
    head_dim = hf["head_dim"]
    if meta.get("rope.dimension_count", head_dim) != head_dim:
        raise LlmarchError(f"{meta.path}: llama.cpp's codeshell rotates every dim of a head ({head_dim})")
    scaling = hf.pop("rope_scaling", None)
    if scaling and scaling["factor"] != 1.0:
        raise LlmarchError(f"{meta.path}: a GGUF codeshell file with RoPE scaling (factor {scaling['factor']}) is "
                           "not supported")
    return {**hf, "norm_epsilon": meta.get("attention.layer_norm_epsilon"), "use_bias": True,
            "hidden_act": "gelu_pytorch_tanh", "sliding_window": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": hf.pop("rope_theta")}}


ARCHS = {
    "codeshell": Arch("starcoder2", fields=_codeshell, read_only=True, layer_norm=True, split=_FUSED),
}
