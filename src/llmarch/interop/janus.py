"""Janus and Janus-Pro's understanding path (`model_type: janus`, JanusForConditionalGeneration; Wu et al. 2024,
"Janus: Decoupling Visual Encoding for Unified Multimodal Understanding and Generation", \u00a73.1; Chen et al. 2025,
"Janus-Pro"): image in, text out. Its understanding encoder is a SigLIP ViT (JanusVisionModel, `model.vision_model.*`:
no class token, a convolution with bias, q, k and v with biases where attention_bias is on, the output projection
`projection_layer`, an MLP mlp_ratio times the width, `post_layernorm`) whose output goes through the aligner
(`model.aligner.fc1`, the tower's activation, `model.aligner.hidden_layers.0`: projector `mlp`, projection_dim the
text width) into a LLaMA text model at the image token's positions, as DeepSeek-VL's (deepseek_vl.py).

The generation path (the VQ-VAE `model.vqmodel.*`, `generation_embeddings`, `generation_aligner`, `generation_head`:
images out as VQ tokens) is not read: llmarch generates text. Written back, a checkpoint has transformers' default
vq_config (its widths the text model's) and no generation weights (transformers initialises them). Images from
files: JanusImageProcessor (vision/square_images.py, DeepSeek-VL's) and JanusProcessor's prompt."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from ..vision.preprocess import PROCESSOR_FILE, PROCESSORS, side_config
from ..vision.prompt_parts import PROMPTS, image_token, named_token, substituted
from ..vision.square_images import SquareImages
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .llava import TEXT, llama_text, llama_text_hf
from .mapping import Rule
from .multimodal import text_name, text_rules
from .vision_towers import tower_rules

TOWER, ALIGNER = "model.vision_model.", "model.aligner."
# JanusVisionConfig's defaults, for fields a config.json leaves out
_VISION = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_channels=3, image_size=384,
               patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6, mlp_ratio=4.0, attention_bias=True,
               projection_dim=2048, use_qk_norm=False, depth=2)
# JanusProcessor's system prompt (use_default_system_prompt)
SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content that the "
          "user provides, and assist the user with a variety of tasks using natural language.\n\n")


def to_config(hf: dict) -> ModelConfig:
    cfg = llama_text(hf)
    vision = {**_VISION, **(hf.get("vision_config") or {})}
    # transformers' q_norm and k_norm are LayerNorms of the width applied per head, which fail on any tower with more
    # than one head; an aligner of other depth is not LLaVA's MLP
    if vision["use_qk_norm"] or vision["depth"] != 2 or vision["projection_dim"] != cfg.d_model:
        raise LlmarchError(f"janus: vision use_qk_norm {vision['use_qk_norm']}, depth {vision['depth']}, "
                           f"projection_dim {vision['projection_dim']}: supported is no QK-norm and an aligner of "
                           f"depth 2 into the text width {cfg.d_model}")
    width, act = vision["hidden_size"], read_activation(vision, "janus vision tower", "hidden_act", "gelu")
    if not isinstance(vision["image_size"], int) or not isinstance(vision["patch_size"], int):
        raise LlmarchError("janus: vision image_size and patch_size must be integers (square images and patches)")
    fields = dict(image_token_id=hf.get("image_token_id", 100581), width=width, n_layers=vision["num_hidden_layers"],
                  n_heads=vision["num_attention_heads"], ffn_hidden=int(width * vision["mlp_ratio"]), act=act,
                  image_size=vision["image_size"], patch_size=vision["patch_size"], channels=vision["num_channels"],
                  norm_eps=float(vision["layer_norm_eps"]), qkv_bias=bool(vision["attention_bias"]), patch_bias=True,
                  class_token=False, pre_norm=False, post_norm=True, projector="mlp", projector_act=act)
    return cfg.replace(vision=fields, hf_model_type="janus")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "mlp" or v.projector_act != v.act or v.projector_hidden is not None or not v.projector_bias \
            or v.feature_layers is not None or v.class_token or v.pre_norm or not v.post_norm or not v.patch_bias \
            or v.norm != "layernorm" or v.qk_norm or v.layer_scale:
        raise LlmarchError("janus writes a SigLIP-style tower (no class token, patch bias, post-norm) and an MLP "
                           "aligner of the text width with biases and the tower's activation")
    act = hf_activation(v.act, PYTORCH_TANH)
    vision = dict(model_type="janus_vision_model", hidden_size=v.width, num_hidden_layers=v.n_layers,
                  num_attention_heads=v.n_heads, num_channels=v.channels, image_size=v.image_size,
                  patch_size=v.patch_size, hidden_act=act, layer_norm_eps=v.norm_eps, mlp_ratio=v.ffn_hidden / v.width,
                  attention_bias=v.qkv_bias, projection_dim=cfg.d_model, depth=2, num_image_tokens=v.n_patches)
    if int(v.width * vision["mlp_ratio"]) != v.ffn_hidden:
        raise LlmarchError(f"janus sizes the tower's MLP as int(width x mlp_ratio), which gives no {v.ffn_hidden}")
    return dict(model_type="janus", architectures=["JanusForConditionalGeneration"], text_config=llama_text_hf(cfg),
                vision_config=vision, vq_config=dict(projection_dim=cfg.d_model, image_token_embed_dim=cfg.d_model),
                image_token_id=v.image_token_id, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(vision_config(cfg.vision), TOWER, out="projection_layer") + [
        Rule.of(f"{ALIGNER}{hf}.{w}", f"vision.projector.{ours}.{w}")
        for hf, ours in (("fc1", "fc1"), ("hidden_layers.0", "fc2")) for w in ("weight", "bias")]


def janus_layout(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """JanusProcessor (text generation): each image token becomes the tokenizer's boi_token, the image's count of
    image tokens and its eoi_token (a prompt without one gets one per image at its start); with
    use_default_system_prompt (processor_config.json) the system prompt goes first; tokenized as usual (BOS first).
    generation_mode 'image' (a prompt for an image out) is refused."""
    token, counts = image_token(v, tok), v.image_tokens(arguments)
    settings = side_config(getattr(tok, "side_files", {}), PROCESSOR_FILE)
    if settings.get("generation_mode", "text") != "text":
        raise LlmarchError(f"janus: generation_mode {settings['generation_mode']!r} (images out, the VQ-VAE path) is "
                           "not supported; llmarch reads Janus's understanding path (text out)")
    boi, eoi = named_token(tok, "boi_token"), named_token(tok, "eoi_token")
    text = substituted(prompt, token, counts, lambda n: boi + token * n + eoi)
    return tok.encode((SYSTEM if settings.get("use_default_system_prompt") else "") + text)


_text = FAMILIES[TEXT]
FAMILIES.register("janus")(Family(
    text_rules(_text.rules), to_config, from_config,
    _text.ignore + (r"^model\.(vqmodel|generation_embeddings|generation_aligner|generation_head)\.",),
    canonical=text_name, tied_by_checkpoint=True, more_rules=vision_rules))
PROCESSORS.register("JanusImageProcessor")(SquareImages.from_config)
PROMPTS.register("janus")(janus_layout)
