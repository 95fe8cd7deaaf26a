"""xLSTM (`model_type: xlstm`, transformers' xLSTMForCausalLM; NX-AI's xLSTM-7B, Beck et al. 2025): pre-norm blocks
of an mLSTM layer (mixer "mlstm", layers/mlstm.py; its tensors under `mlstm_layer.` with transformers' names) and a
SwiGLU FFN (`proj_up_gate` the SiLU gate, `proj_up`, `proj_down`), RMSNorms without biases (`norm_mlstm`,
`norm_ffn`, `out_norm`), no positions, an untied head whose logits are soft-capped (`output_logit_soft_cap`).
Widths: q/k int(hidden_size * qk_dim_factor), v int(hidden_size * v_dim_factor) over num_heads heads (transformers'
layer; its cache rounds them up to multiples of 64, so generation there needs them multiples of 64), FFN
round_up(hidden_size * ffn_proj_factor, ffn_round_up_to_multiple_of). The kernels it names (chunkwise, sequence,
step; mode, chunk_size, max_inference_chunksize) compute the same recurrence: llmarch keeps chunk_size as ssm_chunk.
Refused: weight_mode 'fused', use_bias (biases on the norms too), add_out_norm false (transformers' own code
applies out_norm regardless). transformers reads no attention mask here: parity on unpadded batches."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_B = "backbone.blocks.{i}."
_M = _B + "mlstm_layer."
_MIXER = ("q.weight", "k.weight", "v.weight", "ogate_preact.weight", "igate_preact.weight", "igate_preact.bias",
          "fgate_preact.weight", "fgate_preact.bias", "multihead_norm.weight", "out_proj.weight")
RULES = [
    Rule.of("backbone.embeddings.weight", "embed.weight"),
    Rule.of(_B + "norm_mlstm.weight", "blocks.{i}.ln1.weight"),
    *[Rule.of(_M + t, "blocks.{i}.mixer." + t) for t in _MIXER],
    Rule.of(_B + "norm_ffn.weight", "blocks.{i}.ln2.weight"),
    Rule.of((_B + "ffn.proj_up_gate.weight", _B + "ffn.proj_up.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_B + "ffn.proj_down.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of("backbone.out_norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]


def round_up(x: float, multiple: int) -> int:
    """transformers' round_up_to_next_multiple_of, float arithmetic included."""
    return int(((x + multiple - 1) // multiple) * multiple)


def to_config(hf: dict) -> ModelConfig:
    refused = [(hf.get("weight_mode", "single") != "single", f"weight_mode {hf.get('weight_mode')!r}"),
               (bool(hf.get("use_bias")), "use_bias (biases on every projection and norm)"),
               (hf.get("add_out_norm") is False, "add_out_norm false (transformers applies out_norm regardless)")]
    problem = next((why for bad, why in refused if bad), None)
    if problem:
        raise LlmarchError(f"xlstm: {problem} is not supported")
    d = hf.get("hidden_size") or hf["embedding_dim"]
    heads = hf.get("num_heads", 8)
    qk, v = int(d * hf.get("qk_dim_factor", 0.5)), int(d * hf.get("v_dim_factor", 1.0))
    if qk % heads or v % heads:
        raise LlmarchError(f"xlstm: q/k width {qk} and v width {v} must be multiples of num_heads {heads}")
    eos = hf.get("eos_token_id")
    cap = hf.get("output_logit_soft_cap", 30.0)
    return ModelConfig(
        name=hf.get("_name_or_path") or "xlstm", hf_model_type="xlstm", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=hf.get("num_hidden_layers") or hf["num_blocks"], n_heads=heads, head_dim=qk // heads,
        delta_value_dim=v // heads if v != qk else None, mixer="mlstm", ffn="swiglu",
        ffn_hidden=round_up(d * hf.get("ffn_proj_factor", 2.667), hf.get("ffn_round_up_to_multiple_of", 64)),
        norm="rmsnorm", norm_eps=hf.get("norm_eps", 1e-6), norm_bias=False, positions="none", bias=False,
        ssm_bias=False, tie_embeddings=False, final_softcap=None if cap is None else float(cap),
        mlstm_gate_softcap=hf.get("gate_soft_cap", 15.0), mlstm_eps=hf.get("eps", 1e-6),
        ssm_chunk=hf.get("chunk_size", 64), context_length=1 << 20,  # no positions: no limit
        pad_id=hf.get("pad_token_id") or 0, eos_id=eos if isinstance(eos, int) else None)


_NEEDS = dict(mixer="mlstm", attn_period=0, layer_types=None, ffn="swiglu", norm="rmsnorm", norm_placement="pre",
              block="sequential", positions="none", bias=False, ssm_bias=False, tie_embeddings=False, n_experts=0,
              embed_norm=False, embed_scale=False, embed_multiplier=1.0, residual_multiplier=1.0, logit_divisor=1.0,
              head_bias=False, delta_heads=None, delta_key_dim=None, delta_value_heads=None, sub_norm=False,
              final_norm=True, final_norm_eps=None)


def _unexpressible(cfg: ModelConfig) -> str | None:
    wrong = next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong is None and _factor(cfg.ffn_hidden, cfg.d_model, round_up) is None:
        wrong = f"an ffn_hidden that hidden_size * ffn_proj_factor rounds to (not {cfg.ffn_hidden})"
    return wrong


def _factor(n: int, d: int, rounding) -> tuple[float, int] | None:
    """(factor, multiple) with rounding(d * factor, multiple) == n: transformers' width from a factor of d."""
    for multiple in (64, 32, 16, 8, 4, 2, 1):
        f = n / d
        for _ in range(3):
            if rounding(d * f, multiple) == n:
                return f, multiple
            f = math.nextafter(f, math.inf)
    return None


def from_config(cfg: ModelConfig) -> dict:
    H, dk = cfg.n_heads, cfg.head_dim
    dv = cfg.delta_value_dim or dk
    truncate = (lambda x, _: int(x))  # the layer's int(hidden_size * factor)
    qk_factor, v_factor = _factor(H * dk, cfg.d_model, truncate)[0], _factor(H * dv, cfg.d_model, truncate)[0]
    ffn_factor, multiple = _factor(cfg.ffn_hidden, cfg.d_model, round_up)
    out = dict(architectures=["xLSTMForCausalLM"], model_type="xlstm", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, embedding_dim=cfg.d_model, num_hidden_layers=cfg.n_layers,
               num_blocks=cfg.n_layers, num_heads=H, qk_dim_factor=qk_factor, v_dim_factor=v_factor,
               ffn_proj_factor=ffn_factor, ffn_round_up_to_multiple_of=multiple, use_bias=False,
               weight_mode="single", add_out_norm=True, norm_eps=cfg.norm_eps, eps=cfg.mlstm_eps,
               gate_soft_cap=cfg.mlstm_gate_softcap, output_logit_soft_cap=cfg.final_softcap,
               chunk_size=cfg.ssm_chunk, tie_word_embeddings=False, pad_token_id=cfg.pad_id)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("xlstm")(Family(RULES, to_config, from_config, needs=_unexpressible))
