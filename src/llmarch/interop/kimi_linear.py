"""Kimi Linear (`model_type: kimi_linear`; Kimi Team 2025, arXiv 2510.26692; Kimi-Linear-48B-A3B): a hybrid stack
whose layer_types name each layer "linear_attention" (Kimi Delta Attention, mixer "kda", layers/kda.py, keeping
the checkpoint's tensor names under blocks.{i}.mixer.) or "full_attention" (DeepSeek-V2's multi-head latent
attention, mixer "mla", with no positions at all: the decoupled "RoPE" key dims are still there, shared by all
heads, but never rotated, paper §3.3 "NoPE"), and DeepSeek-V3's mixture (sigmoid scores plus an expert bias for
the choice, groups, renormalised and times routed_scaling_factor, shared experts) after dense first layers. In
llmarch that is a configuration: mixer "mla" with a "kda" override for the linear layers, positions "none", and
DeepSeek-V3's router fields (deepseek_v2.py reads them).

Checkpoints name the linear layers' settings either as fields (linear_num_heads, linear_head_dim,
linear_conv_kernel_dim, layer_types, mlp_layer_types: transformers' own config.json) or in a `linear_attn_config`
dict (num_heads, head_dim, short_conv_kernel_size, 1-indexed full_attn_layers / kda_layers: Moonshot's), and the
mixture by either spelling of transformers' attribute_map (num_experts or num_local_experts, ...), read here as
transformers reads them. The mixtures' tensors sit under `block_sparse_moe.` (experts w1, w3 gate and up, w2
down), the dense layers' under `mlp.`; transformers' save_pretrained writes the dense ones under
`block_sparse_moe.` as well, which is read as the same tensors."""
from __future__ import annotations

import re

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.gated_deltanet import delta_shape
from .deepseek_v2 import deepseek_config, dense_first, first_dense, v3_router_fields
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

LINEAR, FULL = "linear_attention", "full_attention"
_L, _B = "model.layers.{i}.", "blocks.{i}."
_A, _M = _L + "self_attn.", _L + "block_sparse_moe."
# A_log is stored (1, 1, H, 1) (broadcast against the (b, T, H, dk) gate); ours is (H,)
LAYOUTS["kda_a_log"] = (lambda t, cfg: t.reshape(-1), lambda t, cfg: t.reshape(1, 1, -1, 1), lambda s: (1, 1, *s, 1))
_KDA = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "q_conv1d.weight", "k_conv1d.weight", "v_conv1d.weight",
        "f_a_proj.weight", "f_b_proj.weight", "dt_bias", "b_proj.weight", "g_a_proj.weight", "g_b_proj.weight",
        "o_norm.weight", "o_proj.weight")
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(_A + t, _B + "mixer." + t) for t in _KDA],
    Rule.of(_A + "A_log", _B + "mixer.A_log", "kda_a_log"),
    Rule.of(_A + "q_proj.weight", _B + "attn.q_proj.weight"),
    *[Rule.of(_A + f"q_a_proj.{w}", _B + f"attn.q_a_proj.{w}") for w in ("weight", "bias")],
    Rule.of(_A + "q_a_layernorm.weight", _B + "attn.q_a_norm.weight"),
    Rule.of(_A + "q_b_proj.weight", _B + "attn.q_b_proj.weight"),
    *[Rule.of(_A + f"kv_a_proj_with_mqa.{w}", _B + f"attn.kv_a_proj.{w}") for w in ("weight", "bias")],
    Rule.of(_A + "kv_a_layernorm.weight", _B + "attn.kv_a_norm.weight"),
    Rule.of(_A + "kv_b_proj.weight", _B + "attn.kv_b_proj.weight"),
    *[Rule.of(_A + f"o_proj.{w}", _B + f"attn.o_proj.{w}") for w in ("weight", "bias")],
    Rule.of((_L + "mlp.gate_proj.weight", _L + "mlp.up_proj.weight"), _B + "mlp.gate_up.weight"),
    Rule.of(_L + "mlp.down_proj.weight", _B + "mlp.down.weight"),
    Rule.of(_M + "gate.weight", _B + "mlp.router.weight"),
    Rule.of(_M + "gate.e_score_correction_bias", _B + "mlp.router.expert_bias"),
    Rule.of((_M + "experts.{e}.w1.weight", _M + "experts.{e}.w3.weight"), _B + "mlp.experts.gate_up"),
    Rule.of(_M + "experts.{e}.w2.weight", _B + "mlp.experts.down"),
    Rule.of((_M + "shared_experts.gate_proj.weight", _M + "shared_experts.up_proj.weight"),
            _B + "mlp.shared.gate_up.weight"),
    Rule.of(_M + "shared_experts.down_proj.weight", _B + "mlp.shared.down.weight"),
    Rule.of(_L + "input_layernorm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", _B + "ln2.weight"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_DENSE_AS_SAVED = re.compile(r"^(model\.layers\.\d+\.)block_sparse_moe\.(gate_proj|up_proj|down_proj)\.")


def canonical(name: str) -> str:
    """A dense layer's MLP as transformers saves it (under block_sparse_moe.) -> its name in Moonshot's files."""
    return _DENSE_AS_SAVED.sub(r"\1mlp.\2.", name)


def _first(hf: dict, *names: str, default=None):
    """The first of `names` config.json sets: transformers' attribute_map spells some fields two ways."""
    return next((hf[n] for n in names if hf.get(n) is not None), default)


def _layer_types(hf: dict, linear: dict) -> list[str]:
    """layer_types, else linear_attn_config's 1-indexed full_attn_layers and kda_layers, else transformers' default
    (full attention on layers 4, 8, ...), in transformers' order of precedence."""
    n = hf["num_hidden_layers"]
    if hf.get("layer_types"):
        types = list(hf["layer_types"])
    elif "full_attn_layers" in linear and "kda_layers" in linear:
        types = [None] * n
        for kind, layers in ((FULL, linear["full_attn_layers"]), (LINEAR, linear["kda_layers"])):
            for i in layers:
                types[i - 1] = kind
    else:
        types = [FULL if i and i % 4 == 0 else LINEAR for i in range(n)]
    if len(types) != n or set(types) - {LINEAR, FULL}:
        raise LlmarchError(f"kimi_linear: layer types {types} are not {n} of {LINEAR!r} and {FULL!r}")
    return types


def to_config(hf: dict) -> ModelConfig:
    heads = hf["num_attention_heads"]
    if (hf.get("num_key_value_heads") or heads) != heads:
        raise LlmarchError("kimi_linear: num_key_value_heads must equal num_attention_heads (latent attention "
                           "expands every head's keys and values from the one latent)")
    linear = hf.get("linear_attn_config") or {}
    types = _layer_types(hf, linear)
    dense = dense_first(hf)
    experts = int(_first(hf, "num_local_experts", "num_experts", default=256)) if dense < len(types) else 0
    # the names deepseek_config reads, and Kimi's defaults where config.json leaves a field out
    named = dict(hf, n_routed_experts=experts, first_k_dense_replace=dense, rms_norm_eps=hf.get("rms_norm_eps", 1e-5),
                 num_experts_per_tok=_first(hf, "num_experts_per_tok", "num_experts_per_token", default=8),
                 n_shared_experts=_first(hf, "n_shared_experts", "num_shared_experts", default=1),
                 norm_topk_prob=_first(hf, "norm_topk_prob", "moe_renormalize", default=True),
                 n_group=_first(hf, "n_group", "num_expert_group", default=1),
                 max_position_embeddings=_first(hf, "max_position_embeddings", "model_max_length", default=1048576),
                 routed_scaling_factor=hf.get("routed_scaling_factor", 2.446), rope_parameters=None, rope_scaling=None)
    heads_dim = linear.get("head_dim", hf.get("linear_head_dim", 128))
    return deepseek_config(named, **v3_router_fields(named)).replace(
        positions="none", layer_types=types, layer_overrides={LINEAR: {"mixer": "kda"}} if LINEAR in types else None,
        delta_heads=linear.get("num_heads", hf.get("linear_num_heads", 32)), delta_key_dim=heads_dim,
        ssm_conv=linear.get("short_conv_kernel_size", hf.get("linear_conv_kernel_dim", 4)), ssm_conv_bias=False,
        ssm_bias=False)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.kda_full_gates or cfg.kda_gate_bound is not None or cfg.attn_head_gate:
        return "KDA's low-rank gates and unbounded decay, and no head gate on the latent attention"
    return hybrid_needs(cfg, "none")


def hybrid_needs(cfg: ModelConfig, positions: str) -> str | None:
    """What a latent attention + KDA hybrid with DeepSeek-V3's mixture (Kimi Linear, Ling 3) needs."""
    mixers = {cfg.layer_mixer(i) for i in range(cfg.n_layers)}
    if cfg.mixer != "mla" or mixers - {"mla", "kda"} or cfg.attn_period or cfg.positions != positions:
        return f"latent attention with positions {positions!r} and kda layers only"
    if cfg.ffn != "swiglu" or cfg.bias or cfg.norm != "rmsnorm" or cfg.ssm_conv_bias:
        return "RMSNorm, bias-free SwiGLU FFNs and kda convolutions without biases"
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias or cfg.capacity_factor is not None
                          or cfg.expert_capacity is not None or cfg.moe_period != 1 or cfg.shared_expert_gate
                          or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden):
        return "DeepSeek-V3's uncapped experts on every layer after the dense ones, sigmoid-routed with an expert bias"
    return None


