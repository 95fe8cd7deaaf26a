"""InternVL 3 and 3.5 (`model_type: internvl`, InternVLForConditionalGeneration; Chen et al. 2024, "InternVL" and
"How Far Are We to GPT-4V?"; Zhu et al. 2025, "InternVL3"): the InternViT tower (vision/tower.py with a class token,
learned positions, a biased patch convolution, no pre- or post-norm, layer scale, optionally QK-norm and RMSNorms),
whose hidden state at vision_feature_layer (-1: the last block's output), without the class token, is pixel-shuffled
by 1 / downsample_ratio and mapped by a LayerNorm and a two-layer MLP (the pixel_shuffle_mlp projector) into a Qwen2
(InternVL 3), Qwen3, Qwen3-MoE or gpt-oss (InternVL 3.5) or LLaMA text model under model.language_model, at the
positions of the image token <IMG_CONTEXT>. Each 448 x 448 tile of an image is one image of the tower
(vision/tiled_images.py cuts them). Export writes the text model as the family its fields tell apart (_text_type)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules
from .vision_towers import PROJECTOR, TOWER, canonical_name

TEXTS = ("qwen2", "qwen3", "qwen3_moe", "gpt_oss", "llama")
# InternVLVisionConfig's defaults (InternViT-300M at 448, patch 14), for fields a config.json leaves out
_VISION = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
               hidden_act="gelu", layer_norm_eps=1e-6, image_size=448, patch_size=14, num_channels=3,
               attention_bias=False, use_qk_norm=False, norm_type="layer_norm", use_mean_pooling=True,
               use_mask_token=False, use_absolute_position_embeddings=True)
_NORMS = {"layer_norm": "layernorm", "rms_norm": "rmsnorm"}


def _square(value, name: str) -> int:
    """image_size and patch_size: an int, or a square [h, w] (InternVLVisionConfig stores pairs)."""
    sides = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(sides) != 2 or sides[0] != sides[1] or not isinstance(sides[0], int):
        raise LlmarchError(f"internvl: vision {name} {value!r} must be square")
    return sides[0]


def to_config(hf: dict) -> ModelConfig:
    text = {"model_type": "qwen2", **(hf.get("text_config") or {})}
    if text["model_type"] not in TEXTS:
        raise LlmarchError(f"internvl with a {text['model_type']!r} text model is not supported; supported: "
                           f"{', '.join(TEXTS)}")
    vision = {**_VISION, **(hf.get("vision_config") or {})}
    ratio, layer = hf.get("downsample_ratio", 0.5), hf.get("vision_feature_layer", -1)
    factor = round(1 / ratio) if isinstance(ratio, (int, float)) and ratio > 0 else 0
    if factor < 2 or abs(factor * ratio - 1) > 1e-9:
        raise LlmarchError(f"internvl: downsample_ratio {ratio!r} must be 1 / k for an integer k > 1")
    refused = [k for k, bad in (("use_mean_pooling", not vision["use_mean_pooling"]),
                                ("use_mask_token", vision["use_mask_token"]),
                                ("use_absolute_position_embeddings", not vision["use_absolute_position_embeddings"]),
                                ("vision_feature_select_strategy",
                                 hf.get("vision_feature_select_strategy", "default") != "default"),
                                ("vision_feature_layer", not isinstance(layer, int)),
                                ("norm_type", vision["norm_type"] not in _NORMS)) if bad]
    if refused:
        raise LlmarchError(f"internvl: {', '.join(refused)} other than InternVL 3's is not supported (mean pooling, "
                           "no mask token, absolute positions, the 'default' strategy, one feature layer, "
                           "layer_norm or rms_norm)")
    fields = dict(image_token_id=hf.get("image_token_id", 151667), width=vision["hidden_size"],
                  n_layers=vision["num_hidden_layers"], n_heads=vision["num_attention_heads"],
                  ffn_hidden=vision["intermediate_size"],
                  act=read_activation(vision, "internvl vision tower", "hidden_act", "gelu"),
                  image_size=_square(vision["image_size"], "image_size"),
                  patch_size=_square(vision["patch_size"], "patch_size"), channels=vision["num_channels"],
                  norm_eps=float(vision["layer_norm_eps"]), norm=_NORMS[vision["norm_type"]],
                  qkv_bias=bool(vision["attention_bias"]), qk_norm=bool(vision["use_qk_norm"]), layer_scale=True,
                  patch_bias=True, class_token=True, pre_norm=False, feature_layers=[layer], drop_first=True,
                  projector="pixel_shuffle_mlp", shuffle_factor=factor,
                  projector_act=read_activation(hf, "internvl", "projector_hidden_act", "gelu"))
    cfg = FAMILIES[text["model_type"]].to_config({**text, "_name_or_path": hf.get("_name_or_path") or "internvl"})
    return cfg.replace(vision=fields, hf_model_type="internvl")


def _text_type(cfg: ModelConfig) -> str:
    """The text family to write, told apart by its fields: gpt-oss's attention sinks, Qwen3's per-head QK-norm (with
    experts: Qwen3-MoE's), Qwen2's q, k, v biases without an output bias, or LLaMA's layout (those InternVL 3 / 3.5
    are published with)."""
    if cfg.attn_sinks:
        return "gpt_oss"
    if cfg.qk_norm == "head":
        return "qwen3_moe" if cfg.n_experts else "qwen3"
    return "qwen2" if cfg.qkv_bias and not cfg.o_bias else "llama"


def from_config(cfg: ModelConfig) -> dict:
    v = vision_config(cfg.vision)
    if (v.projector != "pixel_shuffle_mlp" or not v.layer_scale or not v.class_token or not v.patch_bias or v.pre_norm
            or v.post_norm or v.feature_layers is None or len(v.feature_layers) != 1 or not v.drop_first
            or not v.projector_bias):
        raise LlmarchError("internvl writes InternViT (class token, biased patches, layer scale, no pre- or "
                           "post-norm; one feature layer, its class token dropped) and the pixel_shuffle_mlp projector")
    kind = _text_type(cfg)
    text = FAMILIES[kind].from_config(cfg.replace(vision=None, hf_model_type=kind))
    text.pop("architectures", None)
    vision = dict(model_type="internvl_vision", hidden_size=v.width, num_hidden_layers=v.n_layers,
                  num_attention_heads=v.n_heads, intermediate_size=v.ffn_hidden,
                  hidden_act=hf_activation(v.act, PYTORCH_TANH), layer_norm_eps=v.norm_eps,
                  image_size=[v.image_size] * 2, patch_size=[v.patch_size] * 2, num_channels=v.channels,
                  attention_bias=v.qkv_bias, use_qk_norm=v.qk_norm,
                  norm_type={n: k for k, n in _NORMS.items()}[v.norm], use_mean_pooling=True)
    return dict(model_type="internvl", architectures=["InternVLForConditionalGeneration"], text_config=text,
                vision_config=vision, image_token_id=v.image_token_id, downsample_ratio=1 / v.shuffle_factor,
                vision_feature_layer=v.feature_layers[0], vision_feature_select_strategy="default",
                projector_hidden_act=hf_activation(v.projector_act, PYTORCH_TANH),
                image_seq_length=v.tokens_per_image, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    """InternViT's names under model.vision_tower. and the projector's; ours under vision.tower. and
    vision.projector. Each block's tensors are named (the tower's depth is not the text model's)."""
    v = vision_config(cfg.vision)
    ours, hf, wb = "vision.tower.", TOWER + "embeddings.", ("weight", "bias")
    norm = wb if v.norm == "layernorm" else ("weight",)
    rules = [Rule.of(hf + "cls_token", ours + "class_embed", "batch1_row"),
             Rule.of(hf + "position_embeddings", ours + "positions.weight", "batch1"),
             *(Rule.of(f"{hf}patch_embeddings.projection.{w}", f"{ours}patch.{w}") for w in wb)]
    for i in range(v.n_layers):
        hf, block = f"{TOWER}encoder.layer.{i}.", f"{ours}blocks.{i}."
        rules += [Rule.of(f"{hf}lambda_{n + 1}", f"{block}{res}.weight") for n, res in enumerate(("res_attn",
                                                                                                  "res_mlp"))]
        rules += [Rule.of(tuple(f"{hf}attention.{p}_proj.{w}" for p in "qkv"), f"{block}attn.qkv_proj.{w}",
                          "vision_qkv") for w in (wb if v.qkv_bias else ("weight",))]
        rules += [Rule.of(f"{hf}attention.{p}_norm.weight", f"{block}attn.{p}_norm.weight")
                  for p in ("qk" if v.qk_norm else "")]
        rules += [Rule.of(f"{hf}{theirs}.{w}", f"{block}{mine}.{w}") for theirs, mine, ws in (
            ("attention.projection_layer", "attn.o_proj", wb), ("layernorm_before", "ln1", norm),
            ("layernorm_after", "ln2", norm), ("mlp.fc1", "mlp.up", wb), ("mlp.fc2", "mlp.down", wb)) for w in ws]
    return rules + [Rule.of(f"{PROJECTOR}{theirs}.{w}", f"vision.projector.{mine}.{w}")
                    for theirs, mine in (("layer_norm", "norm"), ("linear_1", "fc1"), ("linear_2", "fc2"))
                    for w in wb]


def _rules(cfg: ModelConfig) -> list[Rule]:
    """The text model's rules (its family's, under model.language_model.) and the tower's and projector's."""
    text = FAMILIES[_text_type(cfg)]
    more = text.more_rules(cfg) if text.more_rules is not None else []
    return text_rules(text.rules + more) + vision_rules(cfg)


FAMILIES.register("internvl")(Family([], to_config, from_config,
                                     tuple(dict.fromkeys(p for t in TEXTS for p in FAMILIES[t].ignore)),
                                     canonical=canonical_name, tied_by_checkpoint=True, more_rules=_rules))
