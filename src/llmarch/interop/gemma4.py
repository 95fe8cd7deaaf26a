"""Gemma 4 (`model_type: gemma4_text`, and the text model of `gemma4`; Gemma Team 2026, Gemma 4 model card and
technical report; transformers' modeling_gemma4.py): Gemma 3's block (sandwich norms, QK-norm, embeddings times
sqrt(d_model), tanh-GELU GeGLU, tied head, a final soft-cap) with
- two layer geometries: `sliding_attention` layers (head_dim, num_key_value_heads, RoPE base 10k over the whole
  head) and `full_attention` layers with wider heads and their own KV heads (per_layer_config, or global_head_dim and
  num_global_key_value_heads) under p-RoPE (rope_type 'proportional': a quarter of the frequencies turn, theta 1M;
  our rope_scaling 'proportional');
- plain RMSNorm gains (x / rms(x) * g, not Gemma 2/3's 1 + g), attention scores unscaled (scaling 1: the QK-norm
  bounds them), values through an RMSNorm without gain (v_norm), and every block's output times its stored
  layer_scalar (layer_scalar);
- attention_k_eq_v: the full layers project no values; the keys' projection is the values too (attn_k_eq_v);
- num_kv_shared_layers (from Gemma 3n): the last layers project no keys or values and attend over those of the
  last earlier layer of their type (kv_shared_layers), whose cache they share; use_double_wide_mlp doubles those
  layers' FFN width (a layer type of their own, '<type>+wide');
- per-layer input embeddings (from Gemma 3n; hidden_size_per_layer_input, on by default: 256): ple_dim,
  layers/per_layer_inputs.py;
- enable_moe_block (26B-A4B): every layer's experts beside its MLP (moe_beside_dense), routed by a softmax over
  RMSNorm(r) * scale * d^-1/2 of the residual stream r, top_k_experts renormalised and times per_expert_scale
  (router_input_norm, router_expert_scale); the experts' gate_up_proj and down_proj are stacked as ours.
Refused with an error naming the field: bidirectional attention (use_bidirectional_attention 'all'), attention
biases, and per_layer_config fields other than head_dim and num_key_value_heads.
`gemma4` checkpoints (Gemma4ForConditionalGeneration): the config is text_config, the text model's weights under
model.language_model.; gemma4_whole.py reads them with the vision tower (gemma4_vision.py) or the audio tower
(gemma4_audio.py) where there is one. Without either, ids of image, video or audio tokens, which Gemma4Model replaces
by padding before both embeddings, are read as the text tokens they are (with one: as padding, placeholder_ids)."""
from __future__ import annotations

import dataclasses

