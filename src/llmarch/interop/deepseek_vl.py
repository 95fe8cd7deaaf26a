"""DeepSeek-VL (`model_type: deepseek_vl`, DeepseekVLForConditionalGeneration; Lu et al. 2024, "DeepSeek-VL: Towards
Real-World Vision-Language Understanding", \u00a72.1, its 1.3B model): a SigLIP tower (`model.vision_model.*`,
transformers' SiglipVisionModel) whose output after its post_layernorm goes through the two-layer GELU MLP aligner
(`model.aligner.linear1/2`, the text width throughout: projector `mlp`) into a LLaMA text model
(`model.language_model.*`), at the positions of the image token (<image_placeholder>). The SigLIP attention-pooling
head, which DeepSeek-VL never applies, is not read (so not written back: transformers initialises it). Images from
files: DeepseekVLImageProcessor (vision/square_images.py) and DeepseekVLProcessor's prompt, each image token as
num_image_tokens of them (LLaVA's layout: vision/prompts.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from ..vision.preprocess import PROCESSORS
from ..vision.prompts import PROMPTS, llava as llava_layout
from ..vision.square_images import SquareImages
from .hf import FAMILIES, Family
from .llava import TEXT, llama_text, llama_text_hf
from .mapping import Rule
from .multimodal import text_name, text_rules
from .vision_towers import tower_fields, tower_hf, tower_rules

TOWER, ALIGNER = "model.vision_model.", "model.aligner."


def to_config(hf: dict) -> ModelConfig:
    vision = {"model_type": "siglip_vision_model", **(hf.get("vision_config") or {})}
    if vision["model_type"] != "siglip_vision_model":
        raise LlmarchError(f"{hf['model_type']} with a {vision['model_type']!r} vision tower is not supported; "
                           "supported: siglip_vision_model")
    fields = dict(image_token_id=hf.get("image_token_id", 100015), **tower_fields(vision), post_norm=True,
                  projector="mlp", projector_act="gelu")
    return llama_text(hf).replace(vision=fields, hf_model_type="deepseek_vl")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if (v.projector, v.projector_act, v.projector_hidden, v.feature_layers) != ("mlp", "gelu", None, None) \
            or not v.post_norm or not v.projector_bias:
        raise LlmarchError("deepseek_vl writes a GELU MLP aligner with biases, of the text width, over the post-normed "
                           "output of a SigLIP tower")
    return dict(model_type="deepseek_vl", architectures=["DeepseekVLForConditionalGeneration"],
                text_config=llama_text_hf(cfg), vision_config=tower_hf(v), image_token_id=v.image_token_id,
                tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(vision_config(cfg.vision), TOWER) + [
        Rule.of(f"{ALIGNER}linear{n}.{w}", f"vision.projector.fc{n}.{w}") for n in (1, 2) for w in ("weight", "bias")]


_text = FAMILIES[TEXT]
FAMILIES.register("deepseek_vl")(Family(text_rules(_text.rules), to_config, from_config,
                                        _text.ignore + (r"^model\.vision_model\.head\.",), canonical=text_name,
                                        tied_by_checkpoint=True, more_rules=vision_rules))
PROCESSORS.register("DeepseekVLImageProcessor")(SquareImages.from_config)
PROMPTS.register("deepseek_vl")(llava_layout)  # DeepseekVLProcessor: each image token as num_image_tokens of them
