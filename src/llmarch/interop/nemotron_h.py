"""NVIDIA Nemotron-H (`model_type: nemotron_h`, transformers' NemotronHForCausalLM): Nemotron-H 8B/47B/56B, Nemotron
Nano 2 9B/12B and Nemotron 3 Nano 30B-A3B. Each layer is ONE part after its own RMSNorm, added to the residual
stream: Mamba-2 ('M', `linear_attention`), attention without positions ('*', `full_attention`), an ungated
squared-ReLU MLP ('-', `mlp`) or a mixture of experts ('E', `moe`), named by `layers_block_type` (older configs:
`hybrid_override_pattern`). In llmarch that is a configuration: layer_types with overrides, the Mamba-2 and attention
layers `ffn='none'` (their mixer alone) and the MLP and MoE layers `mixer='none'` (their FFN alone,
layers/no_mixer.py). Mamba-2 has mamba_num_heads heads of mamba_head_dim (`ssm_inner`, heads x head width: it need
not be expand * hidden_size) and a gated RMSNorm over n_groups groups; the mixture is DeepSeek-V3's router (sigmoid
scores, `gate.e_score_correction_bias` for the choice only, n_group groups scored by their best two, the chosen
scores renormalised where norm_topk_prob, times routed_scaling_factor) over ungated squared-ReLU experts, plus one
ungated shared MLP of moe_shared_expert_intermediate_size. All tensors live under `backbone.layers.{i}.mixer.`
whatever the layer's part; the one norm of a layer is our ln1 (a mixer's) or ln2 (an FFN's)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.mamba2 import inner_width
from .hf import FAMILIES, Family
from .mamba import MAMBA2_TENSORS, check_time_step_limit
from .mapping import Rule

_L = "backbone.layers.{i}."
_X = _L + "mixer."
_B = "blocks.{i}."
_W = ("weight", "bias")
RULES = [
    Rule.of("backbone.embeddings.weight", "embed.weight"),
    Rule.of(_L + "norm.weight", _B + "ln1.weight"),  # a Mamba-2 or attention layer's norm
    Rule.of(_L + "norm.weight", _B + "ln2.weight"),  # an MLP or MoE layer's
    *[Rule.of(_X + t, _B + "mixer." + t) for t in MAMBA2_TENSORS],
    Rule.of(tuple(_X + f"{p}_proj.weight" for p in "qkv"), _B + "attn.qkv_proj.weight"),
    Rule.of(_X + "o_proj.weight", _B + "attn.o_proj.weight"),
    *[Rule.of(_X + f"{p}_proj.{w}", _B + f"mlp.{p}.{w}") for p in ("up", "down") for w in _W],
    Rule.of(_X + "gate.weight", _B + "mlp.router.weight"),
    Rule.of(_X + "gate.e_score_correction_bias", _B + "mlp.router.expert_bias"),
    Rule.of(_X + "experts.{e}.up_proj.weight", _B + "mlp.experts.up"),
    Rule.of(_X + "experts.{e}.down_proj.weight", _B + "mlp.experts.down"),
    *[Rule.of(_X + f"shared_experts.{p}_proj.{w}", _B + f"mlp.shared.{p}.{w}") for p in ("up", "down") for w in _W],
    Rule.of("backbone.norm_f.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# transformers 5 holds each MoE layer's experts stacked (E, out, in) under model.layers.{i}.mixer.experts
STACKED = [Rule.of("model.layers.{i}.mixer.experts.up_proj", _B + "mlp.experts.up"),
           Rule.of("model.layers.{i}.mixer.experts.down_proj", _B + "mlp.experts.down")]
IGNORE = (r"^mtp\.",)  # multi-token-prediction layers, which transformers does not load either

MAMBA, ATTENTION, MLP, MOE = "mamba", "attention", "mlp", "moe"
_HF_TYPES = {"linear_attention": MAMBA, "full_attention": ATTENTION, "mlp": MLP, "moe": MOE}
_PATTERN = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
# each type's one part: a mixer alone (ffn 'none') or an FFN alone (mixer 'none'); only MoE layers hold experts
_OVERRIDES = {MAMBA: {"mixer": "mamba2", "ffn": "none", "n_experts": 0}, ATTENTION: {"ffn": "none", "n_experts": 0},
              MLP: {"mixer": "none", "n_experts": 0}, MOE: {"mixer": "none"}}


def _get(hf: dict, name: str, legacy: str, default):
    """A field under its name or its older mamba_* one (which transformers lets win, as here)."""
    return hf[legacy] if legacy in hf else hf.get(name, default)


def _layer_types(hf: dict) -> list[str]:
    """llmarch's type names from layers_block_type, else hybrid_override_pattern ('M', '*', '-', 'E'), else
    transformers' default."""
    types = hf.get("layers_block_type") or hf.get("layer_types")
    if types is None and hf.get("hybrid_override_pattern") is not None:
        pattern = str(hf["hybrid_override_pattern"])
        bad = next((c for c in pattern if c not in _PATTERN), None)
        if bad is not None:
            raise LlmarchError(f"nemotron_h: hybrid_override_pattern has {bad!r}; each layer is one of M * - E")
        types = [_PATTERN[c] for c in pattern]
    types = types or ["linear_attention", "moe", "full_attention", "mlp"]
    unknown = sorted(set(types) - set(_HF_TYPES))
    if unknown:
        raise LlmarchError(f"nemotron_h: unknown layer type {unknown[0]!r} (linear_attention, full_attention, mlp, "
                           "moe)")
    return [_HF_TYPES[t] for t in types]


