"""IBM Granite 4.0 (`model_type: granitemoehybrid`, transformers' GraniteMoeHybridForCausalLM; IBM, "Granite 4.0",
2025): a hybrid stack whose layer_types name each layer Mamba-2 ("mamba", or transformers 5's "linear_attention":
layers/mamba2.py, transformers' tensor names under `mamba.`) or attention ("attention" / "full_attention": GQA,
with RoPE only where position_embedding_type is "rope"; Granite 4.0-H's attention has no positions), Granite's
four scalars (granite.py) on every layer whatever its mixer, and an FFN that is a shared SwiGLU MLP
(`shared_mlp.input_linear` (2S, C), gate rows first, and `output_linear`) plus, where num_local_experts > 0, a
mixture of experts as Granite MoE's (granite_moe.py) whose output is added to the shared MLP's. In llmarch that is a
configuration: layer_types with a "mamba2" mixer override, and the shared MLP as n_shared_experts ungated experts
(expert-wide ones where shared_intermediate_size is a multiple of the experts' width, else one of its own width,
shared_hidden), or, without experts, the dense FFN."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .granite import NEEDS, scalars, scalars_hf, unexpressible
from .granite_moe import RULES as MOE_RULES
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, rope_parameters
from .mamba import MAMBA2_TENSORS, check_time_step_limit
from .mapping import Rule
from .mixtral import moe_fields, shared_fields

_L = "model.layers.{i}."
_SHARED = _L + "shared_mlp."
RULES = MOE_RULES + [
    *[Rule.of(_L + "mamba." + t, "blocks.{i}.mixer." + t) for t in MAMBA2_TENSORS],
    # the shared MLP: the mixture's shared experts, or the dense FFN of a model without experts
    Rule.of(_SHARED + "input_linear.weight", "blocks.{i}.mlp.shared.gate_up.weight"),
    Rule.of(_SHARED + "output_linear.weight", "blocks.{i}.mlp.shared.down.weight"),
    Rule.of(_SHARED + "input_linear.weight", "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_SHARED + "output_linear.weight", "blocks.{i}.mlp.down.weight"),
]
MAMBA, ATTENTION = "mamba", "attention"
_TYPES = {"mamba": MAMBA, "linear_attention": MAMBA, "attention": ATTENTION, "full_attention": ATTENTION}


def _layer_types(hf: dict) -> list[str]:
    """llmarch's type names; transformers' default when config.json has none: every layer Mamba-2."""
    types = hf.get("layer_types") or ["mamba"] * hf["num_hidden_layers"]
    unknown = sorted(set(types) - set(_TYPES))
    if unknown:
        raise LlmarchError(f"granitemoehybrid: unknown layer type {unknown[0]!r}")
    return [_TYPES[t] for t in types]


def _ffn(hf: dict) -> dict:
    """The shared MLP alone (a dense FFN), or a mixture with it as ungated shared experts (transformers' defaults
    where config.json has no count: 8 experts)."""
    shared = int(hf.get("shared_intermediate_size", 1024))
    if not hf.get("num_local_experts", 8):
        return dict(ffn_hidden=shared)
    width = int(hf["intermediate_size"])
    return dict(ffn_hidden=width, expert_hidden=width, **shared_fields(shared, width),
                **moe_fields({"num_local_experts": 8, **hf}))


def mamba_fields(hf: dict) -> dict:
    """The mamba_* keys (GraniteMoeHybrid's and Bamba's) as ModelConfig's ssm_* fields."""
    check_time_step_limit(hf)
    inner = int(hf.get("mamba_expand", 2)) * hf["hidden_size"]
    head = hf.get("mamba_d_head", "auto")
    head = inner // int(hf.get("mamba_n_heads", 128)) if head == "auto" else int(head)
    return dict(ssm_state=hf.get("mamba_d_state", 256), ssm_conv=hf.get("mamba_d_conv", 4),
                ssm_expand=int(hf.get("mamba_expand", 2)), ssm_head_dim=head, ssm_groups=hf.get("mamba_n_groups", 1),
                ssm_chunk=hf.get("mamba_chunk_size", 256), ssm_conv_bias=hf.get("mamba_conv_bias", True),
                ssm_bias=hf.get("mamba_proj_bias", False))


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"granitemoehybrid: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    if hf.get("attention_bias"):  # o_proj's bias is llmarch's `bias`, which would give the FFN biases too
        raise LlmarchError("model_type granitemoehybrid with attention_bias=True: llmarch ties o_proj's bias to the "
                           "FFN's, and Granite 4.0's MLPs have none")
    types = _layer_types(hf)
    rope = hf.get("position_embedding_type") == "rope"
    return llama_like_config(hf, **scalars(hf), **_ffn(hf), **mamba_fields(hf), positions="rope" if rope else "none",
                             layer_types=types,
                             layer_overrides={MAMBA: {"mixer": "mamba2"}} if MAMBA in types else None)


