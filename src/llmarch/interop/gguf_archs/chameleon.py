"""Chameleon's text model, as convert_hf_to_gguf.py's ChameleonModel writes it (the VQ-VAE left out): LLaMA's tensors
with q and k permuted (LlamaModel.permute: llama.cpp turns adjacent dims), attn_q_norm and attn_k_norm with their
biases (heads, head_dim), each head's channels in that same order (the converter's _reverse_hf_permute, which also
repeats head 0's norm for every head; llmarch writes each head's own, which llama.cpp applies per head), and
`swin_norm`. That one is refused both ways: under it llama.cpp's graph (src/models/chameleon.cpp) feeds the FFN
attn_norm(attn(x)) where transformers feeds it the residual stream x + attn_norm(attn(x)) (measured on a tiny
model: logits 0.047 apart from llmarch's and transformers'). llama.cpp fixes the q/k LayerNorms' epsilon at 1e-5
and, in every graph, sets the logits of ids 4 to 8195 (chameleon-7b's and -30b's image tokens) to -FLT_MAX: a file
means suppressed_logits [[4, 8196]], and a model is written only with those."""
from __future__ import annotations

from ...errors import LlmarchError
from ..chameleon import vocabulary_map
from .arch import Arch, Meta

IMAGE_IDS = [[4, 8196]]  # llama.cpp's chameleon graph: img_token_start_idx, img_token_end_idx


def _chameleon(hf: dict, meta: Meta) -> dict:
    """The image ids llama.cpp suppresses, as the vocabulary map that names them; no biases (llama.cpp's graph has
    none); no swin_norm (see above)."""
    if meta.get("swin_norm", False):
        raise LlmarchError(f"{meta.path}: chameleon with swin_norm is not read: llama.cpp's graph feeds the FFN the "
                           "normed attention output, not the residual stream as transformers does")
    if hf["vocab_size"] < IMAGE_IDS[0][1]:
        raise LlmarchError(f"{meta.path}: a chameleon file of {hf['vocab_size']} ids: llama.cpp suppresses ids "
                           f"{IMAGE_IDS[0][0]}-{IMAGE_IDS[0][1] - 1} in every graph")
    return {**hf, "vocabulary_map": vocabulary_map(IMAGE_IDS)}


def _chameleon_out(w, hf: dict) -> dict:
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("GGUF chameleon holds no attention or MLP biases: llama.cpp's graph has none")
    if hf.get("swin_norm"):
        raise LlmarchError("GGUF chameleon with swin_norm: llama.cpp's graph feeds the FFN the normed attention "
                           "output, not the residual stream as transformers does")
    w.add_swin_norm(False)
    return {}


def _image_ids(w, cfg):
    """llama.cpp suppresses ids 4-8195 whatever the file says: a model is written only where it does the same."""
    if cfg.suppressed_logits != IMAGE_IDS:
        raise LlmarchError(f"GGUF chameleon: llama.cpp suppresses the logits of ids {IMAGE_IDS} in every graph, "
                           f"this model {cfg.suppressed_logits}")
    return cfg


def _pairs(t, hf):
    """A head's channels (halves, as RoPE turns them in Hugging Face) in the order of q and k's permuted rows."""
    return t.unflatten(-1, (2, -1)).transpose(-1, -2).flatten(-2)


def _halves(t, hf):
    return t.unflatten(-1, (-1, 2)).transpose(-1, -2).flatten(-2)


ARCHS = {
    "chameleon": Arch("chameleon", permuted_qk=True, fields=_chameleon, write=_chameleon_out, model_out=_image_ids,
                      tensors=((r"self_attn\.[qk]_norm\.(weight|bias)$", _pairs, _halves),)),
}
