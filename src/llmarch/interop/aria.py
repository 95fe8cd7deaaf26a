"""Aria (`model_type: aria`, AriaForConditionalGeneration; Rhymes AI 2024, "Aria: An Open Multimodal Native
Mixture-of-Experts Model", arXiv 2410.05993, \u00a73.1): Idefics3's SigLIP tower (`model.vision_tower.*`: images of any
size up to image_size, bucketed positions, padded patches masked by the pixel mask, any of whose pixels real makes a
patch real) whose last block's output (hidden state -1, before the unused post_layernorm, which is not read) goes
through the projector: learned queries cross-attending to the patches, as many as projector_patch_to_query_dict
gives the image's patch count, then a LayerNorm and a tanh-GELU MLP without biases (`model.multi_modal_projector.*`:
projector `cross_attention`, vision/query_attention.py) into Aria's MoE text model (aria_text.py, under
`model.language_model.*`), at the image token's positions. Published and transformers-saved checkpoints name them
vision_tower.*, multi_modal_projector.*, language_model.model.* (vision_towers.canonical_name). Images from files:
AriaImageProcessor (vision/aria_images.py) and AriaProcessor's prompt."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.aria_images import AriaImages
from ..vision.config import vision_config
from ..vision.preprocess import PROCESSORS
from ..vision.prompt_parts import PROMPTS, image_token, processor, substituted
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .smolvlm import VISION_DEFAULTS
from .vision_towers import PROJECTOR, canonical_name, tower_fields, tower_hf, tower_rules

TEXT, TOWER_TYPE = "aria_text", "idefics3_vision"
_QUERIES = {1225: 128, 4900: 256}  # AriaConfig's projector_patch_to_query_dict


def to_config(hf: dict) -> ModelConfig:
    text = {"model_type": TEXT, **(hf.get("text_config") or {})}
    vision = {"model_type": TOWER_TYPE, **VISION_DEFAULTS, **(hf.get("vision_config") or {})}
    if text["model_type"] != TEXT or vision["model_type"] != TOWER_TYPE:
        raise LlmarchError(f"aria with a {text['model_type']!r} text model and a {vision['model_type']!r} tower is "
                           f"not supported; supported: {TEXT} with {TOWER_TYPE}")
    if hf.get("vision_feature_layer", -1) != -1:
        raise LlmarchError(f"aria: vision_feature_layer {hf['vision_feature_layer']!r} is not supported (-1, the last "
                           "block's output)")
    queries = hf.get("projector_patch_to_query_dict") or _QUERIES
    fields = dict(image_token_id=hf.get("image_token_index", 9),
                  **tower_fields({**vision, "model_type": "siglip_vision_model"}), post_norm=False,
                  position_buckets=True, projector="cross_attention", projector_act="gelu_tanh", projector_bias=False,
                  patch_queries=sorted([int(n), int(q)] for n, q in queries.items()))
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    return cfg.replace(vision=fields, hf_model_type="aria")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "cross_attention" or v.projector_act != "gelu_tanh" or v.projector_bias \
            or v.projector_hidden is not None or v.projector_eps != 1e-5 or not v.position_buckets \
            or v.whole_patches or v.post_norm:
        raise LlmarchError("aria writes Idefics3's tower (position_buckets, its last block's output) and a "
                           "cross_attention projector (tanh-GELU MLP without biases, LayerNorms of eps 1e-5)")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    tower = {k: x for k, x in tower_hf(v).items() if k != "vision_use_head"}
    return dict(model_type="aria", architectures=["AriaForConditionalGeneration"], text_config=text,
                vision_config={**tower, "model_type": TOWER_TYPE}, vision_feature_layer=-1,
                projector_patch_to_query_dict={n: q for n, q in v.patch_queries},
                image_token_index=v.image_token_id, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    cross, ours, wb = f"{PROJECTOR}cross_attn.", "vision.projector.", ("weight", "bias")
    return tower_rules(vision_config(cfg.vision)) + [Rule.of(f"{PROJECTOR}query", f"{ours}cross.query")] + [
        Rule.of(f"{cross}{p}_proj.weight", f"{ours}cross.{p}_proj.weight") for p in "qkv"] + [
        Rule.of(f"{cross}{hf}.{w}", f"{ours}cross.{mine}.{w}") for w in wb
        for hf, mine in (("layer_norm", "norm_q"), ("layer_norm_kv", "norm_kv"), ("linear", "linear"),
                         ("multihead_attn.out_proj", "attn.out_proj"))] + [
        Rule.of(f"{cross}multihead_attn.in_proj_{w}", f"{ours}cross.attn.in_proj_{w}") for w in wb] + [
        Rule.of(f"{PROJECTOR}layer_norm.{w}", f"{ours}norm.{w}") for w in wb] + [
        Rule.of(f"{PROJECTOR}feed_forward.linear_{hf}.weight", f"{ours}fc{n}.weight") for hf, n in (("in", 1),
                                                                                                  ("out", 2))]


def aria_layout(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """AriaProcessor: each image token becomes the image's crops times a crop's queries of them (the processor
    counts every image's crops as the most any image of the call has: the same where they agree, the only case its
    model reads), the text tokenized as usual; a prompt without one gets one per image at its start."""
    token, split, per = image_token(v, tok), processor(tok, "aria"), v.image_tokens(arguments)[0]
    return tok.encode(substituted(prompt, token, images, lambda image: token * (len(split.crops(image)) * per)))


# AriaProcessor calls its image processor with these whatever the image processor's config says
aria_layout.images_kwargs = {"max_image_size": 980, "split_image": False}

_text = FAMILIES[TEXT]
FAMILIES.register("aria")(Family(text_rules(_text.rules), to_config, from_config,
                                 _text.ignore + (r"^model\.vision_tower\.post_layernorm\.",), canonical=canonical_name,
                                 tied_by_checkpoint=True, more_rules=vision_rules, needs=_text.needs))
PROCESSORS.register("AriaImageProcessor")(AriaImages.from_config)
PROMPTS.register("aria")(aria_layout)
