"""Falcon-H1 (`model_type: falcon_h1`, transformers' FalconH1ForCausalLM; TII 2025, "Falcon-H1: A Family of
Hybrid-Head Language Models": Falcon-H1 0.5B-34B, Falcon-H1R): every layer runs attention (GQA, RoPE; q, k, v, o
biases where `attention_bias`) and Mamba-2 (`mamba.*`, transformers' Mamba-2 tensor names, an inner width
`mamba_d_ssm` of its own) side by side on the same normed input, adds both to the residual stream, then a SwiGLU
MLP (`feed_forward.*`, biases where `mlp_bias`) after `pre_ff_layernorm`; `final_layernorm`. In llmarch: mixer
'parallel' (layers/parallel_mixer.py) of attention and mamba2.
The muP multipliers are constants on activations, each a ModelConfig field, none folded into a weight (so the
weights and their training are transformers'):
- `embedding_multiplier`: embed_multiplier; `lm_head_multiplier`: the logits times it (logit_divisor = 1 / it);
- `attention_in_multiplier`, `ssm_in_multiplier`, `attention_out_multiplier`, `ssm_out_multiplier`: each part's
  input and output (parallel_in_multipliers, parallel_out_multipliers);
- `key_multiplier`: the projected keys times it (attn_key_multiplier);
- `ssm_multipliers`: in_proj's z, x, B, C and dt parts (ssm_proj_multipliers);
- `mlp_multipliers`: the gate's pre-activation and the MLP's output (ffn_gate_multiplier, ffn_out_multiplier).
`mamba_rms_norm` (with `mamba_norm_before_gate`) is ssm_norm: none, norm_gate or gated."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.mamba2 import inner_width
from ..layers.parallel_mixer import DEFAULT_PARTS
from .bamba import rules as bamba_rules
from .granite import FALCON_H1_MUP, NEEDS
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mamba import check_time_step_limit

_MIX = "blocks.{i}.mixer."
RULES = bamba_rules(_MIX + "attention.", _MIX + "mamba2.")  # Bamba's names, both parts in every layer
_SSM_NORMS = {(False, True): "none", (False, False): "none", (True, True): "norm_gate", (True, False): "gated"}


def _floats(hf: dict, key: str, n: int) -> list[float]:
    values = hf.get(key) or [1.0] * n
    if len(values) != n:
        raise LlmarchError(f"falcon_h1: {key} must hold {n} numbers, got {values!r}")
    return [float(v) for v in values]


def _mamba_fields(hf: dict) -> dict:
    """The mamba_* keys as ssm_* fields, with FalconH1Config's defaults where config.json has none."""
    check_time_step_limit(hf)
    if bool(hf.get("mamba_proj_bias", False)) != bool(hf.get("projectors_bias", False)):
        raise LlmarchError("falcon_h1: mamba_proj_bias (in_proj) and projectors_bias (out_proj) differ; llmarch's "
                           "ssm_bias covers both")
    d, expand = hf["hidden_size"], int(hf.get("mamba_expand", 2))
    inner = hf.get("mamba_d_ssm", 1024)
    inner = expand * d if inner is None else int(inner)
    heads = int(hf.get("mamba_n_heads", 128))
    head = hf.get("mamba_d_head", "auto")
    head = inner // heads if head == "auto" else int(head)
    if head * heads != inner:
        raise LlmarchError(f"falcon_h1: mamba_n_heads * mamba_d_head = {heads * head} differs from mamba_d_ssm "
                           f"{inner}")
    norm = _SSM_NORMS[bool(hf.get("mamba_rms_norm", False)), bool(hf.get("mamba_norm_before_gate", True))]
    return dict(ssm_state=hf.get("mamba_d_state", 256), ssm_conv=hf.get("mamba_d_conv", 4), ssm_expand=expand,
                ssm_inner=None if inner == expand * d else inner, ssm_head_dim=head,
                ssm_groups=hf.get("mamba_n_groups", 1), ssm_chunk=hf.get("mamba_chunk_size", 256),
                ssm_conv_bias=hf.get("mamba_conv_bias", True), ssm_bias=bool(hf.get("mamba_proj_bias", False)),
                ssm_norm=norm, ssm_proj_multipliers=_floats(hf, "ssm_multipliers", 5))


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"falcon_h1: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    gate, down = _floats(hf, "mlp_multipliers", 2)
    attn_bias = bool(hf.get("attention_bias", False))
    eos = hf.get("eos_token_id", 2)
    return ModelConfig(
        name=hf.get("_name_or_path") or "falcon_h1", hf_model_type="falcon_h1", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or d // heads, ffn="swiglu", ffn_hidden=hf["intermediate_size"], norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-5), positions="rope", bias=bool(hf.get("mlp_bias", False)),
        qkv_bias=attn_bias, o_bias=attn_bias, tie_embeddings=hf.get("tie_word_embeddings", False),
        context_length=hf.get("max_position_embeddings", 8192), mixer="parallel", parallel_mixers=list(DEFAULT_PARTS),
        parallel_in_multipliers=[float(hf.get(f"{p}_in_multiplier", 1.0)) for p in ("attention", "ssm")],
        parallel_out_multipliers=[float(hf.get(f"{p}_out_multiplier", 1.0)) for p in ("attention", "ssm")],
        attn_key_multiplier=float(hf.get("key_multiplier", 1.0)), ffn_gate_multiplier=gate, ffn_out_multiplier=down,
        embed_multiplier=float(hf.get("embedding_multiplier", 1.0)),
        logit_divisor=1.0 / float(hf.get("lm_head_multiplier", 1.0)), eos_id=eos if isinstance(eos, int) else None,
        **_mamba_fields(hf), **rope_fields(hf))


