"""Aya Vision (`model_type: aya_vision`, AyaVisionForConditionalGeneration; Dash et al. 2025) and Cohere2 Vision
(`cohere2_vision`, Cohere2VisionForConditionalGeneration; Command A Vision): a SigLIP tower whose patch grid is
pixel-shuffled by downsample_factor and mapped by a SwiGLU (alignment_intermediate_size, both halves) into a Cohere2
text model (cohere.py), at the positions of the image token. Aya reads the tower's hidden states as LLaVA does
(vision_feature_layer, by default -1, the last block's output before SigLIP's post_layernorm, which it never applies
and so is not read or written) and puts a LayerNorm (adapter_layer_norm_eps) before the SwiGLU; Cohere2 Vision reads
the post-normed output and has no LayerNorm. Names as llava.py's: model.vision_tower.*, model.multi_modal_projector.*
(layernorm, linear_1, linear_2), model.language_model.*."""
from __future__ import annotations

from functools import partial

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from . import llava
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, canonical_name, tower_fields, tower_hf, tower_rules

TEXT = "cohere2"
# model_type -> its architecture, its projector, its config class's vision_config defaults (SigLIP's shape)
TYPES = {"aya_vision": ("AyaVisionForConditionalGeneration", "pixel_shuffle_norm_swiglu", dict(
             hidden_size=1152, intermediate_size=4304, patch_size=14, image_size=384, num_hidden_layers=26,
             num_attention_heads=14)),
         "cohere2_vision": ("Cohere2VisionForConditionalGeneration", "pixel_shuffle_swiglu", dict(
             hidden_size=1152, intermediate_size=3072, image_size=512, num_hidden_layers=27, num_attention_heads=12))}


def to_config(kind: str, hf: dict) -> ModelConfig:
    text = {"model_type": TEXT, **(hf.get("text_config") or {})}
    tower = {"model_type": "siglip_vision_model", **TYPES[kind][2], **(hf.get("vision_config") or {})}
    if text["model_type"] != TEXT:
        raise LlmarchError(f"{kind} with a {text['model_type']!r} text model is not supported; supported: {TEXT}")
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    if kind == "aya_vision":  # LLaVA's feature layers and select strategy, AyaVisionConfig's defaults
        fields = llava.vision_fields({**hf, "vision_config": tower}, "full", -1, 255036)
        del fields["projector_act"]
        if len(fields["feature_layers"]) != 1:  # its projector's LayerNorm is one layer's width (transformers')
            raise LlmarchError(f"aya_vision: vision_feature_layer {hf['vision_feature_layer']} is not supported: "
                               "one layer (its projector reads one layer's features)")
    else:  # Cohere2VisionForConditionalGeneration never multiplies by the text config's logit_scale
        fields = dict(image_token_id=hf.get("image_token_id", 255036), **tower_fields(tower), post_norm=True)
        cfg = cfg.replace(logit_divisor=1.0)
    fields.update(projector=TYPES[kind][1], projector_bias=True, shuffle_factor=hf.get("downsample_factor", 2),
                  projector_hidden=hf.get("alignment_intermediate_size", cfg.d_model))
    if kind == "aya_vision":
        fields["projector_eps"] = float(hf.get("adapter_layer_norm_eps", 1e-6))
    return cfg.replace(vision=fields, hf_model_type=kind)


def from_config(kind: str, cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != TYPES[kind][1] or not v.projector_bias or (kind == "cohere2_vision") != v.post_norm:
        raise LlmarchError(f"{kind} writes a {TYPES[kind][1]} projector with biases over SigLIP's "
                           f"{'post-normed output' if kind == 'cohere2_vision' else 'hidden states'}")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    out = dict(model_type=kind, architectures=[TYPES[kind][0]], text_config=text, vision_config=tower_hf(v),
               downsample_factor=v.shuffle_factor, alignment_intermediate_size=v.projector_hidden,
               tie_word_embeddings=cfg.tie_embeddings)
    if kind == "cohere2_vision":
        return dict(out, image_token_id=v.image_token_id)
    hidden = llava.vision_hf(v)
    return dict(out, **{k: hidden[k] for k in ("image_token_index", "vision_feature_layer",
                                               "vision_feature_select_strategy")},
                adapter_layer_norm_eps=v.projector_eps)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    v = vision_config(cfg.vision)
    norm = [Rule.of(f"{PROJECTOR}layernorm.{w}", f"vision.projector.norm.{w}") for w in ("weight", "bias")
            if v.projector == "pixel_shuffle_norm_swiglu"]
    return tower_rules(v) + norm + [Rule.of(f"{PROJECTOR}linear_{n}.{w}", f"vision.projector.fc{n}.{w}")
                                    for n in (1, 2) for w in ("weight", "bias")]


_text = FAMILIES[TEXT]
for _kind in TYPES:
    _ignore = (r"^model\.vision_tower\.post_layernorm\.",) if _kind == "aya_vision" else ()
    FAMILIES.register(_kind)(Family(text_rules(_text.rules), partial(to_config, _kind), partial(from_config, _kind),
                                    _text.ignore + _ignore, canonical=canonical_name, tied_by_checkpoint=True,
                                    more_rules=vision_rules))
