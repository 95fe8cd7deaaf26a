"""ZAYA1 (`model_type: zaya`: ZAYA1-8B; Zyphra 2025; transformers' modeling_zaya.py): a mixture-of-experts decoder
whose every layer is attention with Compressed Convolutional Attention's projections (mixer "cca", layers/cca.py:
convolved queries and keys with residual paths, values half from the previous token, an L2 QK-norm with a learned
key scale per head), RoPE on half of each head (partial_rotary_factor 0.5, a base per layer type: `hybrid` layers
attend to every earlier key, `hybrid_sliding` ones over a window), and a mixture of SwiGLU experts, one chosen per
token by an MLP router (router_mlp) that carries its state from layer to layer (router_carry), among the experts
and a skip expert that computes nothing (skip_experts), by softmax probability plus a balancing bias (expert_bias),
the weight not renormalised. Each residual add is (y + b_y) * s_y + (x + b_x) * s_x (residual_mix 'affine') and the
token embeddings enter as (e + b) * s (embed_affine); the head may have a bias (lm_head_bias)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .gemma4 import check_expressible
from .hf import FAMILIES, Family
from .llama import IGNORE
from .mapping import Rule

FULL, SLIDING = "hybrid", "hybrid_sliding"
_L, _A, _B, _G = "model.layers.{i}.", "model.layers.{i}.self_attn.", "blocks.{i}.", "model.layers.{i}.mlp.gate."
_W = ("weight", "bias")
_AFFINE = (("hidden_states_scale", "hidden_scale"), ("hidden_states_bias", "hidden_bias"),
           ("residual_scale", "residual_scale"), ("residual_bias", "residual_bias"))
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of("model.input_hidden_states_bias", "input_bias"),
    Rule.of("model.input_hidden_states_scale", "input_scale"),
    *[Rule.of(_A + f"qkv_proj.{p}.{w}", _B + f"attn.{p}.{w}") for w in _W for p in
      ("q_proj", "k_proj", "v_proj_current", "v_proj_delayed", "conv_qk_depthwise", "conv_qk_grouped")],
    Rule.of(_A + "qk_norm.temp", _B + "attn.temp"),
    *[Rule.of(_A + f"o_proj.{w}", _B + f"attn.o_proj.{w}") for w in _W],
    Rule.of(_L + "mlp.experts.gate_up_proj", _B + "mlp.experts.gate_up"),
    Rule.of(_L + "mlp.experts.down_proj", _B + "mlp.experts.down"),
    Rule.of(_G + "balancing_biases", _B + "mlp.router.expert_bias"),
    Rule.of(_G + "router_states_scale", _B + "mlp.router.mlp.carry_scale"),
    *[Rule.of(_G + f"down_proj.{w}", _B + f"mlp.router.mlp.down_proj.{w}") for w in _W],
    *[Rule.of(_G + f"router_mlp.{p}.{w}", _B + f"mlp.router.mlp.{p}.{w}") for p in ("fc1", "fc2") for w in _W],
    Rule.of(_G + "router_mlp.norm.weight", _B + "mlp.router.mlp.norm.weight"),
    Rule.of(_G + "router_mlp.out_proj.weight", _B + "mlp.router.mlp.out_proj.weight"),
    Rule.of(_L + "input_layernorm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", _B + "ln2.weight"),
    *[Rule.of(_L + f"post_{s}_residual_scale.{theirs}", _B + f"res_{o}.{ours}") for s, o in
      (("attention", "attn"), ("mlp", "mlp")) for theirs, ours in _AFFINE],
    Rule.of("model.norm.weight", "ln_final.weight"),
    *[Rule.of(f"lm_head.{w}", f"lm_head.{w}") for w in _W],
]
STACKED = [Rule.of(_L + "mlp.experts.gate_up_proj", _B + "mlp.experts.gate_up"),
           Rule.of(_L + "mlp.experts.down_proj", _B + "mlp.experts.down")]
# what transformers' ZayaConfig assumes where config.json is silent
DEFAULTS = dict(hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=True, head_dim=128, num_experts=16,
                num_experts_per_tok=1, moe_intermediate_size=2048, router_hidden_size=256, cca_time0=2, cca_time1=2,
                lm_head_bias=False, attention_bias=False, sliding_window=None, max_position_embeddings=131072,
                num_key_value_heads=2)
ROPE_DEFAULTS = {FULL: {"rope_type": "default", "rope_theta": 5_000_000.0, "partial_rotary_factor": 0.5},
                 SLIDING: {"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5}}


def _rope(params) -> dict:
    """One layer type's RoPE: the default kind over the first partial_rotary_factor of each head."""
    if not isinstance(params, dict) or params.get("rope_type", "default") != "default":
        raise LlmarchError(f"zaya: each layer type's rope_parameters must be of rope_type 'default', got {params!r}")
    return dict(rope_theta=float(params.get("rope_theta", 10_000.0)),
                rope_fraction=float(params.get("partial_rotary_factor", 1.0)))


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **{k: v for k, v in hf.items() if v is not None or k == "sliding_window"}}
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [FULL] * n)
    if len(types) != n or set(types) - {FULL, SLIDING}:
        raise LlmarchError(f"zaya: layer_types must be {n} of {FULL}, {SLIDING}; got {types}")
    if hf["hidden_act"] != "silu" or int(hf["num_experts_per_tok"]) != 1:
        raise LlmarchError("zaya: hidden_act silu and num_experts_per_tok 1 (as transformers requires) only")
    rope = {**ROPE_DEFAULTS, **(hf.get("rope_parameters") or {})}
    overrides = {t: _rope(rope[t]) for t in dict.fromkeys(types)}
    if SLIDING in overrides:
        if hf["sliding_window"] is None:
            raise LlmarchError("zaya: hybrid_sliding layers need sliding_window")
        overrides[SLIDING]["sliding_window"] = int(hf["sliding_window"])
        overrides.get(FULL, {})["sliding_window"] = None
    bias = bool(hf["attention_bias"])
    return ModelConfig(
        name=hf.get("_name_or_path") or "zaya", hf_model_type="zaya", vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], n_layers=n, n_heads=hf["num_attention_heads"],
        n_kv_heads=hf["num_key_value_heads"], head_dim=hf["head_dim"], mixer="cca", cca_conv=int(hf["cca_time0"]),
        cca_group_conv=int(hf["cca_time1"]), ffn="swiglu", ffn_hidden=int(hf["moe_intermediate_size"]),
        norm="rmsnorm", norm_eps=float(hf["rms_norm_eps"]), norm_bias=False, positions="rope", bias=False,
        qkv_bias=bias, o_bias=bias, tie_embeddings=bool(hf["tie_word_embeddings"]), head_bias=bool(hf["lm_head_bias"]),
        context_length=int(hf["max_position_embeddings"]), n_experts=int(hf["num_experts"]), experts_per_token=1,
        router_scoring="softmax", router_renormalize=False, expert_bias=True, skip_experts=1,
        router_mlp=int(hf["router_hidden_size"]), router_carry=True, residual_mix="affine", embed_affine=True,
        eos_id=hf.get("eos_token_id") if isinstance(hf.get("eos_token_id"), int) else None,
        layer_types=types, layer_overrides=overrides, **overrides[types[0]])


