"""LLaVA-OneVision (`model_type: llava_onevision`, LlavaOnevisionForConditionalGeneration; Li et al. 2024,
"LLaVA-OneVision: Easy Visual Task Transfer"): LLaVA-NeXT's AnyRes tiles, unpadding and image_newline (llava_next.py,
vision/anyres.py) over a SigLIP tower's last hidden state (all patches: SigLIP has no class token), into a Qwen2 text
model under model.language_model; an unpadded grid larger than anyres_max_N's N tiles is bilinearly downscaled
(vision max_tiles). Only images (several to a prompt in transformers' multi-image mode, one square-padded tile each:
vision/anyres_pixels.py, vision/anyres.py); videos are not read."""
from __future__ import annotations

import re

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.anyres_pixels import OneVisionPreprocess
from ..vision.config import vision_config
from ..vision.preprocess import PROCESSORS
from . import llava
from .hf import FAMILIES, Family
from .llava_next import vision_rules
from .multimodal import text_rules
from .vision_towers import canonical_name

TEXT = "qwen2"
# LlavaOnevisionConfig's vision_config where a config gives none (SigLIP so400m at 384) and its pinpoints: every
# grid of 1 to 6 tiles of 384 a side
_TOWER = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, patch_size=14,
              image_size=384, num_hidden_layers=26, num_attention_heads=16, vision_use_head=False)
_PINPOINTS = [[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)]
_MAX = re.compile(r"anyres_max_(\d+)")


def to_config(hf: dict) -> ModelConfig:
    text = {"model_type": TEXT, **(hf.get("text_config") or {})}
    if text["model_type"] != TEXT:
        raise LlmarchError(f"llava_onevision with a {text['model_type']!r} text model is not supported; supported: "
                           f"{TEXT}")
    ratio = hf.get("vision_aspect_ratio", "anyres_max_9")
    found = _MAX.fullmatch(ratio or "")
    if found is None:
        raise LlmarchError(f"llava_onevision: vision_aspect_ratio {ratio!r} is not supported (anyres_max_N)")
    vision = llava.vision_fields({**hf, "vision_config": hf.get("vision_config") or _TOWER}, strategy="full",
                                 layer=-1, image_token=151646, tower="siglip_vision_model")
    if vision["drop_first"]:
        raise LlmarchError("llava_onevision: vision_feature_select_strategy 'default' drops a SigLIP patch, which "
                           "the AnyRes tile grid has no place for (transformers' packing fails on it too)")
    vision.update(grid_pinpoints=[list(p) for p in hf.get("image_grid_pinpoints") or _PINPOINTS],
                  max_tiles=int(found.group(1)))
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    return cfg.replace(vision=vision, hf_model_type="llava_onevision")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.grid_pinpoints is None or v.max_tiles is None or v.projector != "mlp" or v.post_norm:
        raise LlmarchError("llava_onevision writes AnyRes images under a tile budget (vision grid_pinpoints, "
                           "max_tiles) through an MLP projector over the tower's hidden states")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    return dict(model_type="llava_onevision", architectures=["LlavaOnevisionForConditionalGeneration"],
                text_config=text, **llava.vision_hf(v), image_grid_pinpoints=v.grid_pinpoints,
                vision_aspect_ratio=f"anyres_max_{v.max_tiles}", tie_word_embeddings=cfg.tie_embeddings)


def _canonical(name: str) -> str:
    """Published checkpoints' names (image_newline at the top, llava.py's others) as transformers 5's."""
    return "model.image_newline" if name == "image_newline" else canonical_name(name)


_text = FAMILIES[TEXT]
FAMILIES.register("llava_onevision")(Family(
    text_rules(_text.rules), to_config, from_config,
    _text.ignore + (r"^model\.vision_tower\.post_layernorm\.", r"^model\.vision_tower\.head\."),
    canonical=_canonical, tied_by_checkpoint=True, more_rules=vision_rules))
# images from files (vision/anyres_pixels.py), registered with the family that reads them
PROCESSORS.register("LlavaOnevisionImageProcessor")(OneVisionPreprocess.from_config)
