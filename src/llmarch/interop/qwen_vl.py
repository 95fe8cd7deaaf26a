"""The language models of Qwen's vision-language families (`model_type: qwen2_vl_text`, `qwen2_5_vl_text`,
`qwen3_vl_text`, `qwen3_vl_moe_text`), also read from their multimodal checkpoints (`qwen2_vl`, `qwen2_5_vl`,
`qwen3_vl`, `qwen3_vl_moe`: Qwen2VLForConditionalGeneration ...). Their blocks are Qwen2's (qwen2.py: biases on q, k,
v only; head_dim hidden_size / heads whatever config.json says), Qwen3's (qwen3.py: per-head RMSNorm on queries and
keys; `attention_bias` on q, k, v and o) and Qwen3-MoE's (qwen3_moe.py, top-k weights always renormalised, the experts
stored stacked: gate_up_proj and down_proj, (E, out, in) as transformers 5 saves them or (E, in, out) as published,
told apart by their shape as transformers tells them).

Their RoPE is multimodal (M-RoPE, Wang et al. 2024, "Qwen2-VL", \u00a72.1): each token has a temporal, a height and a
width position, and the rotated pairs' frequencies are split into `mrope_section` runs turned by one axis each (Qwen3-VL
takes them T, H, W in turn, `mrope_interleaved`). A text token's three positions are equal (transformers'
get_rope_index numbers text 0, 1, ... over the real tokens of a left-padded row, as llmarch numbers them), so every
frequency turns by the same position: plain RoPE, which is what llmarch computes; the section is validated against
the head width and kept to write the model back. Images' tokens take positions of their own (vision/qwen_inputs.py).

The multimodal checkpoints keep the text model under model.language_model. (transformers 5's names) or under
model. (the published ones, with visual. and lm_head. beside it), and their config in text_config or, in the
published Qwen2(.5)-VL ones, flat at the top; their vision tower is read too (qwen_vl_vision.py), and they are written
back whole, as transformers saves them. A text type is written in the text model's names (model.*, lm_head.*);
transformers has no causal-LM class for these types: the multimodal class loads them with the written config as its
text_config (Qwen3-VL's with model.* mapped to model.language_model.*). Videos are not run."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.qwen_config import is_qwen, qwen_vision_config
from . import multimodal
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import Rule
from .mixtral import STACKED
from .qwen3_moe import RULES as QWEN3_MOE_RULES
from .qwen_vl_vision import TOWERS, canonical_name, vision_fields, vision_hf, vision_rules

QWEN2_SIZES = dict(vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                    num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5,
                    rope_theta=1000000.0)
_QWEN3_SIZES = dict(vocab_size=151936, max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=500000.0)


@dataclass(frozen=True)
class TextKind:
    base: str  # the text family whose computation it is
    wrapper: str  # the multimodal model_type
    architecture: str  # the transformers class whose text model it is
    defaults: dict  # the text config class's defaults, for fields config.json leaves out
    section: tuple[int, int, int]  # mrope_section where config.json gives none (the rotary embedding's default)
    interleaved: bool
    forced: dict  # what the base family's reader must see (its model_type too, where it is not text_type)
    unread: tuple[str, ...] = ()  # what the base family writes that the text config has no field for


KINDS = {
    "qwen2_vl_text": TextKind("qwen2", "qwen2_vl", "Qwen2VLForConditionalGeneration", QWEN2_SIZES, (16, 24, 24), False,
                              {"head_dim": None}),
    "qwen2_5_vl_text": TextKind("qwen2", "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", QWEN2_SIZES, (16, 24, 24),
                                False, {"head_dim": None}),
    "qwen3_vl_text": TextKind("qwen3", "qwen3_vl", "Qwen3VLForConditionalGeneration",
                              dict(_QWEN3_SIZES, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=32, head_dim=128),
                              (24, 20, 20), True, {"attention_bias": False}),
    "qwen3_vl_moe_text": TextKind("qwen3_moe", "qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration",
                                  dict(_QWEN3_SIZES, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
                                       num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=True,
                                       moe_intermediate_size=1408, num_experts_per_tok=4, num_experts=60,
                                       router_aux_loss_coef=0.001),
                                  (24, 20, 20), True, {"attention_bias": False, "norm_topk_prob": True}),
}
_L = "model.layers.{i}."


def stacked_rules(rules: list[Rule]) -> list[Rule]:
    """A MoE family's rules with its experts stored stacked, as llama4.py's are, in either orientation."""
    return [r for r in rules if "{e}" not in r.hf[0]] + [
        Rule.of(_L + "mlp.experts.gate_up_proj", "blocks.{i}.mlp.experts.gate_up", "experts_or_transposed"),
        Rule.of(_L + "mlp.experts.down_proj", "blocks.{i}.mlp.experts.down", "experts_or_transposed")]


MOE_RULES = stacked_rules(QWEN3_MOE_RULES)  # Qwen3-VL-MoE's


def _rope(hf: dict, kind: TextKind) -> tuple[dict, list[int]]:
    """rope_parameters (or the published rope_scaling of type 'mrope') as plain RoPE's, and the mrope_section."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    section = params.pop("mrope_section", kind.section)
    params.pop("mrope_interleaved", None)  # Qwen3-VL's rotary embedding interleaves whatever it says
    rope = params.pop("rope_type", None) or params.get("type", "default")
    params.pop("type", None)
    params.update(rope_type="default" if rope == "mrope" else rope,
                  rope_theta=params.get("rope_theta", hf["rope_theta"]))
    return params, list(section)


