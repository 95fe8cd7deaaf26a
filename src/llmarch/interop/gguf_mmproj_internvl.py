"""InternVL's mmproj files (`internvl`) as llama.cpp writes them (convert_hf_to_gguf.py's conversion/internvl.py,
InternVisionModel, from the original layout or transformers' own, Intern-S1's names) and reads them
(tools/mtmd/models/internvl.cpp, clip.cpp): InternViT (vision/tower.py: a class token, learned positions, a biased
patch convolution, layer scale as v.blk.N.ls1 / ls2, no pre- or post-norm; RMSNorm only for the 6B ViT, 3200 wide
and 45 deep, as clip.cpp decides), the class token dropped, pixel-shuffled by projector.scale_factor, then the
projector's LayerNorm and two-layer GELU MLP (mlp1.0, mlp1.1, mlp1.3: mm.model.mlp.*). Images as
GotOcr2ImageProcessor tiles them with InternVLProcessor's crop_to_patches, between clip.vision.preproc_min_tiles and
preproc_max_tiles (clip.cpp's 1 and 12 where the file names none)."""
from __future__ import annotations

from ..errors import LlmarchError
from .gguf_archs import Meta, field

MIN_TILES, MAX_TILES = 1, 12  # clip.cpp's defaults for PROJECTOR_TYPE_INTERNVL
VIT_6B = (3200, 45)  # (width, depth) of the ViT clip.cpp runs with RMSNorm (InternVL 2.5/3 26B-78B)
TOKENS = dict(start_image_token="<img>", end_image_token="</img>", context_image_token="<IMG_CONTEXT>")


def vision(meta: Meta) -> dict:
    """The tower's and projector's fields (vision/config.py's ViT) from the clip.* metadata and which tensors exist."""
    get = meta.get
    width, depth = get("vision.embedding_length"), get("vision.block_count")
    return dict(width=width, n_layers=depth, n_heads=get("vision.attention.head_count"),
                ffn_hidden=get("vision.feed_forward_length"),
                act="silu" if field(meta.reader, "clip.use_silu", False) else "gelu",
                image_size=get("vision.image_size"), patch_size=get("vision.patch_size"),
                norm_eps=float(f"{get('vision.attention.layer_norm_epsilon'):.6g}"),  # float32 as written
                norm="rmsnorm" if (width, depth) == VIT_6B else "layernorm", qkv_bias=meta.has("v.blk.0.attn_q.bias"),
                qk_norm=meta.has("v.blk.0.attn_q_norm.weight"), layer_scale=True,
                patch_bias=meta.has("v.patch_embd.bias"), class_token=True, pre_norm=False, feature_layers=[-1],
                drop_first=True, projector="pixel_shuffle_mlp", shuffle_factor=get("vision.projector.scale_factor"),
                projector_act="gelu")


def out(cfg, processor: dict) -> dict:
    """The keys InternVisionModel.set_gguf_parameters writes beyond the sizes, the tile bounds from the image
    processor's (the converter takes them from the original layout's config; GotOcr2's defaults where absent)."""
    from ..vision.config import vision_config

    v = vision_config(cfg.vision)
    if v.act not in ("gelu", "silu") or v.norm != ("rmsnorm" if (v.width, v.n_layers) == VIT_6B else "layernorm"):
        raise LlmarchError(f"llama.cpp's InternViT takes GELU or SiLU, RMSNorm only {VIT_6B[0]} wide and "
                           f"{VIT_6B[1]} deep; this tower's act is {v.act!r}, its norm {v.norm!r}")
    return {"clip.vision.attention.layer_norm_epsilon": float(v.norm_eps), f"clip.use_{v.act}": True,
            "clip.vision.projector.scale_factor": v.shuffle_factor,
            "clip.vision.preproc_min_tiles": processor.get("min_patches", MIN_TILES),
            "clip.vision.preproc_max_tiles": processor.get("max_patches", MAX_TILES)}


def processor(meta: Meta) -> dict:
    """GotOcr2ImageProcessor: tiles of the tower's size, as many as clip.cpp allows (bicubic)."""
    side = meta.get("vision.image_size")
    return dict(image_processor_type="GotOcr2ImageProcessor", resample=3, size={"height": side, "width": side},
                crop_to_patches=True, min_patches=meta.get("vision.preproc_min_tiles", MIN_TILES),
                max_patches=meta.get("vision.preproc_max_tiles", MAX_TILES))


_MLP1 = {"multi_modal_projector.layer_norm": "mlp1.0", "multi_modal_projector.linear_1": "mlp1.1",
         "multi_modal_projector.linear_2": "mlp1.3"}


def _converter_name(hf: str, meta=None) -> list[str]:
    """The name the converter looks a Hugging Face tensor up by (filter_tensors): the projector's as the original
    layout's mlp1.N, a layer scale's or position embedding's with .weight added."""
    for ours, theirs in _MLP1.items():
        if ours in hf:
            return [hf.removeprefix("model.").replace(ours, theirs)]
    return [hf + ".weight"]


# (Hugging Face name regex, its name as the converter read it, one part taken as it is): gguf_mmproj.Projector.joins
JOINS = ((r"multi_modal_projector\.|\.lambda_[12]$|position_embeddings$", _converter_name, lambda parts: parts[0],
          lambda t: [t]),)