def mamba_hf(cfg: ModelConfig) -> dict:
    """mamba_fields' inverse."""
    return dict(mamba_n_heads=cfg.ssm_expand * cfg.d_model // cfg.ssm_head_dim, mamba_n_groups=cfg.ssm_groups,
                mamba_d_state=cfg.ssm_state, mamba_d_head=cfg.ssm_head_dim, mamba_d_conv=cfg.ssm_conv,
                mamba_expand=cfg.ssm_expand, mamba_chunk_size=cfg.ssm_chunk, mamba_conv_bias=cfg.ssm_conv_bias,
                mamba_proj_bias=cfg.ssm_bias)


def from_config(cfg: ModelConfig) -> dict:
    mixers = [cfg.layer_mixer(i) for i in range(cfg.n_layers)]
    shape_ok = (cfg.norm == "rmsnorm" and cfg.ffn == "swiglu" and not cfg.bias and not cfg.qkv_bias
                and cfg.attn_period == 0 and cfg.positions in ("rope", "none") and cfg.qk_norm == "none"
                and cfg.head_dim * cfg.n_heads == cfg.d_model and cfg.block == "sequential")
    if not shape_ok or set(mixers) - {"attention", "mamba2"}:
        raise LlmarchError("model_type granitemoehybrid needs attention (head_dim d / heads, RoPE or none, no "
                           "biases) and mamba2 layers, rmsnorm and swiglu")
    if cfg.n_experts and (cfg.moe_period != 1 or not cfg.router_renormalize or cfg.shared_expert_gate
                          or not cfg.n_shared_experts or cfg.capacity_factor is not None
                          or cfg.expert_capacity is not None or cfg.router_scoring != "softmax"):
        raise LlmarchError("model_type granitemoehybrid's experts are in every layer, top-k renormalised, beside "
                           "an ungated shared MLP")
    experts = dict(num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                   intermediate_size=cfg.expert_hidden, router_aux_loss_coef=cfg.router_aux_loss_weight,
                   shared_intermediate_size=cfg.shared_hidden) if cfg.n_experts else \
        dict(num_local_experts=0, intermediate_size=cfg.ffn_hidden, shared_intermediate_size=cfg.ffn_hidden)
    out = dict(architectures=["GraniteMoeHybridForCausalLM"], model_type="granitemoehybrid",
               vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, hidden_act="silu",
               max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
               tie_word_embeddings=cfg.tie_embeddings, attention_bias=False,
               position_embedding_type="rope" if cfg.positions == "rope" else "nope",
               layer_types=["linear_attention" if m == "mamba2" else "full_attention" for m in mixers],
               **mamba_hf(cfg), **experts, **scalars_hf(cfg))
    if cfg.positions == "rope":
        out["rope_parameters"] = rope_parameters(cfg)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


# what transformers' GraniteMoeHybrid computes beyond its layer types, positions and FFN (from_config checks those)
_HYBRID_NEEDS = {k: v for k, v in NEEDS.items() if k not in ("mixer", "layer_types", "positions", "n_experts")}


def _unexpressible(cfg: ModelConfig) -> str | None:
    return unexpressible(cfg, _HYBRID_NEEDS)


FAMILIES.register("granitemoehybrid")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
