"""Gemma 3n (`model_type: gemma3n_text`, and the text model of `gemma3n`; Gemma Team 2025, Gemma 3n model card;
transformers' modeling_gemma3n.py): the block Gemma 4 later took (gemma4.py: sandwich norms with plain RMSNorm gains,
QK-norm, values through an RMSNorm without gain, unscaled scores, embeddings times sqrt(d_model), tanh-GELU GeGLU,
a tied head with a final soft-cap of 30, four sliding layers of window 512 to one full, RoPE bases 10k and 1M) with
- AltUp (altup_num_inputs: 4 residual streams; layers/altup.py; Baykal et al. 2023) and its router;
- LAuReL around attention (laurel_rank 64; layers/laurel.py; Menghani et al. 2024);
- per-layer input embeddings (hidden_size_per_layer_input 256; layers/per_layer_inputs.py), gated from the
  corrected active stream (times altup's correct_output_scale) into the other streams; a table of 262,144 rows
  under a vocabulary of 262,400, the ids past it reading row 0;
- num_kv_shared_layers (15 of 30 or 35): the last layers attend over the keys and values of the last earlier layer
  of their type (kv_shared_layers);
- activation sparsity (activation_sparsity_pattern, 0.95 on the first 10 layers): those layers' gate
  pre-activations through a Gaussian top-k (ffn_sparsity);
- intermediate_size per layer (a list): each distinct width, and each sparsity, a layer type of its own.
Not implemented, as transformers applies it in training only: altup_coef_clip (AltUp's coefficients clamped to
+-120). Refused with an error naming the field: attention biases.
`gemma3n` checkpoints (Gemma3nForConditionalGeneration): the config is text_config, the text model's weights under
model.language_model.; the vision and audio towers and their embedders (embed_vision, embed_audio) are not read.
Ids of image and audio tokens (262,144 and up), which Gemma3nModel embeds through those embedders, are read as the
text tokens they are."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import multimodal
from .gemma2 import FULL, SLIDING
from .gemma4 import IGNORE_SHARED, RULES as GEMMA4_RULES, rope_of_type, rope_of_type_hf, qkv_rules
from .hf import FAMILIES, Family
from .llama import llama_like_config, llama_like_hf
from .mapping import Rule

_L = "model.layers.{i}."
RULES = [r for r in GEMMA4_RULES if not any(k in r.ours for k in (".mlp.shared", ".mlp.experts", ".mlp.router",
                                                                  "experts_", "shared_post", ".scalar"))] + [
    Rule.of(_L + "altup.modality_router.weight", "blocks.{i}.altup.router.weight"),
    Rule.of(_L + "altup.router_norm.weight", "blocks.{i}.altup.router_norm.weight"),
    Rule.of(_L + "altup.prediction_coefs.weight", "blocks.{i}.altup.predict_coefs.weight"),
    Rule.of(_L + "altup.correction_coefs.weight", "blocks.{i}.altup.correct_coefs.weight"),
    Rule.of(_L + "altup.correct_output_scale", "blocks.{i}.altup.out_scale"),
    Rule.of(_L + "laurel.linear_left.weight", "blocks.{i}.laurel.down.weight"),
    Rule.of(_L + "laurel.linear_right.weight", "blocks.{i}.laurel.up.weight"),
    Rule.of(_L + "laurel.post_laurel_norm.weight", "blocks.{i}.laurel.norm.weight"),
]
# what transformers' Gemma3nTextConfig assumes for fields a config.json leaves out
DEFAULTS = dict(model_type="gemma3n_text", vocab_size=262400, hidden_size=2048, intermediate_size=16384,
                num_hidden_layers=35, num_attention_heads=8, num_key_value_heads=2, head_dim=256,
                hidden_activation="gelu_pytorch_tanh", max_position_embeddings=32768, rms_norm_eps=1e-6,
                tie_word_embeddings=True, sliding_window=512,
                final_logit_softcapping=30.0, vocab_size_per_layer_input=262144, hidden_size_per_layer_input=256,
                altup_active_idx=0, altup_correct_scale=True, altup_num_inputs=4, num_kv_shared_layers=15,
                laurel_rank=64, attention_bias=False)
ROPE_DEFAULTS = {SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
                 FULL: {"rope_type": "default", "rope_theta": 1_000_000.0}}


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """q, k, v of each layer (q alone where its keys are shared), and the stack's AltUp projections, one per
    stream but the first."""
    rules = qkv_rules(cfg)
    for j in range(cfg.altup_streams - 1):
        rules += [Rule.of(f"model.altup_projections.{j}.weight", f"altup.expand.{j}.weight"),
                  Rule.of(f"model.altup_unembed_projections.{j}.weight", f"altup.collapse.{j}.weight")]
    return rules


def _per_layer(hf: dict, name: str, n: int, default) -> list:
    value = hf.get(name)
    value = [default] * n if value is None else value if isinstance(value, list) else [value] * n
    if len(value) != n:
        raise LlmarchError(f"{hf['model_type']}: {name} has {len(value)} entries for {n} layers")
    return value


def _rope_parameters(hf: dict) -> dict[str, dict]:
    """Each layer type's RoPE: transformers 5's rope_parameters keyed by type, or the published configs' rope_theta
    and rope_scaling (full layers) and rope_local_base_freq (sliding ones); transformers' bases where left out."""
    params = hf.get("rope_parameters") or {}
    if not (FULL in params or SLIDING in params):
        params = {FULL: {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 1e6)},
                  SLIDING: {"rope_theta": hf.get("rope_local_base_freq", 1e4)}}
    return {t: {**ROPE_DEFAULTS[t], **(params.get(t) or {})} for t in (FULL, SLIDING)}


