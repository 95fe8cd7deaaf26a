"""Cohere's Command models: command-r (Command R, Aya 23) and cohere2 (Command R7B, Command A). Their q and k are
stored as Hugging Face holds them: llama.cpp turns adjacent dims, as Cohere does. llama.cpp's graphs have no
output tensor (the head is always the embedding), and cohere2's slide on three layers of four, RoPE on those
only."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _cohere(hf: dict, meta: Meta) -> dict:
    out = {**hf, "layer_norm_eps": meta.get("attention.layer_norm_epsilon"), "logit_scale": meta.get("logit_scale")}
    if hf["model_type"] == "cohere2":
        out.update(sliding_window=meta.get("attention.sliding_window"), sliding_window_pattern=4, layer_types=None)
    return out


def _cohere_out(w, hf: dict) -> dict:
    """CommandR2Model's and Cohere2Model's converters: LayerNorm's epsilon, the logit scale; the window, whose
    pattern llama.cpp fixes at three sliding layers to one full."""
    if not hf.get("tie_word_embeddings", True):
        raise LlmarchError(f"GGUF {hf['model_type']} has no output tensor: its head is the embedding (tied)")
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_logit_scale(hf["logit_scale"])
    if hf["model_type"] == "cohere2":
        types = hf["layer_types"]
        if hf.get("sliding_window") is None or types != [
                "full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(len(types))]:
            raise LlmarchError("GGUF cohere2 holds a window on three layers of four, the fourth full (llama.cpp's "
                               "pattern)")
        w.add_sliding_window(hf["sliding_window"])
    return {}


ARCHS = {
    "command-r": Arch("cohere", fields=_cohere, write=_cohere_out, layer_norm=True),
    "cohere2": Arch("cohere2", fields=_cohere, write=_cohere_out, layer_norm=True),
}
