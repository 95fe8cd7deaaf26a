"""Idefics2 (`model_type: idefics2`, Idefics2ForConditionalGeneration; Lauren\u00e7on et al. 2024, "What matters when
building vision-language models?"): Idefics3's SigLIP tower for images of any size (position_buckets; a patch is
real only when all its pixels are, whole_patches), post-normed, then a connector of a gated MLP into the text width
and a perceiver resampler to resampler_n_latents features an image (vision/perceiver.py), into a Mistral text model
at the positions of the image token. Names as transformers 5 saves them and as published: model.vision_model.*,
model.connector.modality_projection.*, model.connector.perceiver_resampler.*, model.text_model.*, lm_head."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from ..vision.resampler_config import ResamplerConfig
from .activations import hf_activation, read_activation
from .hf import FAMILIES, Family
from .llava_next import _TEXT_DEFAULTS
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import tower_fields, tower_hf, tower_rules

TEXT = "mistral"
TOWER, CONNECTOR = "model.vision_model.", "model.connector."
# what Idefics2Config assumes for a text_config (MistralConfig's, with its own three) and Idefics2VisionConfig and
# Idefics2PerceiverConfig for fields a config.json leaves out
_TEXT = {**_TEXT_DEFAULTS[TEXT], "max_position_embeddings": 4096 * 8, "rms_norm_eps": 1e-5, "pad_token_id": 0}
_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224,
               patch_size=32, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")
_PERCEIVER = dict(hidden_act="silu", hidden_size=4096, rms_norm_eps=1e-6, resampler_n_latents=64, resampler_depth=3,
                  resampler_n_heads=16, resampler_head_dim=96, num_key_value_heads=4)


def to_config(hf: dict) -> ModelConfig:
    text = {**_TEXT, "model_type": TEXT, **(hf.get("text_config") or {})}
    if text["model_type"] != TEXT:
        raise LlmarchError(f"idefics2 with a {text['model_type']!r} text model is not supported; supported: {TEXT}")
    p = {**_PERCEIVER, **(hf.get("perceiver_config") or {})}
    # Idefics2Config: a perceiver of another width than the text's takes the text's width and eps
    eps = p["rms_norm_eps"] if p["hidden_size"] == text["hidden_size"] else text["rms_norm_eps"]
    resampler = dict(latents=p["resampler_n_latents"], depth=p["resampler_depth"], n_heads=p["resampler_n_heads"],
                     head_dim=p["resampler_head_dim"], kv_heads=p["num_key_value_heads"],
                     proj_hidden=text["intermediate_size"], eps=float(eps),
                     proj_act=read_activation(text, "idefics2 text", "hidden_act", "silu"),
                     act=read_activation(p, "idefics2 perceiver", "hidden_act", "silu"))
    fields = dict(image_token_id=hf.get("image_token_id", 32001),
                  **tower_fields({**_VISION, **(hf.get("vision_config") or {}), "model_type": "siglip_vision_model"}),
                  post_norm=True, position_buckets=True, whole_patches=True, projector="perceiver",
                  resampler=resampler)
    cfg = FAMILIES[TEXT].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})
    return cfg.replace(vision=fields, hf_model_type="idefics2")


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if v.projector != "perceiver" or not v.whole_patches:
        raise LlmarchError("idefics2 writes a tower with whole_patches and a perceiver projector")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    r = ResamplerConfig(**v.resampler)
    if (r.proj_hidden, r.proj_act) != (text["intermediate_size"], read_activation(text, TEXT, "hidden_act", "silu")):
        raise LlmarchError(f"idefics2's modality projection has the text model's MLP width and activation "
                           f"({text['intermediate_size']}, {text['hidden_act']}), not {r.proj_hidden}, {r.proj_act}")
    tower = {k: x for k, x in tower_hf(v).items() if k != "vision_use_head"}
    perceiver = dict(hidden_act=hf_activation(r.act), hidden_size=cfg.d_model, rms_norm_eps=r.eps,
                     resampler_n_latents=r.latents, resampler_depth=r.depth, resampler_n_heads=r.n_heads,
                     resampler_head_dim=r.head_dim, num_key_value_heads=r.kv_heads)
    return dict(model_type="idefics2", architectures=["Idefics2ForConditionalGeneration"], text_config=text,
                vision_config={**tower, "model_type": "idefics2_vision"}, perceiver_config=perceiver,
                image_token_id=v.image_token_id, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    v = vision_config(cfg.vision)
    ours, resampler = "vision.projector.", CONNECTOR + "perceiver_resampler."
    rules = [Rule.of(f"{CONNECTOR}modality_projection.{p}_proj.weight", f"{ours}projection.{p}.weight")
             for p in ("gate", "up", "down")]
    rules += [Rule.of(resampler + name, ours + name) for name in ("latents", "norm.weight")]
    for j in range(v.resampler["depth"]):
        hf, mine = f"{resampler}layers.{j}.", f"{ours}layers.{j}."
        rules += [Rule.of(f"{hf}self_attn.{p}_proj.weight", f"{mine}{p}.weight") for p in "qkvo"]
        rules += [Rule.of(f"{hf}mlp.{p}_proj.weight", f"{mine}mlp.{p}.weight") for p in ("gate", "up", "down")]
        rules += [Rule.of(f"{hf}{theirs}.weight", f"{mine}{norm}.weight") for theirs, norm in (
            ("input_latents_norm", "latents_norm"), ("input_context_norm", "context_norm"),
            ("post_attention_layernorm", "ffn_norm"))]
    return tower_rules(v, TOWER) + rules


_text = FAMILIES[TEXT]
FAMILIES.register("idefics2")(Family(text_rules(_text.rules, "text_model"), to_config, from_config, _text.ignore,
                                     tied_by_checkpoint=True, more_rules=vision_rules))
