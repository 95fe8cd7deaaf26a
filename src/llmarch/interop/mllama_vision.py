"""Llama 3.2 Vision's image encoder and projector (MllamaVisionModel, multi_modal_projector; vision/mllama_tower.py):
its vision_config as the vision dict (vision/mllama_config.py) and back, and its weights' names. The rules use
transformers 5's module names (model.vision_model.*, model.multi_modal_projector.*, model.language_model.*), which
to_hf writes; published checkpoints' (vision_model.*, multi_modal_projector.*, language_model.model.*) are renamed
to those (canonical_name)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.mllama_config import TOWER, is_mllama, mllama_vision_config
from .activations import read_activation
from .mapping import Rule
from .multimodal import text_name
from .vision_towers import QKV

VISION, PROJECTOR = "model.vision_model.", "model.multi_modal_projector."
# MllamaVisionConfig's defaults, for fields a config.json leaves out
_DEFAULTS = dict(hidden_size=1280, hidden_act="gelu", num_hidden_layers=32, num_global_layers=8, attention_heads=16,
                 num_channels=3, intermediate_size=5120, vision_output_dim=7680, image_size=448, patch_size=14,
                 norm_eps=1e-5, max_num_tiles=4, intermediate_layers_indices=[3, 7, 15, 23, 30],
                 supported_aspect_ratios=[[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]])


def vision_fields(hf: dict, text_width: int) -> dict:
    """The vision dict of an mllama config (its vision_config and image token)."""
    vc = {**_DEFAULTS, **(hf.get("vision_config") or {})}
    fields = dict(tower=TOWER, image_token_id=hf.get("image_token_index", 128256), width=vc["hidden_size"],
                  n_layers=vc["num_hidden_layers"], n_global_layers=vc["num_global_layers"],
                  n_heads=vc["attention_heads"], ffn_hidden=vc["intermediate_size"], out_width=text_width,
                  feature_layers=list(vc["intermediate_layers_indices"]),
                  aspect_ratios=[list(r) for r in vc["supported_aspect_ratios"]], max_tiles=vc["max_num_tiles"],
                  image_size=vc["image_size"], patch_size=vc["patch_size"], channels=vc["num_channels"],
                  act=read_activation(vc, "mllama vision", "hidden_act", "gelu"), norm_eps=float(vc["norm_eps"]))
    v = mllama_vision_config(fields)
    if vc["vision_output_dim"] != v.feature_width:
        raise LlmarchError(f"mllama vision_output_dim {vc['vision_output_dim']} must be hidden_size x (1 + "
                           f"intermediate layers) = {v.feature_width}")
    return fields


def vision_hf(cfg: ModelConfig) -> dict:
    """vision_fields' inverse: the vision_config and image token of an mllama config.json."""
    if not is_mllama(cfg.vision):
        raise LlmarchError("model_type mllama writes Llama 3.2 Vision's tower (vision tower 'mllama'); export a text "
                           "model alone as mllama_text_model")
    v = mllama_vision_config(cfg.vision)
    if v.act != "gelu":
        raise LlmarchError(f"mllama vision act {v.act!r}: only gelu is written")
    return dict(image_token_index=v.image_token_id, vision_config=dict(
        model_type="mllama_vision_model", hidden_size=v.width, hidden_act="gelu", num_hidden_layers=v.n_layers,
        num_global_layers=v.n_global_layers, attention_heads=v.n_heads, num_channels=v.channels,
        intermediate_size=v.ffn_hidden, vision_output_dim=v.feature_width, image_size=v.image_size,
        patch_size=v.patch_size, norm_eps=v.norm_eps, max_num_tiles=v.max_tiles,
        intermediate_layers_indices=list(v.feature_layers), supported_aspect_ratios=v.aspect_ratios))


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    """HF names of the tower's and projector's tensors and ours (under vision.), each block's named."""
    if not is_mllama(cfg.vision):
        return []
    v, ours, wb = mllama_vision_config(cfg.vision), "vision.tower.", ("weight", "bias")
    rules = [Rule.of(VISION + "patch_embedding.weight", ours + "patch.weight"),
             Rule.of(VISION + "class_embedding", ours + "class_embed"),
             Rule.of(VISION + "gated_positional_embedding.embedding", ours + "positions.positions"),
             Rule.of(VISION + "gated_positional_embedding.gate", ours + "positions.gate"),
             Rule.of(VISION + "gated_positional_embedding.tile_embedding.weight", ours + "positions.embedding.weight"),
             *[Rule.of(f"{VISION}{side}_tile_positional_embedding.{p}", f"{ours}{side}_tile.{p}")
               for side in ("pre", "post") for p in ("embedding.weight", "gate")],
             *[Rule.of(f"{VISION}layernorm_{side}.{w}", f"{ours}{side}_norm.{w}") for side in ("pre", "post")
               for w in wb],
             *[Rule.of(f"{PROJECTOR}{w}", f"vision.projector.{w}") for w in wb]]
    for hf_name, mine, n, gated in (("transformer", "blocks", v.n_layers, False),
                                    ("global_transformer", "global_blocks", v.n_global_layers, True)):
        for i in range(n):
            hf, block = f"{VISION}{hf_name}.layers.{i}.", f"{ours}{mine}.{i}."
            qkv = tuple(f"{hf}self_attn.{p}_proj.weight" for p in "qkv")
            rules += [Rule.of(qkv, f"{block}attn.qkv_proj.weight", QKV),
                      Rule.of(f"{hf}self_attn.o_proj.weight", f"{block}attn.o_proj.weight"),
                      *[Rule.of(f"{hf}{a}.{w}", f"{block}{b}.{w}") for w in wb for a, b in (
                          ("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2"), ("mlp.fc1", "mlp.up"),
                          ("mlp.fc2", "mlp.down"))]]
            if gated:
                rules += [Rule.of(f"{hf}gate_attn", f"{block}res_attn.weight"),
                          Rule.of(f"{hf}gate_ffn", f"{block}res_mlp.weight")]
    return rules


def canonical_name(name: str) -> str:
    """Published names (vision_model.*, multi_modal_projector.*, language_model.model.*) as transformers 5's."""
    for old in ("vision_model.", "multi_modal_projector."):
        if name.startswith(old):
            name = "model." + name
    return text_name(name)
