"""openPangu-Embedded (GGUF `pangu-embedded`, llmarch's PanguEmbedded), as convert_hf_to_gguf.py's PanguEmbeddedModel
writes it: LLaMA's keys and tensors, q and k unpermuted (the converter is a plain TextModel; llama.cpp's graph rotates
halves), biases on attn_q, attn_k, attn_v and attn_output (llama.cpp's graph adds them unconditionally: a model
without them is refused) and none on the FFN (llama.cpp's graph adds ffn biases only where a file has them: one that
has them is refused), `output` unless the head is tied."""
from __future__ import annotations

from ...errors import LlmarchError
from ..pangu_embedded import MODEL_TYPE
from .arch import Arch, Meta


def _pangu(hf: dict, meta: Meta) -> dict:
    if meta.has("blk.0.ffn_down.bias") or meta.has("output.bias"):
        raise LlmarchError(f"{meta.path}: a pangu-embedded file with FFN or output biases is not supported "
                           "(openPangu-Embedded's MLP and head have none)")
    if hf.get("rope_scaling"):
        raise LlmarchError(f"{meta.path}: a pangu-embedded file with RoPE scaling is not supported")
    return {**hf, "bias": hf.pop("attention_bias")}


def _pangu_common(hf: dict) -> dict:
    """config.json's `rope_theta` as the rope_parameters the common keys are written from."""
    return {**hf, "rope_parameters": {"rope_type": "default", "rope_theta": hf["rope_theta"]}}


def _pangu_out(w, hf: dict) -> dict:
    if not hf["bias"]:
        raise LlmarchError("GGUF pangu-embedded: llama.cpp's graph adds q, k, v and o biases; this model has none")
    return {}


ARCHS = {"pangu-embedded": Arch(MODEL_TYPE, fields=_pangu, common=_pangu_common, write=_pangu_out)}
