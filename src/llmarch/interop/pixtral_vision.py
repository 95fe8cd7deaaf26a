"""Pixtral's vision tower and Mistral 3's projector in a `mistral3` checkpoint (vision/pixtral_tower.py): the wrapper's
vision_config and projector fields as vision/pixtral_config.py's and back, and their tensors' names, block by block
(the tower's depth is not the text model's). Names as transformers 5 holds them (model.vision_tower.*,
model.multi_modal_projector.*); what save_pretrained stores and the models were published with (vision_tower.*,
multi_modal_projector.*) is renamed to those by vision_towers.canonical_name."""
from __future__ import annotations

from ..errors import LlmarchError
from ..vision.pixtral_config import TOWER, PixtralVisionConfig
from .mapping import Rule
from .vision_towers import PROJECTOR
from .vision_towers import TOWER as VISION_TOWER

# transformers' PixtralVisionConfig defaults, and Mistral3Config's where config.json has no vision_config at all
_DEFAULTS = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 num_channels=3, image_size=1024, patch_size=16, hidden_act="gelu")
_MISTRAL3 = dict(_DEFAULTS, patch_size=14, image_size=1540)
_FFN = {"silu": "swiglu", "gelu": "geglu"}  # the tower's hidden_act -> its gated MLP
_ACT = {"gelu": "gelu", "silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}  # projector_hidden_act -> ours


def vision_fields(hf: dict, text_width: int, text_eps: float) -> dict:
    """ModelConfig.vision of a mistral3 config.json, or one line refusing what the tower cannot run."""
    vc = {**(_DEFAULTS if hf.get("vision_config") else _MISTRAL3), **(hf.get("vision_config") or {})}
    if vc["hidden_act"] not in _FFN or hf.get("projector_hidden_act", "gelu") not in _ACT:
        raise LlmarchError(f"mistral3: vision hidden_act {vc['hidden_act']!r} (supported: {', '.join(_FFN)}) or "
                           f"projector_hidden_act {hf.get('projector_hidden_act')!r} (supported: {', '.join(_ACT)})")
    if hf.get("vision_feature_layer", -1) != -1:
        raise LlmarchError(f"mistral3: vision_feature_layer {hf['vision_feature_layer']!r} is not supported (the "
                           "tower's last block's output, -1, only)")
    rope = vc.get("rope_parameters") or {}
    if rope.get("rope_type", "axial") != "axial":
        raise LlmarchError(f"mistral3: the tower's rope_type {rope['rope_type']!r} is not supported (axial)")
    return dict(tower=TOWER, image_token_id=hf.get("image_token_index", hf.get("image_token_id", 10)),
                width=vc["hidden_size"], n_layers=vc["num_hidden_layers"], n_heads=vc["num_attention_heads"],
                ffn_hidden=vc["intermediate_size"], out_width=text_width, ffn=_FFN[vc["hidden_act"]],
                channels=vc["num_channels"], patch_size=vc["patch_size"], image_size=vc["image_size"],
                rope_theta=float(rope.get("rope_theta", vc.get("rope_theta", 10000.0))),
                merge_size=hf.get("spatial_merge_size", 2), projector_act=_ACT[hf.get("projector_hidden_act", "gelu")],
                projector_bias=bool(hf.get("multimodal_projector_bias", False)), projector_eps=float(text_eps))


def vision_hf(v: PixtralVisionConfig, text_eps: float) -> dict:
    """The wrapper's fields (vision_config and the projector's) transformers builds `v`'s tower from."""
    if v.projector_eps != text_eps:
        raise LlmarchError(f"mistral3's projector norm takes the text model's rms_norm_eps {text_eps}, not "
                           f"{v.projector_eps}")
    act = {ours: hf for hf, ours in _ACT.items()}
    return dict(vision_config=dict(model_type="pixtral", hidden_size=v.width, intermediate_size=v.ffn_hidden,
                                   num_hidden_layers=v.n_layers, num_attention_heads=v.n_heads,
                                   head_dim=v.head_dim, num_channels=v.channels, image_size=v.image_size,
                                   patch_size=v.patch_size, hidden_act={x: k for k, x in _FFN.items()}[v.ffn],
                                   rope_parameters={"rope_type": "axial", "rope_theta": v.rope_theta}),
                image_token_index=v.image_token_id, spatial_merge_size=v.merge_size, vision_feature_layer=-1,
                projector_hidden_act=act[v.projector_act], multimodal_projector_bias=v.projector_bias)


def vision_rules(v: PixtralVisionConfig) -> list[Rule]:
    """HF names of the tower's and projector's tensors and ours (vision.tower.*, vision.projector.*)."""
    ours, proj = "vision.tower.", "vision.projector."
    rules = [Rule.of(VISION_TOWER + "patch_conv.weight", ours + "patch.weight"),
             Rule.of(VISION_TOWER + "ln_pre.weight", ours + "ln_pre.weight"),
             Rule.of(PROJECTOR + "norm.weight", proj + "norm.weight"),
             Rule.of(PROJECTOR + "patch_merger.merging_layer.weight", proj + "merge.weight")]
    for k in (1, 2):
        rules += [Rule.of(f"{PROJECTOR}linear_{k}.{w}", f"{proj}fc{k}.{w}")
                  for w in (("weight", "bias") if v.projector_bias else ("weight",))]
    for i in range(v.n_layers):
        hf, block = f"{VISION_TOWER}transformer.layers.{i}.", f"vision.tower.blocks.{i}."
        rules += [Rule.of(f"{hf}attention_norm.weight", f"{block}ln1.weight"),
                  Rule.of(f"{hf}ffn_norm.weight", f"{block}ln2.weight"),
                  Rule.of(tuple(f"{hf}attention.{p}_proj.weight" for p in "qkv"), f"{block}attn.qkv_proj.weight",
                          "vision_qkv"),
                  Rule.of(f"{hf}attention.o_proj.weight", f"{block}attn.o_proj.weight"),
                  Rule.of((f"{hf}feed_forward.gate_proj.weight", f"{hf}feed_forward.up_proj.weight"),
                          f"{block}mlp.gate_up.weight"),
                  Rule.of(f"{hf}feed_forward.down_proj.weight", f"{block}mlp.down.weight")]
    return rules
