"""LLaVA (`model_type: llava`, LlavaForConditionalGeneration; Liu et al. 2023, "Visual Instruction Tuning", and
LLaVA-1.5's MLP projector): a CLIP (or SigLIP) tower whose hidden states at vision_feature_layer (default -2, the
second-to-last block's output), without the class token (vision_feature_select_strategy 'default'), go through a
two-layer MLP into a LLaMA text model, at the positions of the image token. The text model is read by the llama
family's rules under model.language_model. (multimodal.py), the tower by vision_towers.py's. The tower's
post_layernorm, which LLaVA never applies, is not read, and so not written back (transformers initialises it)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, canonical_name, tower_fields, tower_hf, tower_rules

TEXT = "llama"
# what transformers' LlamaConfig assumes for fields a published text_config leaves out (llava-1.5's names none)
_TEXT_DEFAULTS = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)


def to_config(hf: dict) -> ModelConfig:
    return llama_text(hf).replace(vision=vision_fields(hf), hf_model_type="llava")


def llama_text(hf: dict) -> ModelConfig:
    """The LLaMA text model of a wrapper config (LLaVA's, DeepSeek-VL's, Janus's: text_config, LlamaConfig's
    defaults where it leaves them out)."""
    text = {"model_type": TEXT, **_TEXT_DEFAULTS, **(hf.get("text_config") or {})}
    if text["model_type"] != TEXT:
        raise LlmarchError(f"{hf['model_type']} with a {text['model_type']!r} text model is not supported; "
                           f"supported: {TEXT}")
    return FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})


def llama_text_hf(cfg: ModelConfig) -> dict:
    """llama_text's inverse: the text_config of a wrapper config."""
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    return text


def vision_fields(hf: dict, strategy: str = "default", layer: int = -2, image_token: int = 32000,
                  tower: str = "clip_vision_model") -> dict:
    """The vision dict of a LLaVA-style config (its tower, feature layers, MLP projector); the arguments are the
    family's config class defaults (LlavaConfig's here)."""
    strategy = hf.get("vision_feature_select_strategy", strategy)
    layer = hf.get("vision_feature_layer", layer)
    if strategy not in ("default", "full"):
        raise LlmarchError(f"{hf['model_type']}: vision_feature_select_strategy {strategy!r} is not supported "
                           "(default, full)")
    return dict(image_token_id=hf.get("image_token_index", image_token),
                **tower_fields(hf.get("vision_config") or {"model_type": tower}),
                feature_layers=[layer] if isinstance(layer, int) else list(layer),
                drop_first=strategy == "default", projector="mlp",
                projector_act=read_activation(hf, hf["model_type"], "projector_hidden_act", "gelu"),
                projector_bias=hf.get("multimodal_projector_bias", True))


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "mlp" or v.feature_layers is None or v.post_norm or v.projector_hidden is not None:
        raise LlmarchError("llava writes an MLP projector of the text width over the tower's hidden states "
                           "(feature_layers, no post_norm)")
    return dict(model_type="llava", architectures=["LlavaForConditionalGeneration"], text_config=llama_text_hf(cfg),
                **vision_hf(v), tie_word_embeddings=cfg.tie_embeddings)


def vision_hf(v) -> dict:
    """vision_fields' inverse: the config keys of the tower, feature layers and projector."""
    layers = v.feature_layers
    return dict(vision_config=tower_hf(v), image_token_index=v.image_token_id,
                vision_feature_layer=layers[0] if len(layers) == 1 else layers,
                vision_feature_select_strategy="default" if v.drop_first else "full",
                projector_hidden_act=hf_activation(v.projector_act, PYTORCH_TANH),
                multimodal_projector_bias=v.projector_bias)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    v = vision_config(cfg.vision)
    wb = ("weight", "bias") if v.projector_bias else ("weight",)
    return tower_rules(v) + [Rule.of(f"{PROJECTOR}linear_{n}.{w}", f"vision.projector.fc{n}.{w}")
                             for n in (1, 2) for w in wb]


_text = FAMILIES[TEXT]
FAMILIES.register("llava")(Family(text_rules(_text.rules), to_config, from_config,
                                  _text.ignore + (r"^model\.vision_tower\.post_layernorm\.",),
                                  canonical=canonical_name, tied_by_checkpoint=True, more_rules=vision_rules))
