"""LFM2-VL (`model_type: lfm2_vl`, Lfm2VlForConditionalGeneration; Liquid AI 2025): SigLIP 2's NaFlex tower
(`siglip2_vision_model`, vision/naflex.py: patchified images of any aspect ratio, positions resized to each image's
grid), post-normed, each image's patch grid pixel-unshuffled by downsample_factor on its own, then a LayerNorm
(projector_use_layernorm; nn.LayerNorm's eps 1e-5) and a two-layer MLP of projector_hidden_size (the norm_mlp
projector, or mlp without the norm) into an LFM2 text model (lfm2.py) at the positions of the image token. Names:
model.vision_tower.* (published checkpoints' model.vision_tower.vision_model.* read as those),
model.multi_modal_projector.{layer_norm,linear_1,linear_2}, model.language_model.*, lm_head."""
from __future__ import annotations

import dataclasses

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, canonical_name, tower_fields, tower_hf, tower_rules

TEXT = "lfm2"
# what Siglip2VisionConfig assumes for fields a config.json leaves out
_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16,
               layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh", num_patches=256, vision_use_head=True)


def to_config(hf: dict) -> ModelConfig:
    text = {"model_type": TEXT, **(hf.get("text_config") or {})}
    vision = {**_VISION, **(hf.get("vision_config") or {})}
    if text["model_type"] != TEXT or vision.get("model_type", "siglip2_vision_model") != "siglip2_vision_model":
        raise LlmarchError(f"lfm2_vl with a {text['model_type']!r} text model and a {vision.get('model_type')!r} "
                           f"tower is not supported; supported: {TEXT} with siglip2_vision_model")
    if vision["vision_use_head"]:  # transformers builds it, LFM2-VL never runs it
        raise LlmarchError("lfm2_vl: a vision tower with vision_use_head (an attention-pooling head) is not supported")
    side = round(vision["num_patches"] ** 0.5)
    if side * side != vision["num_patches"]:
        raise LlmarchError(f"lfm2_vl: vision num_patches {vision['num_patches']} is not a square grid of positions")
    norm = hf.get("projector_use_layernorm", True)
    fields = dict(image_token_id=hf.get("image_token_id", 396),
                  **tower_fields({**vision, "model_type": "siglip_vision_model",
                                  "image_size": side * vision["patch_size"]}),
                  post_norm=True, naflex=True, shuffle_factor=hf.get("downsample_factor", 2),
                  projector="norm_mlp" if norm else "mlp", projector_hidden=hf.get("projector_hidden_size", 2560),
                  projector_act=read_activation(hf, "lfm2_vl", "projector_hidden_act", "gelu"),
                  projector_bias=hf.get("projector_bias", True))
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    return cfg.replace(vision=fields, hf_model_type="lfm2_vl")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if not v.naflex or v.projector_eps != 1e-5:
        raise LlmarchError("lfm2_vl writes a NaFlex tower (vision naflex) and a projector LayerNorm of eps 1e-5")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    tower = {k: x for k, x in tower_hf(dataclasses.replace(v, naflex=False)).items() if k != "image_size"}
    tower.update(model_type="siglip2_vision_model", num_patches=v.n_patches)
    return dict(model_type="lfm2_vl", architectures=["Lfm2VlForConditionalGeneration"], text_config=text,
                vision_config=tower, image_token_id=v.image_token_id, downsample_factor=v.shuffle_factor,
                projector_hidden_size=v.projector_hidden or cfg.d_model, projector_use_layernorm=v.projector ==
                "norm_mlp", projector_hidden_act=hf_activation(v.projector_act, PYTORCH_TANH),
                projector_bias=v.projector_bias, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    v = vision_config(cfg.vision)
    wb = ("weight", "bias") if v.projector_bias else ("weight",)
    norm = [Rule.of(f"{PROJECTOR}layer_norm.{w}", f"vision.projector.norm.{w}") for w in ("weight", "bias")]
    return tower_rules(v) + (norm if v.projector == "norm_mlp" else []) + [
        Rule.of(f"{PROJECTOR}linear_{n}.{w}", f"vision.projector.fc{n}.{w}") for n in (1, 2) for w in wb]


_text = FAMILIES[TEXT]
FAMILIES.register("lfm2_vl")(Family(text_rules(_text.rules), to_config, from_config, _text.ignore,
                                    canonical=canonical_name, tied_by_checkpoint=True, more_rules=vision_rules))