def from_config(cfg: ModelConfig) -> dict:
    types = [SLIDING if cfg.for_layer(i).sliding_window else FULL for i in range(cfg.n_layers)]
    rope = {t: {"rope_type": "default", "rope_theta": lc.rope_theta, "partial_rotary_factor": lc.rope_fraction}
            for t, lc in ((t, cfg.for_layer(types.index(t))) for t in dict.fromkeys(types))}
    window = next((cfg.for_layer(i).sliding_window for i, t in enumerate(types) if t == SLIDING), None)
    out = dict(model_type="zaya", architectures=["ZayaForCausalLM"], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
               num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
               max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
               tie_word_embeddings=cfg.tie_embeddings, rope_parameters=rope, sliding_window=window,
               moe_intermediate_size=cfg.expert_hidden, num_experts_per_tok=cfg.experts_per_token,
               num_experts=cfg.n_experts, layer_types=types, attention_bias=cfg.qkv_bias, lm_head_bias=cfg.head_bias,
               router_hidden_size=cfg.router_mlp, cca_time0=cfg.cca_conv, cca_time1=cfg.cca_group_conv,
               pad_token_id=None, bos_token_id=None, eos_token_id=cfg.eos_id)
    check_expressible(cfg, to_config(out), "zaya")
    return out


FAMILIES.register("zaya")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
