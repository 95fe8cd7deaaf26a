"""Gemma 3 with its images (`model_type: gemma3`, Gemma3ForConditionalGeneration, the 4B-27B models; Gemma Team 2025,
"Gemma 3 Technical Report", §2.1): gemma3.py's text model under model.language_model., a SigLIP tower
(vision_towers.py) whose output, after its post_layernorm, Gemma3MultiModalProjector average-pools to
mm_tokens_per_image features, normalises with Gemma's (1 + g) RMSNorm and projects by a matrix stored as
(vision width, text width) without bias (projector pool_norm_linear). The features take the image token's positions
unscaled (transformers 5 scales Gemma's token embeddings inside the embedding, before they are written), and each
image's run of tokens attends to itself both ways on every layer, full and sliding (bidirectional_token: what
transformers does with the processor's token_type_ids, which Gemma3Processor always returns; called without them it
reads images causally). boi_token_index and eoi_token_index, which only the processor reads, are written as
transformers' defaults (those of every published Gemma 3)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from . import gemma3
from .hf import FAMILIES, Family
from .llama import IGNORE
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, canonical_name, tower_fields, tower_hf, tower_rules

TOWER = "siglip_vision_model"


def to_config(hf: dict) -> ModelConfig:
    vision = {"model_type": TOWER, **(hf.get("vision_config") or {})}
    if vision["model_type"] != TOWER:
        raise LlmarchError(f"gemma3 with a {vision['model_type']!r} vision tower is not supported; supported: {TOWER}")
    token = hf.get("image_token_index", hf.get("image_token_id", 262144))
    fields = dict(image_token_id=token, **tower_fields(vision), post_norm=True, projector="pool_norm_linear",
                  projector_bias=False, pool_tokens=hf.get("mm_tokens_per_image", 256))
    return gemma3.multimodal_config(hf).replace(vision=fields, hf_model_type="gemma3", bidirectional_token=token)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.vision is None:
        raise LlmarchError("gemma3 is Gemma 3 with its vision tower; export a text model with "
                           "hf_model_type='gemma3_text'")
    v = vision_config(cfg.vision)
    if v.projector != "pool_norm_linear" or v.projector_bias or not v.post_norm or v.feature_layers is not None \
            or cfg.bidirectional_token != v.image_token_id:
        raise LlmarchError("gemma3 writes a pooled, normed projection without bias of a post-normed tower's output, "
                           "each image's tokens attending both ways (bidirectional_token = the image token)")
    text = gemma3.from_config(cfg.replace(vision=None, hf_model_type="gemma3_text", bidirectional_token=None))
    text.pop("architectures", None)
    return dict(model_type="gemma3", architectures=["Gemma3ForConditionalGeneration"], text_config=text,
                vision_config=tower_hf(v), mm_tokens_per_image=v.pool_tokens, image_token_index=v.image_token_id,
                tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(vision_config(cfg.vision)) + [
        Rule.of(PROJECTOR + "mm_input_projection_weight", "vision.projector.proj.weight", "transposed"),
        Rule.of(PROJECTOR + "mm_soft_emb_norm.weight", "vision.projector.norm.weight")]


FAMILIES.register("gemma3")(Family(text_rules(gemma3.RULES), to_config, from_config,
                                   IGNORE + (r"^model\.vision_tower\.head\.",), canonical=canonical_name,
                                   tied_by_checkpoint=True, more_rules=vision_rules))