def _reader(text_type: str):
    kind = KINDS[text_type]

    def to_config(hf: dict) -> ModelConfig:
        hf = {**kind.defaults, **hf, "model_type": text_type}
        params, section = _rope(hf, kind)
        cfg = FAMILIES[kind.base].to_config({**hf, "rope_parameters": params, "rope_scaling": None, **kind.forced,
                                             "_name_or_path": hf.get("_name_or_path") or text_type})
        cfg = cfg.replace(hf_model_type=text_type)
        biases = {}
        if kind.forced.get("attention_bias") is False:  # Qwen3-VL's attention_bias: q, k, v and o, none on the MLP
            attn = bool(hf.get("attention_bias", False))
            biases = dict(qkv_bias=attn, o_bias=attn)
        return cfg.replace(mrope_section=section, mrope_interleaved=kind.interleaved, **biases)
    return to_config


def _writer(text_type: str):
    kind, to_config = KINDS[text_type], _reader(text_type)

    def from_config(cfg: ModelConfig) -> dict:
        if cfg.mrope_section is None or cfg.mrope_interleaved != kind.interleaved:
            raise LlmarchError(f"model_type {text_type} needs mrope_section with mrope_interleaved={kind.interleaved}")
        if kind.base == "qwen3_moe" and not cfg.router_renormalize:
            raise LlmarchError(f"model_type {text_type} always renormalises its top-k weights (router_renormalize)")
        hf = FAMILIES[kind.base].from_config(cfg.replace(hf_model_type=kind.forced.get("model_type", text_type)))
        rope = dict(hf["rope_parameters"], mrope_section=list(cfg.mrope_section),
                    **({"mrope_interleaved": True} if kind.interleaved else {}))
        hf.update(model_type=text_type, architectures=[kind.architecture], rope_parameters=rope)
        # not the text configs' fields
        for unread in ("mlp_bias", "norm_topk_prob", "router_jitter_noise") + kind.unread:
            hf.pop(unread, None)
        return refuse_unless_read_back(cfg, hf, to_config)
    return from_config


def published_name(name: str) -> str:
    """Qwen3-VL, GLM-4V: the other layout's names (model.layers.*, model.embed_tokens.*, model.norm.*, visual.*) as
    transformers 5's."""
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model.") and not name.startswith(("model.language_model.", "model.visual.")):
        return "model.language_model." + name.removeprefix("model.")
    return name


