"""PaliGemma (`model_type: paligemma`, PaliGemmaForConditionalGeneration; Beyer et al. 2024): a SigLIP tower whose
output (after its post_layernorm) goes through one linear projection into a Gemma text model, at the positions of
the image token, unscaled (transformers 5 scales Gemma's token embeddings by sqrt(d_model) inside the embedding;
earlier releases divided the image features by the same factor before scaling all: the same sum); positions
counted from 1; a prefix-LM (prefix_lm): the image and the prompt attend to each other both ways, the generated
suffix causally (transformers' token_type_ids 0 and 1, its blockwise mask overlay). The text model is read by the
gemma family's rules under model.language_model. (multimodal.py), the tower by vision_towers.py's; a SigLIP
attention-pooling head (vision_use_head), which PaliGemma never applies, is not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, canonical_name, tower_fields, tower_hf, tower_rules

TEXT = "gemma"
# what transformers' PaliGemmaConfig assumes for sub-config fields a config.json leaves out
_TEXT_DEFAULTS = dict(hidden_size=2048, num_hidden_layers=18, intermediate_size=16384, num_attention_heads=8,
                      num_key_value_heads=1, vocab_size=257152)
_VISION_DEFAULTS = dict(model_type="siglip_vision_model", intermediate_size=4096, hidden_size=1152, patch_size=14,
                        image_size=224, num_hidden_layers=27, num_attention_heads=16)


def to_config(hf: dict) -> ModelConfig:
    text = {"model_type": TEXT, **_TEXT_DEFAULTS, **(hf.get("text_config") or {})}
    vision = {**_VISION_DEFAULTS, **(hf.get("vision_config") or {})}
    if text["model_type"] != TEXT or vision["model_type"] != "siglip_vision_model":
        raise LlmarchError(f"paligemma with a {text['model_type']!r} text model and a {vision['model_type']!r} tower "
                           f"is not supported; supported: {TEXT} with siglip_vision_model")
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    if hf.get("projection_dim", cfg.d_model) != cfg.d_model:
        raise LlmarchError(f"paligemma: projection_dim {hf['projection_dim']} differs from the text model's width "
                           f"{cfg.d_model}")
    fields = dict(image_token_id=hf.get("image_token_index", 256000), **tower_fields(vision), post_norm=True,
                  projector="linear")
    return cfg.replace(vision=fields, hf_model_type="paligemma", prefix_lm=True, position_offset=1)


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "linear" or v.feature_layers is not None or not v.post_norm or not v.projector_bias \
            or not cfg.prefix_lm or cfg.position_offset != 1:
        raise LlmarchError("paligemma writes a linear projector with bias over a post-normed tower's output, "
                           "into a prefix-LM counting positions from 1")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT, prefix_lm=False, position_offset=0))
    text.pop("architectures", None)
    return dict(model_type="paligemma", architectures=["PaliGemmaForConditionalGeneration"], text_config=text,
                vision_config=tower_hf(v), image_token_index=v.image_token_id, projection_dim=cfg.d_model,
                hidden_size=cfg.d_model, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(vision_config(cfg.vision)) + [Rule.of(f"{PROJECTOR}linear.{w}", f"vision.projector.proj.{w}")
                                                      for w in ("weight", "bias")]


_text = FAMILIES[TEXT]
FAMILIES.register("paligemma")(Family(text_rules(_text.rules), to_config, from_config,
                                      _text.ignore + (r"^model\.vision_tower\.head\.",),
                                      canonical=canonical_name, tied_by_checkpoint=True, more_rules=vision_rules))
