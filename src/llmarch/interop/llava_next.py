"""LLaVA-NeXT (`model_type: llava_next`, LlavaNextForConditionalGeneration; LLaVA-1.6, Liu et al. 2024): LLaVA-1.5's
CLIP tower, hidden states and MLP projector (llava.py) over AnyRes tiles (vision/anyres.py: image_grid_pinpoints,
a learned image_newline after each row of the unpadded tile grid), into a LLaMA (Vicuna) or Mistral text model under
model.language_model. The text model is written back as the family it was read as (mistral where it has a sliding
window, else llama, whose weights and config Mistral's are otherwise)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.anyres_pixels import AnyResPreprocess
from ..vision.config import vision_config
from ..vision.preprocess import PROCESSORS
from . import llava
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import canonical_name

# what transformers' LlamaConfig and MistralConfig assume for fields a published text_config leaves out
# (llava-v1.6-mistral names neither its width nor its depth; Mistral's window is 4096 unless set)
_TEXT_DEFAULTS = {"llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32),
                  "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096 * 32,
                                  sliding_window=4096)}
# LlavaNextConfig's vision_config where a config gives none (llava-v1.6's CLIP ViT-L/14 at 336)
_TOWER = dict(model_type="clip_vision_model", intermediate_size=4096, hidden_size=1024, patch_size=14, image_size=336,
              num_hidden_layers=24, num_attention_heads=16)
_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # LlavaNextConfig's default


def to_config(hf: dict) -> ModelConfig:
    text = {"model_type": "llama", **(hf.get("text_config") or {})}
    kind = text["model_type"]
    if kind not in _TEXT_DEFAULTS:
        raise LlmarchError(f"llava_next with a {kind!r} text model is not supported; supported: "
                           f"{', '.join(_TEXT_DEFAULTS)}")
    text = {**_TEXT_DEFAULTS[kind], **text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]}
    # the tower and projector as LLaVA's (its text model, read as LLaMA's, left aside)
    vision = llava.to_config({**hf, "text_config": {**text, "model_type": "llama"},
                              "vision_config": hf.get("vision_config") or _TOWER}).vision
    if hf.get("vision_feature_select_strategy") == "full" and vision["class_token"]:
        raise LlmarchError("llava_next: vision_feature_select_strategy 'full' keeps CLIP's class token, which the "
                           "AnyRes tile grid has no place for (transformers' view of the grid fails on it too)")
    vision = {**vision, "grid_pinpoints": [list(p) for p in hf.get("image_grid_pinpoints") or _PINPOINTS]}
    return FAMILIES[kind].to_config(text).replace(vision=vision, hf_model_type="llava_next")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.grid_pinpoints is None:
        raise LlmarchError("llava_next writes AnyRes images (vision grid_pinpoints); without them write llava")
    if v.max_tiles is not None:
        raise LlmarchError("llava_next has no budget of tiles (vision max_tiles): write llava_onevision")
    text = "mistral" if cfg.sliding_window else "llama"
    out = llava.from_config(cfg.replace(vision={**cfg.vision, "grid_pinpoints": None}))
    out["text_config"] = FAMILIES[text].from_config(cfg.replace(vision=None, hf_model_type=text))
    out["text_config"].pop("architectures", None)
    return dict(out, model_type="llava_next", architectures=["LlavaNextForConditionalGeneration"],
                image_grid_pinpoints=v.grid_pinpoints)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return llava.vision_rules(cfg) + [Rule.of("model.image_newline", "vision.newline")]


def _canonical(name: str) -> str:
    """Published checkpoints' names (image_newline at the top, llava.py's others) as transformers 5's."""
    return "model.image_newline" if name == "image_newline" else canonical_name(name)


_text = FAMILIES["llama"]
FAMILIES.register("llava_next")(Family(text_rules(_text.rules), to_config, from_config,
                                       _text.ignore + (r"^model\.vision_tower\.post_layernorm\.",),
                                       canonical=_canonical, tied_by_checkpoint=True, more_rules=vision_rules))
# images from files (vision/anyres_pixels.py), registered with the family that reads them
PROCESSORS.register("LlavaNextImageProcessor")(AnyResPreprocess.from_config)