def _refuse(hf: dict, moe: bool) -> None:
    """What transformers' NemotronH computes otherwise than llmarch would, or cannot be read."""
    for key, want in (("mlp_hidden_act", "relu2"), ("mamba_hidden_act", "silu")):
        if hf.get(key, want) != want:
            raise LlmarchError(f"nemotron_h: {key} {hf[key]!r} is not supported ({want} only)")
    if hf.get("moe_latent_size") is not None:
        raise LlmarchError("nemotron_h: moe_latent_size (experts in a projected latent) is not supported")
    if hf.get("attention_bias"):
        raise LlmarchError("nemotron_h: attention_bias=True, which transformers' NemotronH ignores (its q, k, v, o "
                           "have no biases): refused rather than guessed")
    if hf.get("sliding_window") is not None:
        raise LlmarchError("nemotron_h: sliding_window is set, which transformers' NemotronH does not apply")
    if moe and hf.get("mlp_bias"):
        raise LlmarchError("nemotron_h: mlp_bias with MoE layers (the experts have no biases, the shared MLP does)")
    check_time_step_limit({**hf, "time_step_limit": _get(hf, "time_step_limit", "mamba_dt_limit", None)})


def _moe_fields(hf: dict) -> dict:
    return dict(n_experts=int(hf.get("n_routed_experts", 8)), experts_per_token=int(hf.get("num_experts_per_tok", 2)),
                expert_hidden=int(hf.get("moe_intermediate_size", 7688)), n_shared_experts=1,
                shared_hidden=int(hf.get("moe_shared_expert_intermediate_size", 7688)), router_scoring="sigmoid",
                expert_bias=True, router_renormalize=bool(hf.get("norm_topk_prob", True)),
                router_scale=float(hf.get("routed_scaling_factor", 1.0)), router_groups=int(hf.get("n_group") or 1),
                router_topk_groups=int(hf.get("topk_group") or 1))


def to_config(hf: dict) -> ModelConfig:
    types = _layer_types(hf)
    _refuse(hf, MOE in types)
    d, heads = hf["hidden_size"], hf.get("num_attention_heads", 32)
    eos = hf.get("eos_token_id", 2)
    return ModelConfig(
        name=hf.get("_name_or_path") or "nemotron_h", hf_model_type="nemotron_h", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=len(types), n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=int(hf.get("head_dim", 128)), ffn="relu2", ffn_hidden=int(hf.get("intermediate_size", 21504)),
        norm="rmsnorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), positions="none",
        bias=bool(hf.get("mlp_bias", False)), qkv_bias=False, o_bias=False, norm_bias=False,
        # transformers' NemotronH never ties its head (no _tied_weights_keys), whatever tie_word_embeddings says
        tie_embeddings=False,
        context_length=hf.get("max_position_embeddings", 4096), eos_id=eos if isinstance(eos, int) else None,
        ssm_state=int(hf.get("ssm_state_size", 128)), ssm_conv=int(_get(hf, "conv_kernel", "mamba_d_conv", 4)),
        ssm_expand=int(_get(hf, "expand", "mamba_expand", 2)), ssm_head_dim=int(hf.get("mamba_head_dim", 64)),
        ssm_inner=int(hf.get("mamba_num_heads", 128)) * int(hf.get("mamba_head_dim", 64)),
        ssm_groups=int(_get(hf, "n_groups", "mamba_n_groups", 8)),
        ssm_chunk=int(_get(hf, "chunk_size", "mamba_chunk_size", 128)),
        ssm_conv_bias=bool(_get(hf, "use_conv_bias", "mamba_conv_bias", True)), ssm_bias=bool(hf.get("use_bias")),
        layer_types=types, layer_overrides={t: o for t, o in _OVERRIDES.items() if t in types},
        **(_moe_fields(hf) if MOE in types else {}))