# what transformers' FalconH1 computes beyond the fields to_config reads: Granite's plain LLaMA layout, none of the
# scalars other than its own
_NEEDS = {**{k: v for k, v in NEEDS.items() if k != "mixer" and k not in FALCON_H1_MUP}, "mixer": "parallel",
          "ffn": "swiglu", "attn_period": 0, "attn_scale": None, "residual_multiplier": 1.0, "clip_qkv": None,
          "v_norm": False, "attn_k_eq_v": False, "kv_shared_layers": 0, "layer_scalar": False, "ple_dim": 0, "attn_temp_scale": 0.0,
          "ssm_inner_norm": False, "first_mixer_norm": True}


def _unexpressible(cfg: ModelConfig) -> str | None:
    wrong = next((k for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={_NEEDS[wrong]!r}"
    if list(cfg.parallel_mixers or DEFAULT_PARTS) != list(DEFAULT_PARTS):
        return f"parallel_mixers={list(DEFAULT_PARTS)!r}"
    if cfg.qkv_bias != cfg.o_bias:
        return "o_bias equal to qkv_bias (attention_bias covers q, k, v and o)"
    if cfg.rope_scaling == "longrope":
        return "rope_scaling none, linear, dynamic, llama3 or yarn"
    return None


def from_config(cfg: ModelConfig) -> dict:
    inner = inner_width(cfg)
    (attn_in, ssm_in), (attn_out, ssm_out) = (cfg.parallel_in_multipliers or [1.0, 1.0],
                                              cfg.parallel_out_multipliers or [1.0, 1.0])
    out = dict(architectures=["FalconH1ForCausalLM"], model_type="falcon_h1", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
               hidden_act="silu", max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
               tie_word_embeddings=cfg.tie_embeddings, attention_bias=cfg.qkv_bias, mlp_bias=cfg.bias,
               rope_parameters=rope_parameters(cfg), mamba_d_ssm=inner, mamba_n_heads=inner // cfg.ssm_head_dim,
               mamba_d_head=cfg.ssm_head_dim, mamba_n_groups=cfg.ssm_groups, mamba_d_state=cfg.ssm_state,
               mamba_d_conv=cfg.ssm_conv, mamba_expand=cfg.ssm_expand, mamba_chunk_size=cfg.ssm_chunk,
               mamba_conv_bias=cfg.ssm_conv_bias, mamba_proj_bias=cfg.ssm_bias, projectors_bias=cfg.ssm_bias,
               mamba_rms_norm=cfg.ssm_norm != "none", mamba_norm_before_gate=cfg.ssm_norm != "gated",
               embedding_multiplier=cfg.embed_multiplier, lm_head_multiplier=1.0 / cfg.logit_divisor,
               key_multiplier=cfg.attn_key_multiplier, attention_in_multiplier=attn_in,
               attention_out_multiplier=attn_out, ssm_in_multiplier=ssm_in, ssm_out_multiplier=ssm_out,
               mlp_multipliers=[cfg.ffn_gate_multiplier, cfg.ffn_out_multiplier],
               ssm_multipliers=list(cfg.ssm_proj_multipliers or [1.0] * 5))
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("falcon_h1")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