def _wrapper_reader(text_type: str):
    def to_config(hf: dict) -> ModelConfig:
        """The multimodal config: its text_config, or (published Qwen2(.5)-VL) its own fields, read as text_type."""
        text = hf.get("text_config") or {k: v for k, v in hf.items() if k != "vision_config"}
        return FAMILIES[text_type].to_config({**text, "_name_or_path": hf.get("_name_or_path")})
    return to_config


def _vision_reader(wrapper: str, text_reader):
    """The multimodal config with its vision tower (interop/qwen_vl_vision.py); text_reader: its text model's."""
    def to_config(hf: dict) -> ModelConfig:
        return text_reader(hf).replace(vision=vision_fields(hf, wrapper), hf_model_type=wrapper)
    return to_config


def _vision_writer(text_type: str, wrapper: str, architecture: str):
    def from_config(cfg: ModelConfig) -> dict:
        if not is_qwen(cfg.vision):
            raise LlmarchError(f"model_type {wrapper} writes its vision tower: this model has none (export it "
                               f"with hf_model_type={text_type!r})")
        text = FAMILIES[text_type].from_config(cfg.replace(vision=None, hf_model_type=text_type))
        text.pop("architectures", None)
        v = qwen_vision_config(cfg.vision)
        videos = {} if v.video_token_id is None else {"video_token_id": v.video_token_id}
        return dict(model_type=wrapper, architectures=[architecture], text_config=text,
                    vision_config=vision_hf(v, wrapper), image_token_id=v.image_token_id, **videos,
                    tie_word_embeddings=cfg.tie_embeddings)
    return from_config


def register_wrapper(text_type: str, wrapper: str, architecture: str, rules: list[Rule], stacked: list[Rule],
                     ignore: tuple[str, ...], text_reader=None) -> None:
    """`wrapper`, the multimodal model_type: text_type's model (its rules, stacked experts) beside its tower, the
    text model's config read by text_reader (default: text_config, or the flat config, as text_type reads it)."""
    # the text model as transformers saves it beside the tower: Qwen2(.5)-VL's model.*, visual.*; Qwen3-VL's
    # model.language_model.*, model.visual.*
    qwen2 = TOWERS[wrapper].prefix == "visual."
    FAMILIES.register(wrapper)(Family(
        rules if qwen2 else multimodal.text_rules(rules),
        _vision_reader(wrapper, text_reader or _wrapper_reader(text_type)),
        _vision_writer(text_type, wrapper, architecture), ignore,
        canonical=canonical_name if qwen2 else published_name, tied_by_checkpoint=True,
        stacked_experts=stacked, more_rules=lambda cfg: vision_rules(qwen_vision_config(cfg.vision), wrapper)))


def register_text(text_type: str, kind: TextKind, rules: list[Rule], stacked: list[Rule]) -> None:
    """text_type, kind.base's blocks (its rules and stacked experts) with M-RoPE."""
    KINDS[text_type] = kind
    FAMILIES.register(text_type)(Family(rules, _reader(text_type), _writer(text_type), FAMILIES[kind.base].ignore,
                                        stacked_experts=stacked))


def register(text_type: str, kind: TextKind, rules: list[Rule], stacked: list[Rule]) -> None:
    """text_type (its blocks' rules and stacked experts) and kind.wrapper, the text model beside its tower."""
    register_text(text_type, kind, rules, stacked)
    register_wrapper(text_type, kind.wrapper, kind.architecture, rules, stacked, FAMILIES[kind.base].ignore)


for _type, _kind in list(KINDS.items()):
    _moe = _kind.base == "qwen3_moe"
    register(_type, _kind, MOE_RULES if _moe else FAMILIES[_kind.base].rules, STACKED if _moe else [])
