"""SmolVLM (`model_type: smolvlm`, SmolVLMForConditionalGeneration; Marafioti et al. 2025) and Idefics3 (`idefics3`,
Idefics3ForConditionalGeneration; Lauren\u00e7on et al. 2024), the same model under two names: a SigLIP tower for
images of any size up to image_size (position_buckets: NaViT's fractional positions, padded patches masked by
pixel_attention_mask), always post-normed, whose patch grid the connector pixel-shuffles by scale_factor and maps
by one linear layer without bias into a LLaMA text model, at the positions of the image token. The text model is
read by the llama family's rules under model.text_model. (multimodal.py), the tower by vision_towers.py's under
model.vision_model.; the names are the same in published checkpoints and in what transformers 5 saves."""
from __future__ import annotations

from functools import partial

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import tower_fields, tower_hf, tower_rules

TEXT = "llama"
TOWER = "model.vision_model."
# model_type -> (architecture, the vision_config's model_type)
TYPES = {"smolvlm": ("SmolVLMForConditionalGeneration", "smolvlm_vision"),
         "idefics3": ("Idefics3ForConditionalGeneration", "idefics3_vision")}
# what transformers' vision config class assumes for fields a config.json leaves out (SigLIP-so400m's shape, with
# patch 32 and image 224); and its text config when the whole text_config is left out
VISION_DEFAULTS = dict(hidden_size=1152, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=16,
                        image_size=224, patch_size=32, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")
_TEXT_DEFAULTS = dict(rms_norm_eps=1e-5)


def to_config(kind: str, hf: dict) -> ModelConfig:
    text = {"model_type": TEXT, **(hf.get("text_config") or _TEXT_DEFAULTS)}
    vision = {**VISION_DEFAULTS, **(hf.get("vision_config") or {})}
    if text["model_type"] != TEXT or vision.get("model_type", TYPES[kind][1]) != TYPES[kind][1]:
        raise LlmarchError(f"{kind} with a {text['model_type']!r} text model and a {vision.get('model_type')!r} "
                           f"tower is not supported; supported: {TEXT} with {TYPES[kind][1]}")
    fields = dict(image_token_id=hf.get("image_token_id", 128257),
                  **tower_fields({**vision, "model_type": "siglip_vision_model"}), post_norm=True,
                  position_buckets=True, projector="pixel_shuffle", shuffle_factor=hf.get("scale_factor", 2),
                  projector_bias=False)
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    return cfg.replace(vision=fields, hf_model_type=kind)


def from_config(kind: str, cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "pixel_shuffle" or v.projector_bias or not v.position_buckets:
        raise LlmarchError(f"{kind} writes a tower with position_buckets and a pixel_shuffle projector without bias")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    tower = {k: x for k, x in tower_hf(v).items() if k != "vision_use_head"}
    return dict(model_type=kind, architectures=[TYPES[kind][0]], text_config=text,
                vision_config={**tower, "model_type": TYPES[kind][1]}, image_token_id=v.image_token_id,
                scale_factor=v.shuffle_factor, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(vision_config(cfg.vision), TOWER) + [
        Rule.of("model.connector.modality_projection.proj.weight", "vision.projector.proj.weight")]


_text = FAMILIES[TEXT]
for _kind in TYPES:
    FAMILIES.register(_kind)(Family(text_rules(_text.rules, "text_model"), partial(to_config, _kind),
                                    partial(from_config, _kind), _text.ignore, tied_by_checkpoint=True,
                                    more_rules=vision_rules))
