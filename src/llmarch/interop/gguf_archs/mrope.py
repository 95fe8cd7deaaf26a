"""The language models of vision-language models with multimodal RoPE (M-RoPE): Qwen2-VL / Qwen2.5-VL (GGUF
`qwen2vl`), Qwen3-VL (`qwen3vl`, `qwen3vlmoe`) and PaddleOCR-VL (`paddleocr`), as convert_hf_to_gguf.py writes them:
Qwen2's, Qwen3's, Qwen3-MoE's and LLaMA's tensors and keys (the vision tower goes to a separate mmproj file;
PaddleOCR-VL's text model is LLaMA's, q and k unpermuted: llama.cpp turns its halves), with the M-RoPE sections as
`rope.dimension_sections` (mrope_section padded to four with 0) and, for Qwen3-VL, the count of DeepStack layers
(`n_deepstack_layers`: where image features are added, none on text).

On text every position axis is the same (transformers expands a token's position to the three axes; llama.cpp
gives its three the token's position), so M-RoPE is ordinary RoPE and these files read as qwen2, qwen3, qwen3_moe
and llama (read only: llmarch writes those under their own names). llama.cpp's fourth axis is position 0 for text,
so a pair it rotates by that axis stays unrotated there: in qwen2vl and paddleocr the fourth section's, which no
converter writes (a file with one is refused); in qwen3vl's interleaved M-RoPE each pair j past 3 x its section
j mod 3 (Qwen3-VL's [24, 20, 20] of 64 pairs leaves pairs 61 and 62 so), which transformers rotates by the first
axis as every other pair. Such a Qwen3-VL file is read as the converter meant it, the checkpoint's RoPE (as Mellum's
`rope.freq_base_swa`); llama.cpp's logits differ by what those slowest pairs turn. So too llama.cpp 0.3.36's
qwen2vl reads no attention.layer_norm_rms_epsilon (its RMSNorms add ~0), and the file's is read, the converter's
(Qwen2-VL's 1e-6; tests/parity/test_gguf_more_archs.py measures both)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .llama import _qwen3moe


def _sections(meta: Meta) -> list[int]:
    sections = list(meta.get("rope.dimension_sections"))
    if len(sections) != 4 or min(sections) < 0 or not sum(sections[:3]):
        raise LlmarchError(f"{meta.path}: {meta.arch}'s rope.dimension_sections must be four counts of rotated "
                           f"pairs, the first three not all 0; this file's are {sections}")
    return sections


def _three_sections(hf: dict, meta: Meta) -> dict:
    """Qwen2-VL's and PaddleOCR-VL's sections: consecutive runs of pairs, repeated (llama.cpp takes pair j's
    section from j modulo their sum); a fourth (position 0 for text) no converter writes."""
    if _sections(meta)[3]:
        raise LlmarchError(f"{meta.path}: a {meta.arch} file with a fourth M-RoPE section is not supported (llama.cpp "
                           "leaves its pairs unrotated on text; the converter writes 0)")
    return hf


def _paddleocr(hf: dict, meta: Meta) -> dict:
    """PaddleOCR-VL's text model as LLaMA: q, k, v, o biases where the file has attn_q.bias, MLP biases where
    ffn_down.bias (its use_bias)."""
    return {**_three_sections(hf, meta), "mlp_bias": meta.has("blk.0.ffn_down.bias")}


def _qwen3vl(hf: dict, meta: Meta) -> dict:
    _sections(meta)
    return hf


ARCHS = {
    "qwen2vl": Arch("qwen2", fields=_three_sections, read_only=True),
    "paddleocr": Arch("llama", fields=_paddleocr, read_only=True),
    "qwen3vl": Arch("qwen3", fields=_qwen3vl, read_only=True),
    "qwen3vlmoe": Arch("qwen3_moe", fields=lambda hf, meta: _qwen3vl(_qwen3moe(hf, meta), meta), read_only=True),
}