from ..config import ModelConfig
from ..errors import LlmarchError
from .gemma2 import FULL, SLIDING
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_fields, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_A = _L + "self_attn."
WIDE = "+wide"  # the suffix of the layer types whose FFN use_double_wide_mlp doubles
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(_A + "o_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_A + "q_norm.weight", "blocks.{i}.attn.q_norm.weight"),
    Rule.of(_A + "k_norm.weight", "blocks.{i}.attn.k_norm.weight"),
    Rule.of(_L + "input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", "blocks.{i}.post_ln1.weight"),
    Rule.of(_L + "pre_feedforward_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of(_L + "post_feedforward_layernorm.weight", "blocks.{i}.post_ln2.weight"),
    Rule.of((_L + "mlp.gate_proj.weight", _L + "mlp.up_proj.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_L + "mlp.down_proj.weight", "blocks.{i}.mlp.down.weight"),
    # the mixture layers (enable_moe_block): the dense MLP beside the experts, their norms, router and experts
    Rule.of((_L + "mlp.gate_proj.weight", _L + "mlp.up_proj.weight"), "blocks.{i}.mlp.shared.gate_up.weight"),
    Rule.of(_L + "mlp.down_proj.weight", "blocks.{i}.mlp.shared.down.weight"),
    Rule.of(_L + "post_feedforward_layernorm_1.weight", "blocks.{i}.mlp.shared_post.weight"),
    Rule.of(_L + "pre_feedforward_layernorm_2.weight", "blocks.{i}.mlp.experts_pre.weight"),
    Rule.of(_L + "post_feedforward_layernorm_2.weight", "blocks.{i}.mlp.experts_post.weight"),
    Rule.of(_L + "router.proj.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_L + "router.scale", "blocks.{i}.mlp.router.input_scale"),
    Rule.of(_L + "router.per_expert_scale", "blocks.{i}.mlp.router.expert_scale"),
    Rule.of(_L + "experts.gate_up_proj", "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_L + "experts.down_proj", "blocks.{i}.mlp.experts.down"),
    Rule.of(_L + "layer_scalar", "blocks.{i}.scalar"),
    Rule.of(_L + "per_layer_input_gate.weight", "blocks.{i}.ple_gate.weight"),
    Rule.of(_L + "per_layer_projection.weight", "blocks.{i}.ple_proj.weight"),
    Rule.of(_L + "post_per_layer_input_norm.weight", "blocks.{i}.ple_norm.weight"),
    Rule.of("model.embed_tokens_per_layer.weight", "per_layer.embed.weight"),
    Rule.of("model.per_layer_model_projection.weight", "per_layer.proj.weight"),
    Rule.of("model.per_layer_projection_norm.weight", "per_layer.norm.weight"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# the key and value tensors a KV-shared layer's checkpoint may still hold, which transformers drops on load
IGNORE_SHARED = IGNORE + (r"self_attn\.(k_proj|v_proj|k_norm)\.weight$",)
# what transformers' Gemma4TextConfig assumes for fields a config.json leaves out
DEFAULTS = dict(vocab_size=262144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=30,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256, hidden_activation="gelu_pytorch_tanh",
                max_position_embeddings=131072, rms_norm_eps=1e-6, tie_word_embeddings=True, sliding_window=512,
                final_logit_softcapping=None, hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144,
                attention_k_eq_v=False,
                num_kv_shared_layers=0, enable_moe_block=False, use_double_wide_mlp=False, attention_bias=False)
ROPE_DEFAULTS = {SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
                 FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0}}
_REFUSED = (("attention_bias", "attention biases"),)


def qkv_rules(cfg: ModelConfig) -> list[Rule]:
    """Each layer's q, k, v into qkv_proj: q alone on a KV-shared layer (kv_shared_layers or kv_source_layers), q and
    k where the keys are the values."""
    rules = []
    for i in range(cfg.n_layers):
        names = "q" if cfg.kv_source(i) != i else "qk" if cfg.for_layer(i).attn_k_eq_v else "qkv"
        rules.append(Rule(tuple(_A.format(i=i) + f"{p}_proj.weight" for p in names),
                          f"blocks.{i}.attn.qkv_proj.weight", layer=i))
    return rules


def _types(hf: dict) -> list[str]:
    """config.json's layer_types, or five sliding layers to one full; the last layer full, as transformers forces."""
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [SLIDING if (i + 1) % 6 else FULL for i in range(n)])
    unknown = sorted(set(types) - {SLIDING, FULL})
    if unknown:
        raise LlmarchError(f"layer type {unknown[0]!r} is not supported; supported: {SLIDING}, {FULL}")
    types[-1] = FULL
    return types


def rope_of_type(params: dict | None, hf: dict) -> dict:
    """One layer type's RoPE fields: p-RoPE ('proportional') here, the rest as every family reads them."""
    params = dict(params or {})
    if params.get("rope_type") != "proportional":
        if float(params.get("partial_rotary_factor", 1.0)) != 1.0:  # the default kind ignores it, others may not
            raise LlmarchError(f"rope_parameters: partial_rotary_factor with rope_type {params.get('rope_type')!r} "
                               "is not supported (only with 'proportional')")
        return rope_fields({**hf, "rope_parameters": {"rope_theta": 10_000.0, **params}})
    return dict(rope_scaling="proportional", rope_theta=float(params.get("rope_theta", 10_000.0)),
                rope_fraction=float(params.get("partial_rotary_factor", 1.0)),
                rope_factor=float(params.get("factor") or 1.0))


def _geometry(hf: dict, types: list[str]) -> dict[str, dict]:
    """Each layer type's heads and head width: per_layer_config where config.json has one (keyed by layer), else as
    transformers derives it: full layers global_head_dim wide (512), with num_global_key_value_heads where
    attention_k_eq_v is set."""
    per_layer = hf.get("per_layer_config")
    if per_layer is None:
        full = {"head_dim": hf.get("global_head_dim", 512)}
        if hf.get("attention_k_eq_v", True) and hf.get("num_global_key_value_heads") is not None:
            full["num_key_value_heads"] = hf["num_global_key_value_heads"]
        per_layer = {i: full for i, t in enumerate(types) if t == FULL}
    out = {}
    for i, t in enumerate(types):
        fields_ = dict(per_layer.get(str(i), per_layer.get(i)) or {})
        bad = sorted(set(fields_) - {"head_dim", "num_key_value_heads"})
        if bad:
            raise LlmarchError(f"per_layer_config sets {bad[0]} on layer {i}; llmarch reads head_dim and "
                               "num_key_value_heads there")
        geometry = {"head_dim": int(fields_.get("head_dim", hf["head_dim"])),
                    "n_kv_heads": int(fields_.get("num_key_value_heads", hf["num_key_value_heads"]))}
        if out.setdefault(t, geometry) != geometry:
            raise LlmarchError(f"per_layer_config gives the {t} layers different head_dim or num_key_value_heads; "
                               "llmarch needs one geometry per layer type")
    return out


def to_config(hf: dict, defaults: dict = DEFAULTS, model_type: str = "gemma4_text") -> ModelConfig:
    """A Gemma 4 text config.json read with its config class's `defaults`, as `model_type` (gemma4's text model is
    gemma4_text)."""
    hf = {**defaults, **hf}
    for field, what in _REFUSED:
        if hf.get(field):
            raise LlmarchError(f"{hf['model_type']}: {field}={hf[field]!r} ({what}) is not supported")
    if hf.get("use_bidirectional_attention") == "all":  # 'vision' leaves text causal: it is read as causal
        raise LlmarchError(f"{hf['model_type']}: use_bidirectional_attention='all' is not supported")
    types = _types(hf)
    geometry = _geometry(hf, types)
    rope = {**ROPE_DEFAULTS, **(hf.get("rope_parameters") or {})}
    shared = int(hf["num_kv_shared_layers"])
    wide = bool(hf["use_double_wide_mlp"]) and shared > 0
    first_shared = len(types) - shared
    names = [t + WIDE if wide and i >= first_shared else t for i, t in enumerate(types)]
    base = geometry.get(SLIDING, geometry[FULL])
    overrides = {}
    for name in dict.fromkeys(names):
        t = name.removesuffix(WIDE)
        fields_ = {**rope_of_type(rope.get(t), hf), **geometry[t]}
        if t == FULL:
            fields_.update(sliding_window=None, attn_k_eq_v=bool(hf["attention_k_eq_v"]))
        if name.endswith(WIDE):
            fields_["ffn_hidden"] = 2 * hf["intermediate_size"]
        overrides[name] = fields_
    top = dict(overrides.get(SLIDING) or {**rope_of_type(rope.get(SLIDING), hf), **base})
    top.pop("sliding_window", None)
    ple = int(hf["hidden_size_per_layer_input"] or 0)
    moe = {}
    if hf["enable_moe_block"]:  # every layer: the experts beside its MLP (26B-A4B)
        moe = dict(n_experts=int(hf["num_experts"]), experts_per_token=int(hf["top_k_experts"]),
                   expert_hidden=int(hf["moe_intermediate_size"]), router_input_norm=True, router_expert_scale=True,
                   moe_beside_dense=True)
    fields_ = dict(norm="rmsnorm", embed_scale=True, norm_placement="sandwich", attn_scale=1.0, qk_norm="head",
                   v_norm=True, layer_scalar=True, final_softcap=hf.get("final_logit_softcapping"), ple_dim=ple,
                   ple_vocab=int(hf["vocab_size_per_layer_input"]) if ple else None,
                   sliding_window=int(hf["sliding_window"]), layer_types=names, layer_overrides=overrides,
                   kv_shared_layers=shared, hf_model_type=model_type, **moe, **top)
    return llama_like_config({**hf, "hidden_act": hf["hidden_activation"], "model_type": model_type,
                              "rope_parameters": None}, **fields_)


def from_config(cfg: ModelConfig, arch: str = "Gemma4ForCausalLM", read=to_config) -> dict:
    """config.json of class `arch` for cfg, checked to `read` back (by that class's to_config) to cfg."""
    types, per_layer, rope = [], {}, {}
    for i in range(cfg.n_layers):
        lc = cfg.for_layer(i)
        if lc.attention not in ("full", "sliding_window"):
            raise LlmarchError(f"model_type {cfg.hf_model_type} has full and sliding-window layers only; layer {i} has "
                               f"attention={lc.attention!r}")
        t = FULL if lc.attention == "full" else SLIDING
        types.append(t)
        if t == FULL:
            per_layer[str(i)] = {"head_dim": lc.head_dim, "num_key_value_heads": lc.n_kv_heads}
        rope[t] = rope_of_type_hf(lc)
    sliding = next((cfg.for_layer(i) for i, t in enumerate(types) if t == SLIDING), cfg)
    full = next(cfg.for_layer(i) for i, t in enumerate(types) if t == FULL) if FULL in types else cfg
    wide = any((cfg.layer_type(i) or "").endswith(WIDE) for i in range(cfg.n_layers))
    narrow = next(cfg.for_layer(i).ffn_hidden for i in range(cfg.n_layers)
                  if not (cfg.layer_type(i) or "").endswith(WIDE))
    out = llama_like_hf(sliding.replace(ffn_hidden=narrow), architectures=[arch],
                        model_type=cfg.hf_model_type, num_hidden_layers=cfg.n_layers, layer_types=types,
                        sliding_window=sliding.sliding_window or cfg.sliding_window, rope_parameters=rope,
                        final_logit_softcapping=cfg.final_softcap, per_layer_config=per_layer,
                        attention_k_eq_v=full.attn_k_eq_v, num_kv_shared_layers=cfg.kv_shared_layers,
                        use_double_wide_mlp=wide, hidden_size_per_layer_input=cfg.ple_dim,
                        vocab_size_per_layer_input=cfg.ple_vocab or cfg.vocab_size,
                        enable_moe_block=cfg.n_experts > 0, num_experts=cfg.n_experts or None,
                        top_k_experts=cfg.experts_per_token if cfg.n_experts else None,
                        moe_intermediate_size=cfg.expert_hidden if cfg.n_experts else None,
                        tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.context_length)
    out["hidden_activation"] = out.pop("hidden_act")
    out.pop("mlp_bias")
    check_expressible(cfg, read(out), cfg.hf_model_type)
    return out


def rope_of_type_hf(cfg: ModelConfig) -> dict:
    if cfg.rope_scaling != "proportional":
        return rope_parameters(cfg)
    return {"rope_type": "proportional", "rope_theta": cfg.rope_theta, "partial_rotary_factor": cfg.rope_fraction,
            "factor": cfg.rope_factor}


def check_expressible(cfg: ModelConfig, back: ModelConfig, model_type: str) -> None:
    """An error naming the first field (of the model, or of a layer) that config.json would load differently."""
    skip = {"name", "eos_id", "layer_types", "layer_overrides"}
    for i in [None, *range(cfg.n_layers)]:
        ours, theirs = (cfg, back) if i is None else (cfg.for_layer(i), back.for_layer(i))
        for f in dataclasses.fields(ModelConfig):
            if f.name not in skip and getattr(ours, f.name) != getattr(theirs, f.name):
                where = "" if i is None else f"layer {i}'s "
                raise LlmarchError(f"model_type {model_type} cannot express {where}{f.name}={getattr(ours, f.name)!r} "
                                   f"(it would load as {getattr(theirs, f.name)!r})")


# Gemma4Config's image, video and audio token ids where its config.json leaves them out: Gemma4Model looks all three
# up as padding, whichever towers the checkpoint has
MEDIA_TOKENS = {"image_token_id": 258880, "video_token_id": 258884, "audio_token_id": 258881}


def placeholder_ids(hf: dict, vocab: int) -> list[int]:
    """The ids Gemma4Model looks up as padding (hf's media token ids, else the defaults), those within the
    vocabulary: ModelConfig.placeholder_ids."""
    return sorted({i for i in (hf.get(k, d) for k, d in MEDIA_TOKENS.items()) if 0 <= i < vocab})


def multimodal_config(hf: dict) -> ModelConfig:
    """The text model of a Gemma4ForConditionalGeneration config (its head soft-capped as the text model's)."""
    return to_config({**DEFAULTS, **(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")})


VISION_AUDIO = (r"^model\.(vision_tower|audio_tower|embed_vision|embed_audio)\.",)
FAMILIES.register("gemma4_text")(Family(RULES, to_config, from_config, IGNORE_SHARED, more_rules=qkv_rules))
# gemma4 itself (the text model, with its vision or audio tower where it has one) is gemma4_whole.py's