def _layers(hf: dict) -> tuple[list[str], dict[str, dict]]:
    """Each layer's type name and the fields each type changes: its attention (with its RoPE), FFN width and
    sparsity, named by what differs from the first layer's FFN."""
    n = hf["num_hidden_layers"]
    kinds = list(hf.get("layer_types") or [FULL if (i + 1) % 5 == 0 else SLIDING for i in range(n)])
    unknown = sorted(set(kinds) - {SLIDING, FULL})
    if len(kinds) != n or unknown:
        raise LlmarchError(f"{hf['model_type']}: layer_types must name {n} layers, each {SLIDING} or {FULL}")
    widths = _per_layer(hf, "intermediate_size", n, 16384)
    sparsity = _per_layer(hf, "activation_sparsity_pattern", n, None)
    if sparsity[0] is None:  # transformers' default: the first 10 layers sparse (of more than 10)
        sparsity = [0.95 if i < 10 and n > 10 else 0.0 for i in range(n)]
    rope = _rope_parameters(hf)
    names, overrides = [], {}
    for t, width, s in zip(kinds, widths, sparsity):
        name = t + (f"+ffn{width}" if width != widths[0] else "") + (f"+sparse{s:g}".replace(".", "_") if s else "")
        fields_ = dict(rope_of_type(rope[t], hf), ffn_hidden=int(width), ffn_sparsity=float(s))
        if t == FULL:
            fields_["sliding_window"] = None
        names.append(name)
        overrides[name] = fields_
    return names, overrides


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    if hf.get("attention_bias"):
        raise LlmarchError(f"{hf['model_type']}: attention_bias=True (attention biases) is not supported")
    names, overrides = _layers(hf)
    top = {k: v for k, v in overrides[names[0]].items() if k != "sliding_window"}
    ple = int(hf["hidden_size_per_layer_input"] or 0)
    K = int(hf["altup_num_inputs"])
    fields_ = dict(norm="rmsnorm", embed_scale=True, norm_placement="sandwich", attn_scale=1.0, qk_norm="head",
                   v_norm=True, final_softcap=hf.get("final_logit_softcapping"), ple_dim=ple,
                   ple_vocab=int(hf["vocab_size_per_layer_input"]) if ple else None,
                   sliding_window=int(hf["sliding_window"]), layer_types=names, layer_overrides=overrides,
                   kv_shared_layers=int(hf["num_kv_shared_layers"]), altup_streams=K,
                   altup_active=int(hf["altup_active_idx"]),
                   altup_correct_scale=bool(hf["altup_correct_scale"]) and K > 1, laurel_rank=int(hf["laurel_rank"]),
                   hf_model_type="gemma3n_text", **top)
    return llama_like_config({**hf, "hidden_act": hf["hidden_activation"], "model_type": "gemma3n_text",
                              "rope_parameters": None}, **fields_)


def from_config(cfg: ModelConfig) -> dict:
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    if any(lc.attention not in ("full", "sliding_window") for lc in layers):
        raise LlmarchError("model_type gemma3n_text has full and sliding-window layers only")
    types = [FULL if lc.attention == "full" else SLIDING for lc in layers]
    rope = {t: rope_of_type_hf(lc) for t, lc in zip(types, layers)}
    sliding = next((lc for lc in layers if lc.attention != "full"), cfg)
    out = llama_like_hf(cfg, architectures=["Gemma3nForCausalLM"], model_type="gemma3n_text", layer_types=types,
                        intermediate_size=[lc.ffn_hidden for lc in layers],
                        activation_sparsity_pattern=[lc.ffn_sparsity for lc in layers],
                        sliding_window=sliding.sliding_window or cfg.sliding_window, rope_parameters=rope,
                        final_logit_softcapping=cfg.final_softcap, num_kv_shared_layers=cfg.kv_shared_layers,
                        hidden_size_per_layer_input=cfg.ple_dim,
                        vocab_size_per_layer_input=cfg.ple_vocab or cfg.vocab_size,
                        altup_num_inputs=cfg.altup_streams, altup_active_idx=cfg.altup_active,
                        altup_correct_scale=cfg.altup_correct_scale, laurel_rank=cfg.laurel_rank)
    out["hidden_activation"] = out.pop("hidden_act")
    out.pop("mlp_bias")
    _check_expressible(cfg)
    return out


def _check_expressible(cfg: ModelConfig) -> None:
    """Gemma 3n's block as transformers builds it: every part on, each once."""
    need = dict(norm="rmsnorm", norm_placement="sandwich", qk_norm="head", v_norm=True, embed_scale=True,
                attn_scale=1.0, ffn="geglu_tanh", qkv_bias=False, layer_scalar=False, n_experts=0)
    for field, value in need.items():
        if getattr(cfg, field) != value:
            raise LlmarchError(f"model_type gemma3n_text cannot express {field}={getattr(cfg, field)!r} "
                               f"(it has {value!r})")
    if cfg.altup_streams < 2 or not cfg.laurel_rank or not cfg.ple_dim:
        raise LlmarchError("model_type gemma3n_text needs AltUp (altup_streams > 1), LAuReL (laurel_rank) and "
                           "per-layer inputs (ple_dim)")


def multimodal_config(hf: dict) -> ModelConfig:
    """The text model of a Gemma3nForConditionalGeneration config (its logits soft-capped as the text model's)."""
    return to_config({**(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")})


VISION_AUDIO = (r"^model\.(vision_tower|audio_tower|embed_vision|embed_audio)\.",)
FAMILIES.register("gemma3n_text")(Family(RULES, to_config, from_config, IGNORE_SHARED, more_rules=more_rules))
multimodal.register("gemma3n", FAMILIES["gemma3n_text"], multimodal_config, "gemma3n_text", VISION_AUDIO)
