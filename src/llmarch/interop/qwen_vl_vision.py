"""The vision towers of Qwen2-VL, Qwen2.5-VL, Qwen3-VL(-MoE) and Qwen3.5(-MoE) checkpoints (vision/qwen_tower.py):
their vision_config as vision/qwen_config.py's fields and back, and their tensors' names, block by block (the tower's
depth is not the text model's, so its rules name each block rather than `{i}`). Names as transformers saves and the
models were published: Qwen2(.5)-VL's visual.* beside the text model's model.* and lm_head.* (transformers 5's module
names, model.visual.* and model.language_model.*, read as those: canonical_name); Qwen3-VL's, Qwen3.5's and GLM-4V's
model.visual.* beside model.language_model.*. Qwen3.5's tower is Qwen3-VL's without DeepStack (transformers'
Qwen3_5VisionModel deletes deepstack_visual_indexes and the DeepStack mergers), its image and video tokens 248056 and
248057 where config.json names none. GLM-4V's tower (GLM-4.1V's, GLM-4.5V's, GLM-4.6V's) is read into the same
fields: no biases in its blocks but qkv's attention_bias, its MLP out_hidden_size wide, positions from image_size /
patch_size squared, and the gated merger."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LlmarchError
from ..vision.qwen_config import TOWER, QwenVisionConfig
from .mapping import JOINS, Rule

IMAGE_TOKEN_ID, VIDEO_TOKEN_ID = 151655, 151656  # <|image_pad|>, <|video_pad|>: the wrapper configs' defaults
# Qwen2.5-Omni's q, k and v (each the tower's width), equal thirds of our qkv_proj
JOINS["vision_qkv_apart"] = (lambda parts, cfg: torch.cat(parts), lambda t, cfg: list(t.chunk(3)))


@dataclass(frozen=True)
class _Tower:
    defaults: dict  # what transformers' vision config class assumes for fields config.json leaves out
    width: str  # the field holding the tower's own width (the other width field is the merger's output)
    out_width: str
    ffn: str
    norm: str
    windowed: bool
    prefix: str = "visual."  # where the tower's tensors are stored
    grid: bool = False  # Qwen3-VL's and Qwen3.5's: learned grid positions, a patch bias, linear_fc names
    deepstack: bool = False  # Qwen3-VL's DeepStack mergers (Qwen3.5's tower has none)
    timed: bool = False  # Qwen2.5-VL's: videos' temporal positions in tokens_per_second (vision_config's)
    frames_apart: bool = False  # Qwen3-VL's, Qwen3.5's: a video's frames placed one by one, between timestamps
    gated: bool = False  # GLM-4V's: its norms, bicubic positions, a patch bias, the gated merger (see vision_fields)
    tokens: tuple[int, int] = (IMAGE_TOKEN_ID, VIDEO_TOKEN_ID)  # the wrapper config class's image, video token ids
    qkv_apart: bool = False  # Qwen2.5-Omni's: the blocks' attention q, k and v stored apart (attn.q, attn.k, attn.v)


TOWERS = {
    "qwen2_vl": _Tower(dict(depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4,
                            num_heads=16), "embed_dim", "hidden_size", "quick_gelu", "layernorm", False),
    "qwen2_5_vl": _Tower(dict(depth=32, hidden_size=3584, hidden_act="silu", intermediate_size=3420, num_heads=16,
                              window_size=112, out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31],
                              tokens_per_second=4),
                         "hidden_size", "out_hidden_size", "swiglu", "rmsnorm", True, timed=True),
}
TOWERS["qwen3_vl"] = TOWERS["qwen3_vl_moe"] = _Tower(
    dict(depth=27, hidden_size=1152, hidden_act="gelu_pytorch_tanh", intermediate_size=4304, num_heads=16,
         patch_size=16, out_hidden_size=3584, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24]),
    "hidden_size", "out_hidden_size", "gelu_tanh", "layernorm", False, "model.visual.", True, True, frames_apart=True)
# Qwen3.5's and Qwen3.5-MoE's (transformers' Qwen3_5VisionModel): Qwen3-VL's tower with its DeepStack taken out
TOWERS["qwen3_5"] = TOWERS["qwen3_5_moe"] = _Tower(
    {k: v for k, v in TOWERS["qwen3_vl"].defaults.items() if k != "deepstack_visual_indexes"},
    "hidden_size", "out_hidden_size", "gelu_tanh", "layernorm", False, "model.visual.", True, frames_apart=True,
    tokens=(248056, 248057))
# Qwen2.5-Omni's thinker (transformers' Qwen2_5OmniVisionEncoder): Qwen2.5-VL's tower with q, k, v apart, under
# model.visual.; its videos' positions (position_id_per_seconds) are not Qwen-VL's, and are not run
TOWERS["qwen2_5_omni_thinker"] = _Tower(TOWERS["qwen2_5_vl"].defaults, "hidden_size", "out_hidden_size", "swiglu",
                                        "rmsnorm", True, "model.visual.", qkv_apart=True)
# each tower's one supported hidden_act
_ACT = {"quick_gelu": "quick_gelu", "swiglu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}
# GLM-4.1V's, GLM-4.5V's and GLM-4.6V's (transformers' Glm4vVisionConfig)
TOWERS["glm4v"] = TOWERS["glm4v_moe"] = TOWERS["glm46v"] = _Tower(
    dict(depth=24, hidden_size=1536, hidden_act="silu", attention_bias=False, num_heads=12, image_size=336,
         patch_size=14, rms_norm_eps=1e-5, out_hidden_size=4096, intermediate_size=13696),
    "hidden_size", "out_hidden_size", "swiglu", "rmsnorm", False, "model.visual.", gated=True)


def vision_fields(hf: dict, wrapper: str) -> dict:
    """ModelConfig.vision of a wrapper config (its vision_config, image_token_id and video_token_id)."""
    tower = TOWERS[wrapper]
    vc = {**tower.defaults, **(hf.get("vision_config") or {})}
    if vc["hidden_act"] != _ACT[tower.ffn]:
        raise LlmarchError(f"{wrapper}: vision hidden_act {vc['hidden_act']!r} is not supported; supported: "
                           f"{_ACT[tower.ffn]}")
    width = vc[tower.width]
    fields = dict(tower=TOWER, image_token_id=hf.get("image_token_id", tower.tokens[0]),
                  video_token_id=hf.get("video_token_id", tower.tokens[1]), width=width,
                  n_layers=vc["depth"], n_heads=vc["num_heads"],
                  ffn_hidden=int(width * vc["mlp_ratio"]) if tower.ffn == "quick_gelu" else vc["intermediate_size"],
                  out_width=vc[tower.out_width], ffn=tower.ffn, norm=tower.norm,
                  channels=vc.get("in_channels", vc.get("in_chans", 3)), patch_size=vc.get("patch_size", 14),
                  temporal_patch_size=vc.get("temporal_patch_size", 2), merge_size=vc.get("spatial_merge_size", 2),
                  rope_theta=float((vc.get("rope_parameters") or {}).get("rope_theta", 10000.0)))
    if tower.gated:  # transformers' Glm4vVisionModel
        fields.update(ffn_hidden=vc["out_hidden_size"], norm_eps=float(vc["rms_norm_eps"]), bias=False,
                      qkv_bias=bool(vc["attention_bias"]), patch_bias=True, positions_resample="bicubic",
                      grid_positions=(vc["image_size"] // fields["patch_size"]) ** 2, patch_norm=True,
                      post_norm=True, merger="gated", merger_hidden=vc["intermediate_size"])
    if tower.windowed:
        fields.update(window_size=vc["window_size"], full_layers=list(vc["fullatt_block_indexes"]))
    if tower.timed:
        fields.update(tokens_per_second=vc["tokens_per_second"])
    if tower.grid:
        fields.update(patch_bias=True, grid_positions=vc["num_position_embeddings"])
    if tower.deepstack:
        fields.update(deepstack_layers=list(vc["deepstack_visual_indexes"]))
    fields.update(frames_apart=tower.frames_apart)
    return fields


def _gated_hf(v: QwenVisionConfig, hf: dict) -> dict:
    """GLM-4V's vision_config of `v`, which must be its tower's shape."""
    side = int(round(v.grid_positions ** 0.5)) if v.grid_positions else 0
    if (v.bias, v.patch_norm, v.post_norm, v.merger, v.positions_resample, v.ffn_hidden) != (
            False, True, True, "gated", "bicubic", v.out_width) or side * v.patch_size == 0:
        raise LlmarchError("GLM-4V's tower has no block biases but qkv's, RMSNorms after the patches and the blocks, "
                           "bicubic grid positions, a block MLP out_width wide and the gated merger")
    return {**hf, "intermediate_size": v.merger_hidden, "attention_bias": v.qkv_bias, "rms_norm_eps": v.norm_eps,
            "image_size": side * v.patch_size}


def vision_hf(v: QwenVisionConfig, wrapper: str) -> dict:
    """The vision_config transformers builds `v`'s tower from."""
    tower = TOWERS[wrapper]
    if not tower.gated and (v.merger, v.patch_norm, v.post_norm, v.positions_resample, v.bias, v.qkv_bias,
                            v.norm_eps) != ("mlp", False, False, "bilinear", True, True, 1e-6):
        raise LlmarchError(f"{wrapper}'s tower has biases, eps 1e-6, its merger and no norms around the blocks (those "
                           "are GLM-4V's)")
    if (v.ffn, v.norm, v.window_size is not None, v.patch_bias, v.grid_positions is not None,
            v.deepstack_layers is not None) != (tower.ffn, tower.norm, tower.windowed, tower.grid or tower.gated,
                                                tower.grid or tower.gated, tower.deepstack):
        raise LlmarchError(f"{wrapper}'s tower has a {tower.ffn} MLP and {tower.norm} "
                           f"{'with' if tower.windowed else 'without'} windows, "
                           f"{'with' if tower.grid else 'without'} a patch bias and grid positions, "
                           f"{'with' if tower.deepstack else 'without'} DeepStack")
    hf = {tower.width: v.width, tower.out_width: v.out_width, "depth": v.n_layers, "num_heads": v.n_heads,
          "hidden_act": _ACT[v.ffn], "in_channels": v.channels, "patch_size": v.patch_size,
          "temporal_patch_size": v.temporal_patch_size, "spatial_merge_size": v.merge_size,
          "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta}}
    if tower.timed and v.tokens_per_second is not None:
        hf["tokens_per_second"] = v.tokens_per_second
    if tower.windowed:
        return {**hf, "intermediate_size": v.ffn_hidden, "window_size": v.window_size,
                "fullatt_block_indexes": list(v.full_layers)}
    if tower.gated:
        return _gated_hf(v, hf)
    if tower.grid:
        deep = {"deepstack_visual_indexes": list(v.deepstack_layers)} if tower.deepstack else {}
        return {**hf, "intermediate_size": v.ffn_hidden, "num_position_embeddings": v.grid_positions, **deep}
    if v.ffn_hidden % v.width:
        raise LlmarchError(f"qwen2_vl's tower MLP is mlp_ratio x width: {v.ffn_hidden} is no multiple of {v.width}")
    return {**hf, "mlp_ratio": v.ffn_hidden // v.width}


def _merger(hf: str, ours: str, norm: tuple, fc_names: bool) -> list[Rule]:
    """A merger's rules: Qwen2(.5)-VL's ln_q and mlp.0, mlp.2; Qwen3-VL's and Qwen3.5's norm, linear_fc1,
    linear_fc2."""
    names = ("norm", "linear_fc1", "linear_fc2") if fc_names else ("ln_q", "mlp.0", "mlp.2")
    return [Rule.of(f"{hf}{names[0]}.{w}", f"{ours}norm.{w}") for w in norm] + \
        [Rule.of(f"{hf}{names[k]}.{w}", f"{ours}fc{k}.{w}") for k in (1, 2) for w in ("weight", "bias")]


def _gated_merger(visual: str, ours: str) -> list[Rule]:
    """GLM-4V's: its RMSNorms around the blocks, its positions, the downsample convolution and the gated merger."""
    m = visual + "merger."
    return [Rule.of(visual + "post_conv_layernorm.weight", ours + "patch_norm.weight"),
            Rule.of(visual + "post_layernorm.weight", ours + "post_norm.weight"),
            Rule.of(visual + "embeddings.position_embedding.weight", ours + "positions.weight"),
            Rule.of(m + "proj.weight", ours + "merger.proj.weight"),
            Rule.of((m + "gate_proj.weight", m + "up_proj.weight"), ours + "merger.mlp.gate_up.weight"),
            Rule.of(m + "down_proj.weight", ours + "merger.mlp.down.weight")] + \
        [Rule.of(f"{visual}downsample.{w}", f"{ours}merger.downsample.{w}") for w in ("weight", "bias")] + \
        [Rule.of(f"{m}post_projection_norm.{w}", f"{ours}merger.norm.{w}") for w in ("weight", "bias")]


def vision_rules(v: QwenVisionConfig, wrapper: str) -> list[Rule]:
    """HF names of the tower's tensors and ours (under vision.tower.), each block's named."""
    ours, wb, visual, deep = "vision.tower.", ("weight", "bias"), TOWERS[wrapper].prefix, TOWERS[wrapper].grid
    norm = wb if v.norm == "layernorm" else ("weight",)
    rules = [Rule.of(f"{visual}patch_embed.proj.{w}", f"{ours}patch.{w}") for w in (wb if v.patch_bias else wb[:1])]
    if TOWERS[wrapper].gated:
        rules += _gated_merger(visual, ours)
    else:
        if v.grid_positions:
            rules.append(Rule.of(visual + "pos_embed.weight", ours + "positions.weight"))
        rules += _merger(visual + "merger.", ours + "merger.", norm, deep)
    for k in range(len(v.deepstack_layers or ())):
        rules += _merger(f"{visual}deepstack_merger_list.{k}.", f"{ours}deepstack.{k}.", norm, deep)
    fc = ("linear_fc1", "linear_fc2") if deep else ("fc1", "fc2")
    for i in range(v.n_layers):
        hf, block = f"{visual}blocks.{i}.", f"{ours}blocks.{i}."
        rules += [Rule.of(f"{hf}norm{k}.{w}", f"{block}ln{k}.{w}") for k in (1, 2) for w in norm]
        qkv = [tuple(f"{hf}attn.{p}.{w}" for p in "qkv") if TOWERS[wrapper].qkv_apart else f"{hf}attn.qkv.{w}"
               for w in (wb if v.qkv_bias else wb[:1])]
        rules += [Rule.of(names, f"{block}attn.qkv_proj.{w}", *(("vision_qkv_apart",) if isinstance(names, tuple)
                                                                 else ())) for names, w in zip(qkv, wb)]
        for w in wb if v.bias else wb[:1]:
            rules.append(Rule.of(f"{hf}attn.proj.{w}", f"{block}attn.o_proj.{w}"))
            if v.ffn == "swiglu":
                rules += [Rule.of((f"{hf}mlp.gate_proj.{w}", f"{hf}mlp.up_proj.{w}"), f"{block}mlp.gate_up.{w}"),
                          Rule.of(f"{hf}mlp.down_proj.{w}", f"{block}mlp.down.{w}")]
            else:
                rules += [Rule.of(f"{hf}mlp.{fc[0]}.{w}", f"{block}mlp.up.{w}"),
                          Rule.of(f"{hf}mlp.{fc[1]}.{w}", f"{block}mlp.down.{w}")]
    return rules


def canonical_name(name: str) -> str:
    """Qwen2(.5)-VL: transformers 5's module names (model.language_model.*, model.visual.*) as saved and published
    (model.*, visual.*)."""
    if name.startswith("model.visual."):
        return name.removeprefix("model.")
    return "model." + name.removeprefix("model.language_model.") if name.startswith("model.language_model.") else name
