"""Llama 4 with its images (`model_type: llama4`, Llama4ForConditionalGeneration: Scout, Maverick; Meta 2025, "The
Llama 4 herd"): the text model is llama4.py's, under language_model.; the tower (transformers' Llama4VisionModel,
vision_model.*) is vision/tower.py's ViT with
- each patch embedded by an unfolded linear map without bias (patch_embedding.linear: our convolution's weight
  flattened, channel by channel, as nn.Unfold orders a patch), the class embedding after the patches, learned
  positions for both (positional_embedding_vlm), LayerNorms before and after the blocks (nn.LayerNorm's eps 1e-5,
  whatever norm_eps says), the class token's feature left out (VisionConfig.class_last);
- 2-D RoPE in its attention (rope_parameters.rope_theta; VisionConfig.rope_theta, tower.axial_rope), over adjacent
  dims, so q's and k's rows (and biases) are reordered per head to our halves (join "llama4_vision_qkv");
- exact GELU MLPs (transformers hard-codes nn.GELU whatever hidden_act says);
then the pixel-shuffle adapter and projector (vision_adapter.mlp.fc1, fc2; multi_modal_projector.linear_1: our
pixel_shuffle_mlp2 projector, 1 / pixel_shuffle_ratio its shuffle factor). Each tile's features go, in order, at
the positions of image_token_index (the processor's <|patch|>). Names as transformers 5's save_pretrained writes
them (and the published checkpoints hold): language_model.model.*, language_model.lm_head.weight, vision_model.*,
multi_modal_projector.*."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .hf import FAMILIES, Family
from .mapping import JOINS, LAYOUTS, Rule

TEXT = "llama4_text"
# Llama4VisionConfig's defaults, for the fields a config.json may leave out
_VISION = dict(hidden_size=768, intermediate_size=5632, num_hidden_layers=34, num_attention_heads=16, num_channels=3,
               image_size=448, patch_size=14, vision_output_dim=7680, pixel_shuffle_ratio=0.5,
               projector_input_dim=4096, projector_output_dim=4096)
IMAGE_TOKEN = 200092  # Llama4Config's image_token_index (<|patch|>)
V, OURS = "vision_model.", "vision.tower."


def _head_rows(cfg: ModelConfig) -> SimpleNamespace:
    """The tower's head size as _rope_pairs reads it: every dim of a head turns."""
    v = vision_config(cfg.vision)
    return SimpleNamespace(head_dim=v.width // v.n_heads, rotary_dim=v.width // v.n_heads)


_PAIRS_TO_OURS, _PAIRS_TO_HF, _ = LAYOUTS["rope_pairs"]
JOINS["llama4_vision_qkv"] = (
    lambda parts, cfg: torch.cat([_PAIRS_TO_OURS(parts[0], _head_rows(cfg)), _PAIRS_TO_OURS(parts[1], _head_rows(cfg)),
                                  parts[2]]),
    lambda t, cfg: [_PAIRS_TO_HF(part, _head_rows(cfg)) if n < 2 else part for n, part in enumerate(t.chunk(3))])


def _unfolded(t: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The unfolded patch embedding's (width, channels p p) as our convolution's (width, channels, p, p)."""
    v = vision_config(cfg.vision)
    return t.reshape(t.shape[0], v.channels, v.patch_size, v.patch_size)


LAYOUTS["unfolded_patch"] = (_unfolded, lambda t, cfg: t.flatten(1), lambda s: (s[0], s[1] * s[2] * s[3]))


def to_config(hf: dict) -> ModelConfig:
    vision = {**_VISION, **{k: x for k, x in (hf.get("vision_config") or {}).items() if x is not None}}
    ratio, width = vision["pixel_shuffle_ratio"], vision["hidden_size"]
    s = round(1 / ratio) if isinstance(ratio, (int, float)) and 0 < ratio <= 1 else 0
    if not s or s * ratio != 1:
        raise LlmarchError(f"llama4: pixel_shuffle_ratio {ratio!r} must be 1 / n for a whole n")
    if vision["intermediate_size"] != width * s * s:  # the adapter's fc1 reads intermediate_size-wide features
        raise LlmarchError(f"llama4: the vision adapter reads the shuffled features, {width * s * s} wide, as "
                           f"intermediate_size {vision['intermediate_size']} wide: they must agree")
    dims = {vision[k] for k in ("projector_input_dim", "projector_output_dim", "vision_output_dim")}
    if len(dims) != 1:
        raise LlmarchError("llama4: projector_input_dim, projector_output_dim and vision_output_dim must be one width "
                           f"(the adapter's fc2 is square and feeds the projector), got {sorted(dims)}")
    if not all(isinstance(vision[k], int) for k in ("image_size", "patch_size")):
        raise LlmarchError(f"llama4: vision image_size {vision['image_size']!r} and patch_size "
                           f"{vision['patch_size']!r} must be integers (square tiles)")
    theta = (vision.get("rope_parameters") or {}).get("rope_theta", vision.get("rope_theta", 10000.0))
    fields = dict(image_token_id=hf.get("image_token_index", hf.get("image_token_id", IMAGE_TOKEN)), width=width,
                  n_layers=vision["num_hidden_layers"], n_heads=vision["num_attention_heads"],
                  ffn_hidden=vision["intermediate_size"], act="gelu", image_size=vision["image_size"],
                  patch_size=vision["patch_size"], channels=vision["num_channels"], norm_eps=1e-5, patch_bias=False,
                  class_token=True, class_last=True, pre_norm=True, post_norm=True, rope_theta=float(theta),
                  projector="pixel_shuffle_mlp2", shuffle_factor=s, projector_act="gelu", projector_bias=False,
                  projector_hidden=dims.pop())
    text = FAMILIES[TEXT].to_config({**(hf.get("text_config") or {}), "model_type": TEXT,
                                     "_name_or_path": hf.get("_name_or_path") or "llama4"})
    return text.replace(vision=fields, hf_model_type="llama4")


# what from_config writes: every VisionConfig field that Llama4VisionModel fixes, as to_config reads it
_FIXED = dict(act="gelu", norm="layernorm", norm_eps=1e-5, qkv_bias=True, qk_norm=False, layer_scale=False,
              patch_bias=False, class_token=True, class_last=True, pre_norm=True, post_norm=True, feature_layers=None,
              drop_first=False, position_buckets=False, naflex=False, projector="pixel_shuffle_mlp2",
              projector_act="gelu", projector_bias=False, pool_tokens=None, held=False, grid_pinpoints=None)


def _needs(cfg: ModelConfig) -> str | None:
    """What keeps a model from being written as llama4 (asked before its rules): no vision model, or one whose
    fields Llama4VisionModel fixes otherwise."""
    if cfg.vision is None:
        return "a vision model (write a text-only model as llama4_text)"
    v = vision_config(cfg.vision)
    wrong = sorted(k for k, x in _FIXED.items() if getattr(v, k) != x) + (["rope_theta"] if v.rope_theta is None
                                                                          else [])
    if v.ffn_hidden != v.width * v.shuffle_factor ** 2:
        wrong.append("ffn_hidden (not width x shuffle_factor^2)")
    return f"Llama 4's vision model, which this one's vision {', '.join(wrong)} differ from" if wrong else None


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    hidden = v.projector_hidden or cfg.d_model
    vision = dict(model_type="llama4_vision_model", hidden_size=v.width, num_hidden_layers=v.n_layers,
                  num_attention_heads=v.n_heads, intermediate_size=v.ffn_hidden, num_channels=v.channels,
                  image_size=v.image_size, patch_size=v.patch_size, pixel_shuffle_ratio=1 / v.shuffle_factor,
                  vision_output_dim=hidden, projector_input_dim=hidden, projector_output_dim=hidden,
                  rope_parameters={"rope_type": "default", "rope_theta": v.rope_theta}, hidden_act="gelu",
                  norm_eps=1e-5, multi_modal_projector_bias=False)
    return dict(model_type="llama4", architectures=["Llama4ForConditionalGeneration"], text_config=text,
                vision_config=vision, image_token_index=v.image_token_id, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    """The tower's, adapter's and projector's tensors, each block's named."""
    v, wb = vision_config(cfg.vision), ("weight", "bias")
    rules = [Rule.of(V + "patch_embedding.linear.weight", OURS + "patch.weight", "unfolded_patch"),
             Rule.of(V + "class_embedding", OURS + "class_embed"),
             Rule.of(V + "positional_embedding_vlm", OURS + "positions.weight")]
    rules += [Rule.of(f"{V}layernorm_{n}.{w}", f"{OURS}{n}_norm.{w}") for n in ("pre", "post") for w in wb]
    for i in range(v.n_layers):
        hf, block = f"{V}model.layers.{i}.", f"{OURS}blocks.{i}."
        for w in wb:
            rules += [Rule.of(tuple(f"{hf}self_attn.{p}_proj.{w}" for p in "qkv"), f"{block}attn.qkv_proj.{w}",
                              "llama4_vision_qkv"),
                      Rule.of(f"{hf}self_attn.o_proj.{w}", f"{block}attn.o_proj.{w}"),
                      Rule.of(f"{hf}input_layernorm.{w}", f"{block}ln1.{w}"),
                      Rule.of(f"{hf}post_attention_layernorm.{w}", f"{block}ln2.{w}"),
                      Rule.of(f"{hf}mlp.fc1.{w}", f"{block}mlp.up.{w}"),
                      Rule.of(f"{hf}mlp.fc2.{w}", f"{block}mlp.down.{w}")]
    return rules + [Rule.of(f"{V}vision_adapter.mlp.fc{n}.weight", f"vision.projector.fc{n}.weight") for n in (1, 2)] \
        + [Rule.of("multi_modal_projector.linear_1.weight", "vision.projector.proj.weight")]


def _nested(rules: list[Rule]) -> list[Rule]:
    """The text family's rules with every name under language_model. (model.* and lm_head.weight alike)."""
    return [dataclasses.replace(r, hf=tuple("language_model." + h for h in r.hf)) for r in rules]


_text = FAMILIES[TEXT]
FAMILIES.register("llama4")(Family(_nested(_text.rules), to_config, from_config, _text.ignore,
                                   needs=_needs, more_rules=vision_rules))