def from_config(cfg: ModelConfig) -> dict:
    problem = needs(cfg)
    if problem:
        raise LlmarchError(f"model_type kimi_linear needs {problem}")
    return hybrid_hf(cfg, "kimi_linear", "KimiLinearForCausalLM")


def hybrid_hf(cfg: ModelConfig, model_type: str, architecture: str) -> dict:
    """config.json of a latent attention + KDA hybrid (Kimi Linear's names, which Ling 3 reads too)."""
    _, H, dk, _ = delta_shape(cfg)
    k = first_dense(cfg) if cfg.n_experts else cfg.n_layers
    out = dict(model_type=model_type, architectures=[architecture], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads, hidden_act="silu",
               model_max_length=cfg.context_length, rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
               attention_bias=cfg.qkv_bias, q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank,
               qk_rope_head_dim=cfg.head_dim, qk_nope_head_dim=cfg.qk_nope_head_dim, v_head_dim=cfg.v_head_dim,
               layer_types=[LINEAR if cfg.layer_mixer(i) == "kda" else FULL for i in range(cfg.n_layers)],
               mlp_layer_types=["dense" if i < k else "sparse" for i in range(cfg.n_layers)],
               linear_num_heads=H, linear_head_dim=dk, linear_conv_kernel_dim=cfg.ssm_conv,
               bos_token_id=None, pad_token_id=None)  # transformers defaults to 163584, 163839: past a smaller vocab
    if cfg.n_experts:
        out.update(num_experts=cfg.n_experts, num_experts_per_token=cfg.experts_per_token,
                   moe_intermediate_size=cfg.expert_hidden, num_shared_experts=cfg.n_shared_experts,
                   routed_scaling_factor=cfg.router_scale, moe_renormalize=cfg.router_renormalize,
                   num_expert_group=cfg.router_groups, topk_group=cfg.router_topk_groups)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("kimi_linear")(Family(RULES, to_config, from_config, canonical=canonical, needs=needs))
