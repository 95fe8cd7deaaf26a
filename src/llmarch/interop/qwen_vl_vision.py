"""The vision towers of Qwen2-VL and Qwen2.5-VL checkpoints (vision/qwen_tower.py): their vision_config as
vision/qwen_config.py's fields and back, and their tensors' names, block by block (the tower's depth is not the text
model's, so its rules name each block rather than `{i}`). Names as transformers saves and publishes them (visual.*,
beside the text model's model.* and lm_head.*); transformers 5's module names (model.visual.*,
model.language_model.*) are read as those (canonical_name)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from ..vision.qwen_config import TOWER, QwenVisionConfig
from .mapping import Rule

VISUAL = "visual."
IMAGE_TOKEN_ID = 151655  # <|image_pad|>, the wrapper configs' default


@dataclass(frozen=True)
class _Tower:
    defaults: dict  # what transformers' vision config class assumes for fields config.json leaves out
    width: str  # the field holding the tower's own width (the other width field is the merger's output)
    out_width: str
    ffn: str
    norm: str
    windowed: bool


TOWERS = {
    "qwen2_vl": _Tower(dict(depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4,
                            num_heads=16), "embed_dim", "hidden_size", "quick_gelu", "layernorm", False),
    "qwen2_5_vl": _Tower(dict(depth=32, hidden_size=3584, hidden_act="silu", intermediate_size=3420, num_heads=16,
                              window_size=112, out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31]),
                         "hidden_size", "out_hidden_size", "swiglu", "rmsnorm", True),
}
_ACT = {"quick_gelu": "quick_gelu", "swiglu": "silu"}  # each tower's one supported hidden_act


def vision_fields(hf: dict, wrapper: str) -> dict:
    """ModelConfig.vision of a wrapper config (its vision_config and image_token_id)."""
    tower = TOWERS[wrapper]
    vc = {**tower.defaults, **(hf.get("vision_config") or {})}
    if vc["hidden_act"] != _ACT[tower.ffn]:
        raise LlmarchError(f"{wrapper}: vision hidden_act {vc['hidden_act']!r} is not supported; supported: "
                           f"{_ACT[tower.ffn]}")
    width = vc[tower.width]
    fields = dict(tower=TOWER, image_token_id=hf.get("image_token_id", IMAGE_TOKEN_ID), width=width,
                  n_layers=vc["depth"], n_heads=vc["num_heads"],
                  ffn_hidden=vc["intermediate_size"] if tower.windowed else int(width * vc["mlp_ratio"]),
                  out_width=vc[tower.out_width], ffn=tower.ffn, norm=tower.norm,
                  channels=vc.get("in_channels", vc.get("in_chans", 3)), patch_size=vc.get("patch_size", 14),
                  temporal_patch_size=vc.get("temporal_patch_size", 2), merge_size=vc.get("spatial_merge_size", 2),
                  rope_theta=float((vc.get("rope_parameters") or {}).get("rope_theta", 10000.0)))
    if tower.windowed:
        fields.update(window_size=vc["window_size"], full_layers=list(vc["fullatt_block_indexes"]))
    return fields


def vision_hf(v: QwenVisionConfig, wrapper: str) -> dict:
    """The vision_config transformers builds `v`'s tower from."""
    tower = TOWERS[wrapper]
    if (v.ffn, v.norm, v.window_size is not None) != (tower.ffn, tower.norm, tower.windowed):
        raise LlmarchError(f"{wrapper}'s tower has a {tower.ffn} MLP and {tower.norm} "
                           f"{'with' if tower.windowed else 'without'} windows")
    hf = {tower.width: v.width, tower.out_width: v.out_width, "depth": v.n_layers, "num_heads": v.n_heads,
          "hidden_act": _ACT[v.ffn], "in_channels": v.channels, "patch_size": v.patch_size,
          "temporal_patch_size": v.temporal_patch_size, "spatial_merge_size": v.merge_size,
          "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta}}
    if tower.windowed:
        return {**hf, "intermediate_size": v.ffn_hidden, "window_size": v.window_size,
                "fullatt_block_indexes": list(v.full_layers)}
    if v.ffn_hidden % v.width:
        raise LlmarchError(f"qwen2_vl's tower MLP is mlp_ratio x width: {v.ffn_hidden} is no multiple of {v.width}")
    return {**hf, "mlp_ratio": v.ffn_hidden // v.width}


def vision_rules(v: QwenVisionConfig) -> list[Rule]:
    """HF names of the tower's tensors and ours (under vision.tower.), each block's named."""
    ours, wb = "vision.tower.", ("weight", "bias")
    norm = wb if v.norm == "layernorm" else ("weight",)
    rules = [Rule.of(VISUAL + "patch_embed.proj.weight", ours + "patch.weight")]
    rules += [Rule.of(f"{VISUAL}merger.ln_q.{w}", f"{ours}merger.norm.{w}") for w in norm]
    rules += [Rule.of(f"{VISUAL}merger.mlp.{n}.{w}", f"{ours}merger.fc{k}.{w}") for n, k in ((0, 1), (2, 2))
              for w in wb]
    for i in range(v.n_layers):
        hf, block = f"{VISUAL}blocks.{i}.", f"{ours}blocks.{i}."
        rules += [Rule.of(f"{hf}norm{k}.{w}", f"{block}ln{k}.{w}") for k in (1, 2) for w in norm]
        for w in wb:
            rules += [Rule.of(f"{hf}attn.qkv.{w}", f"{block}attn.qkv_proj.{w}"),
                      Rule.of(f"{hf}attn.proj.{w}", f"{block}attn.o_proj.{w}")]
            if v.ffn == "swiglu":
                rules += [Rule.of((f"{hf}mlp.gate_proj.{w}", f"{hf}mlp.up_proj.{w}"), f"{block}mlp.gate_up.{w}"),
                          Rule.of(f"{hf}mlp.down_proj.{w}", f"{block}mlp.down.{w}")]
            else:
                rules += [Rule.of(f"{hf}mlp.fc1.{w}", f"{block}mlp.up.{w}"),
                          Rule.of(f"{hf}mlp.fc2.{w}", f"{block}mlp.down.{w}")]
    return rules


def canonical_name(name: str) -> str:
    """transformers 5's module names (model.language_model.*, model.visual.*) as saved and published (model.*,
    visual.*)."""
    if name.startswith("model.visual."):
        return name.removeprefix("model.")
    return "model." + name.removeprefix("model.language_model.") if name.startswith("model.language_model.") else name
