"""VipLLaVA (`model_type: vipllava`, VipLlavaForConditionalGeneration; Cai et al. 2024, "ViP-LLaVA: Making Large
Multimodal Models Understand Arbitrary Visual Prompts"): LLaVA-1.5's CLIP tower, whose hidden states at several
layers (vision_feature_layer, by default -2, -5, -8, -11 and 6), each without the class token, are concatenated
along channels and go through a LayerNorm and LLaVA's MLP (the norm_mlp projector) into a LLaMA text model, at the
positions of the image token. The names are llava.py's (its projector's LayerNorm projector_layernorm)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from . import llava
from .hf import FAMILIES, Family
from .llava_next import _TOWER
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, canonical_name

_LAYERS = [-2, -5, -8, -11, 6]  # VipLlavaConfig's vision_feature_layer


def to_config(hf: dict) -> ModelConfig:
    kind = (hf.get("text_config") or {}).get("model_type", llava.TEXT)
    if kind != llava.TEXT:
        raise LlmarchError(f"vipllava with a {kind!r} text model is not supported; supported: {llava.TEXT}")
    # LLaVA's reading, every layer's class token dropped (VipLLaVA has no select strategy)
    cfg = llava.to_config({**hf, "vision_feature_layer": hf.get("vision_feature_layer", _LAYERS),
                           "vision_feature_select_strategy": "default", "multimodal_projector_bias": True,
                           "vision_config": hf.get("vision_config") or _TOWER})
    return cfg.replace(vision={**cfg.vision, "projector": "norm_mlp",
                               "projector_eps": float(hf.get("projector_layernorm_eps", 1e-5))},
                       hf_model_type="vipllava")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "norm_mlp" or not v.drop_first or not v.projector_bias:
        raise LlmarchError("vipllava writes a norm_mlp projector with biases over the tower's hidden states without "
                           "the first position (drop_first)")
    out = llava.from_config(cfg.replace(vision={**cfg.vision, "projector": "mlp"}))
    for key in ("vision_feature_select_strategy", "multimodal_projector_bias"):
        del out[key]
    return dict(out, model_type="vipllava", architectures=["VipLlavaForConditionalGeneration"],
                projector_layernorm_eps=v.projector_eps)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return llava.vision_rules(cfg) + [Rule.of(f"{PROJECTOR}projector_layernorm.{w}", f"vision.projector.norm.{w}")
                                      for w in ("weight", "bias")]


_text = FAMILIES[llava.TEXT]
FAMILIES.register("vipllava")(Family(text_rules(_text.rules), to_config, from_config,
                                     _text.ignore + (r"^model\.vision_tower\.post_layernorm\.",),
                                     canonical=canonical_name, tied_by_checkpoint=True, more_rules=vision_rules))
