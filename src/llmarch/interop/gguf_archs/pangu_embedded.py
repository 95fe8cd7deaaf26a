"""Huawei's openPangu-Embedded (GGUF `pangu-embedded`, llmarch's PanguEmbedded), as convert_hf_to_gguf.py's
PanguEmbeddedModel writes it: LLaMA's tensors and keys, q and k unpermuted (llama.cpp rotates halves), with the biases
of q, k, v and o (`attn_*.bias`), which llama.cpp's pangu-embedded graph adds unconditionally: GGUF out refuses a model
without them, in a file without them."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _pangu(hf: dict, meta: Meta) -> dict:
    if not all(meta.has(f"blk.0.attn_{p}.bias") for p in ("q", "k", "v", "output")):
        raise LlmarchError(f"{meta.path}: pangu-embedded without q, k, v and output biases is not supported "
                           "(llama.cpp's graph adds them)")
    return {**hf, "bias": True}


def _pangu_out(w, hf: dict) -> dict:
    if not hf["bias"]:
        raise LlmarchError("GGUF pangu-embedded: llama.cpp's graph adds q, k, v and o biases; this model has none")
    return {}


ARCHS = {"pangu-embedded": Arch("PanguEmbedded", fields=_pangu, write=_pangu_out)}