# what transformers' NemotronH computes beyond its layer types (checked in from_config)
_NEEDS = dict(norm="rmsnorm", norm_placement="pre", final_norm=True, block="sequential", positions="none",
              qk_norm="none", attn_output_gate=False, attn_sinks=False, attn_k_eq_v=False, v_norm=False,
              kv_shared_layers=0, layer_scalar=False, ple_dim=0, embed_scale=False, embed_norm=False, head_scale=False,
              head_bias=False, head_transform=False, attn_softcap=None, final_softcap=None, sliding_window=None,
              attention="full", attn_scale=None, clip_qkv=None, attn_temp_scale=0.0, attn_period=0, mixer="attention",
              n_decoder_layers=0, type_vocab_size=0, causal=True, position_offset=0, qkv_bias=False, o_bias=False,
              ffn="relu2", tie_embeddings=False, embed_multiplier=1.0, residual_multiplier=1.0, logit_divisor=1.0,
              ssm_inner_norm=False)
# and its mixture: DeepSeek-V3's router over uncapped experts, one ungated shared MLP, no bias on the experts
_MOE_NEEDS = dict(router_scoring="sigmoid", expert_bias=True, n_shared_experts=1, shared_expert_gate=False,
                  shared_average=False, capacity_factor=None, expert_capacity=None, router_bias=False,
                  router_input_norm=False, router_expert_scale=False, moe_beside_dense=False,
                  expert_input_weighted=False, bias=False)


def _unexpressible(cfg: ModelConfig) -> str | None:
    needs = {**_NEEDS, **(_MOE_NEEDS if cfg.n_experts else {})}
    wrong = next((k for k, v in needs.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={needs[wrong]!r}"
    changed = {k for o in (cfg.layer_overrides or {}).values() for k in o} - {"mixer", "ffn", "n_experts"}
    if changed:
        return f"layer types that change only mixer, ffn and n_experts (not {sorted(changed)[0]})"
    if any(_hf_type(cfg, i) is None for i in range(cfg.n_layers)):
        return ("each layer one part: mixer mamba2 or attention with ffn 'none', or mixer 'none' with the relu2 "
                "MLP or experts")
    return None


def _hf_type(cfg: ModelConfig, i: int) -> str | None:
    """transformers' type of layer i, or None where it is none of them."""
    mixer, ffn = cfg.layer_mixer(i), cfg.for_layer(i).ffn
    if mixer in ("mamba2", "attention"):
        return None if ffn != "none" else "linear_attention" if mixer == "mamba2" else "full_attention"
    if mixer == "none" and ffn == "relu2":
        return "moe" if cfg.is_moe_layer(i) else "mlp"
    return None


def from_config(cfg: ModelConfig) -> dict:
    types = [_hf_type(cfg, i) for i in range(cfg.n_layers)]
    moe = dict(n_routed_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
               moe_intermediate_size=cfg.expert_hidden, moe_shared_expert_intermediate_size=cfg.shared_hidden,
               n_shared_experts=1, norm_topk_prob=cfg.router_renormalize, routed_scaling_factor=cfg.router_scale,
               n_group=cfg.router_groups, topk_group=cfg.router_topk_groups) if cfg.n_experts else {}
    out = dict(architectures=["NemotronHForCausalLM"], model_type="nemotron_h", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, layers_block_type=types, num_attention_heads=cfg.n_heads,
               num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, intermediate_size=cfg.ffn_hidden,
               mlp_hidden_act="relu2", mlp_bias=cfg.bias, attention_bias=False, layer_norm_epsilon=cfg.norm_eps,
               max_position_embeddings=cfg.context_length, tie_word_embeddings=False,
               ssm_state_size=cfg.ssm_state, mamba_num_heads=inner_width(cfg) // cfg.ssm_head_dim,
               mamba_head_dim=cfg.ssm_head_dim, n_groups=cfg.ssm_groups, conv_kernel=cfg.ssm_conv,
               expand=cfg.ssm_expand, chunk_size=cfg.ssm_chunk, use_conv_bias=cfg.ssm_conv_bias,
               use_bias=cfg.ssm_bias, mamba_proj_bias=cfg.ssm_bias, mamba_hidden_act="silu", **moe)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("nemotron_h")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED,
                                       needs=_unexpressible))
