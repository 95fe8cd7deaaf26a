"""BitNet b1.58 (GGUF `bitnet`): refused both ways, in one line, because llama.cpp 0.3.36's bitnet graph computes
another FFN than llmarch's `bitnet` family. Its graph is LLaMA's with BitNet's sub-norms (`attn_sub_norm` before
`attn_output`, `ffn_sub_norm` before `ffn_down`), q and k unpermuted, the head always the embedding, and the
FFN SiLU-gated: it reads no `hidden_activation` for bitnet (measured: a tiny model's file with relu2, gelu or none
decodes alike, and equals llmarch's same weights with ffn swiglu to 3e-7), where BitNet b1.58 and llmarch's family
gate by squared ReLU (hidden_act relu2). Its weights are what the file holds: the converter rounds each projection
to ternary times 1/absmean (BitNet's weight_quant) and may store them as TQ1_0/TQ2_0, and an older file's per-tensor
`.scale` multiplies a projection's output; its activations are not rounded to 8 bits per token, so llmarch's
`bitlinear="online"` (transformers' AutoBitLinear) would differ even with the FFN's activation matched."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta

WHY = "llama.cpp's bitnet graph gates the FFN by SiLU, BitNet b1.58 (llmarch's bitnet) by squared ReLU"


def _refused_in(hf: dict, meta: Meta) -> dict:
    raise LlmarchError(f"{meta.path}: GGUF bitnet is not read: {WHY}")


def _refused_out(w, hf: dict) -> dict:
    raise LlmarchError(f"GGUF bitnet is not written: {WHY}")


ARCHS = {"bitnet": Arch("bitnet", fields=_refused_in, write=_refused_out)}
