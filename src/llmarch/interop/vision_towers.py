"""The vision towers of vision-language checkpoints (llava.py, paligemma.py): CLIP's (`clip_vision_model`) and
SigLIP's (`siglip_vision_model`) configs as vision/config.py's fields and back, and their weights' names, layer by
layer (the tower's blocks are not the text model's, so its rules name each block rather than `{i}`). The rules use
transformers 5's module names (model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*), which
to_hf writes and transformers loads; what its save_pretrained stores (vision_tower.*, multi_modal_projector.*,
language_model.model.*) and published checkpoints (vision_tower.vision_model.*) are renamed to those (canonical)."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from ..vision.config import VisionConfig
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .mapping import JOINS, Rule
from .multimodal import text_name

# what transformers' config classes assume for fields a published vision_config leaves out
_DEFAULTS = {"clip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                       num_attention_heads=12, image_size=224, patch_size=32, layer_norm_eps=1e-5,
                                       hidden_act="quick_gelu"),
             "siglip_vision_model": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                         num_attention_heads=12, image_size=224, patch_size=16, layer_norm_eps=1e-6,
                                         hidden_act="gelu_pytorch_tanh")}
# what makes each tower: CLIP has a class token, a norm before the blocks and none after, and a convolution without
# bias; SigLIP the reverse
_LAYOUTS = {"clip_vision_model": dict(class_token=True, pre_norm=True, patch_bias=False),
            "siglip_vision_model": dict(class_token=False, pre_norm=False, patch_bias=True)}
TOWER = "model.vision_tower."
PROJECTOR = "model.multi_modal_projector."
# q, k and v of a tower's attention, equal thirds of our qkv_proj (the text model's head counts do not size them)
QKV = "vision_qkv"
JOINS[QKV] = (lambda parts, cfg: torch.cat(parts), lambda t, cfg: list(t.chunk(3)))


def tower_fields(hf: dict) -> dict:
    """VisionConfig fields of a vision_config (its model_type names the tower); post_norm is the caller's."""
    kind = hf.get("model_type")
    if kind not in _LAYOUTS:
        raise LlmarchError(f"vision tower {kind!r} is not supported; supported: {', '.join(_LAYOUTS)}")
    hf = {**_DEFAULTS[kind], **hf}
    return dict(width=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
                ffn_hidden=hf["intermediate_size"],
                act=read_activation(hf, "vision tower", "hidden_act", _DEFAULTS[kind]["hidden_act"]),
                image_size=hf["image_size"],
                patch_size=hf["patch_size"], channels=hf.get("num_channels", 3), norm_eps=float(hf["layer_norm_eps"]),
                **_LAYOUTS[kind])


def tower_hf(v: VisionConfig) -> dict:
    """The vision_config transformers builds `v`'s tower from."""
    if v.naflex:  # lfm2_vl.py writes its own
        raise LlmarchError("a NaFlex tower (vision naflex) is SigLIP 2's: write it as lfm2_vl")
    kind = next((k for k, layout in _LAYOUTS.items() if all(getattr(v, f) == x for f, x in layout.items())), None)
    if kind is None:
        raise LlmarchError("the vision tower is neither CLIP's (class token, pre-norm, no patch bias) nor SigLIP's "
                           "(none of them)")
    hf = dict(model_type=kind, hidden_size=v.width, num_hidden_layers=v.n_layers, num_attention_heads=v.n_heads,
              intermediate_size=v.ffn_hidden, hidden_act=hf_activation(v.act, PYTORCH_TANH),
              image_size=v.image_size, patch_size=v.patch_size, num_channels=v.channels, layer_norm_eps=v.norm_eps)
    return {**hf, "vision_use_head": False} if kind == "siglip_vision_model" else hf


def tower_rules(v: VisionConfig, tower: str = TOWER, out: str = "out_proj") -> list[Rule]:
    """HF names of the tower's tensors under `tower` and ours (under vision.tower.), each block's named; `out`: the
    attention's output projection (Janus's projection_layer); q, k and v without biases where v.qkv_bias is off."""
    ours, wb = "vision.tower.", ("weight", "bias")
    rules = [Rule.of(tower + "embeddings.patch_embedding.weight", ours + "patch.weight"),
             Rule.of(tower + "embeddings.position_embedding.weight", ours + "positions.weight")]
    if v.patch_bias:
        rules.append(Rule.of(tower + "embeddings.patch_embedding.bias", ours + "patch.bias"))
    if v.class_token:
        rules.append(Rule.of(tower + "embeddings.class_embedding", ours + "class_embed"))
    for hf, mine, wanted in (("pre_layrnorm", "pre_norm", v.pre_norm), ("post_layernorm", "post_norm", v.post_norm)):
        rules += [Rule.of(f"{tower}{hf}.{w}", f"{ours}{mine}.{w}") for w in wb] if wanted else []
    for i in range(v.n_layers):
        hf, block = f"{tower}encoder.layers.{i}.", f"{ours}blocks.{i}."
        for w in wb:
            rules += [Rule.of(tuple(f"{hf}self_attn.{p}_proj.{w}" for p in "qkv"), f"{block}attn.qkv_proj.{w}",
                              "vision_qkv")] if w == "weight" or v.qkv_bias else []
            rules += [Rule.of(f"{hf}self_attn.{out}.{w}", f"{block}attn.o_proj.{w}"),
                      Rule.of(f"{hf}layer_norm1.{w}", f"{block}ln1.{w}"),
                      Rule.of(f"{hf}layer_norm2.{w}", f"{block}ln2.{w}"),
                      Rule.of(f"{hf}mlp.fc1.{w}", f"{block}mlp.up.{w}"),
                      Rule.of(f"{hf}mlp.fc2.{w}", f"{block}mlp.down.{w}")]
    return rules


def canonical_name(name: str) -> str:
    """Published layouts' names (vision_tower.vision_model.*, multi_modal_projector.*, language_model.model.*) as
    transformers 5's."""
    for old in ("vision_tower.", "multi_modal_projector."):
        if name.startswith(old):
            name = "model." + name
    return text_name(name.replace(TOWER + "vision_model.", TOWER, 1))
