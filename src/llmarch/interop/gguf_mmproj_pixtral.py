"""Mistral 3's (Mistral Small 3.1/3.2) mmproj files (`pixtral`) as llama.cpp writes them (convert_hf_to_gguf.py's
conversion/llava.py, LlavaVisionModel) and reads them (tools/mtmd/models/pixtral.cpp, clip.cpp): the tower of
vision/pixtral_tower.py, its q and k rows permuted as LLaMA's (LlamaModel.permute, undone on reading), its RoPE base
clip.cpp's fixed 10000, its gated MLP's activation clip.use_silu or clip.use_gelu; the projector's RMSNorm
(mm.input_norm, clip.cpp's eps the tower's, where transformers takes the text model's: equal in Mistral's releases),
patch merger (mm.patch_merger, spatial_merge_size) and MLP (mm.1, mm.2; GELU, transformers' exact one, where
clip.cpp's is ggml's tanh form). The file's [IMG_BREAK] embedding (v.token_embd.img_break), which mtmd appends to
each row of an image's features but the last, is the text model's own row: llmarch's mistral3 prompt layout puts the
[IMG_BREAK] token there, as PixtralProcessor does. Large images are resized differently: clip.cpp bounds the merged
tokens to 8..1024 by area (set_limit_image_tokens), PixtralImageProcessor the longest side to the tower's image_size."""
from __future__ import annotations

from ..errors import LlmarchError
from ..vision.pixtral_config import TOWER, pixtral_vision_config
from .gguf_archs import Meta, field

HELD = ("v.token_embd.img_break", "[IMG_BREAK]")  # the text model's [IMG_BREAK] row, not read
ROPE_THETA = 10000.0  # clip.cpp's hparams.rope_theta for PROJECTOR_TYPE_PIXTRAL (the file names none)


def _ffn(meta: Meta) -> str:
    """The tower's gated MLP from the activation the converter names (the vision config's hidden_act)."""
    for key, ffn in (("clip.use_silu", "swiglu"), ("clip.use_gelu", "geglu")):
        if field(meta.reader, key, False):
            return ffn
    raise LlmarchError(f"{meta.path}: a pixtral mmproj names its tower's activation by clip.use_silu or "
                       "clip.use_gelu; this file sets neither")


def vision(meta: Meta) -> dict:
    """The tower's and projector's fields from the clip.* metadata (the projection's width from mm.2's rows)."""
    get = meta.get
    if not meta.has("mm.patch_merger.weight"):  # Pixtral 12B's (a llava checkpoint) has no merger nor its norm
        raise LlmarchError(f"{meta.path}: a pixtral mmproj without a patch merger (Pixtral 12B's) is not supported; "
                           "Mistral 3's (Mistral Small 3.1/3.2) only")
    return dict(tower=TOWER, width=get("vision.embedding_length"), n_layers=get("vision.block_count"),
                n_heads=get("vision.attention.head_count"), ffn_hidden=get("vision.feed_forward_length"),
                out_width=int(meta.tensors["mm.2.weight"].shape[-1]),
                ffn=_ffn(meta),
                patch_size=get("vision.patch_size"), image_size=get("vision.image_size"), rope_theta=ROPE_THETA,
                merge_size=get("vision.spatial_merge_size", 1), projector_bias=meta.has("mm.1.bias"),
                projector_eps=float(f"{get('vision.attention.layer_norm_epsilon'):.6g}"))  # float32 as written


def out(cfg, processor: dict) -> dict:
    """The keys LlavaVisionModel.set_gguf_parameters writes for a pixtral tower beyond the sizes."""
    v = pixtral_vision_config(cfg.vision)
    if v.projector_eps != 1e-5 or v.projector_act != "gelu":  # clip.cpp's projector: the tower's eps, GELU
        raise LlmarchError(f"llama.cpp's pixtral projector normalizes with the tower's eps 1e-5 and uses GELU; this "
                           f"one's eps is {v.projector_eps}, its act {v.projector_act!r}")
    return {"clip.vision.attention.layer_norm_epsilon": 1e-5, "clip.vision.spatial_merge_size": v.merge_size,
            "clip.use_silu" if v.ffn == "swiglu" else "clip.use_gelu": True}


def processor(meta: Meta) -> dict:
    """PixtralImageProcessor: the longest side to the tower's image_size, bicubic as clip.cpp resizes."""
    patch = meta.get("vision.patch_size")
    return dict(image_processor_type="PixtralImageProcessor", resample=3, size={"longest_edge":
                meta.get("vision.image_size")}, patch_size={"height": patch, "width": patch})
