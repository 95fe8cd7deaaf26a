"""Falcon-H1 as llama.cpp's `falcon-h1` (convert_hf_to_gguf.py's FalconH1Model, a Mamba2Model): Mamba-2's SSM tensors
and keys (ssm.inner_size mamba_d_ssm, ssm.time_step_rank the head count, ssm.group_count), LLaMA's attention tensors
as Hugging Face holds them (llama.cpp rotates falcon-h1's heads in NEOX halves), attention.key_length the head_dim.
The converter folds every muP multiplier into the weights: q, k and v times attention_in_multiplier (k also times
key_multiplier), o times attention_out_multiplier, Mamba-2's in_proj times ssm_in_multiplier and its z, x, B, C, dt
rows each times its ssm_multipliers entry, out_proj times ssm_out_multiplier, gate_proj and down_proj times
mlp_multipliers, the embedding times embedding_multiplier and the head times lm_head_multiplier. So a file holds
the model with every multiplier 1, and reads back so (the weights folded, the logits the same). llama.cpp's graph
(src/models/falcon-h1.cpp) has no q, k, v or o biases, Mamba-2's norm after the gate where the file has one (its
build_mamba2_layer), and the head as its own tensor (a tied head would be the scaled embedding)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta
from .mamba import mamba2_tensors


def _m(hf: dict, key: str, default=1.0):
    return hf.get(key, default)


def _in_proj_scale(hf: dict) -> torch.Tensor:
    """in_proj's rows z, x, B, C, dt, each times ssm_in_multiplier and its own ssm_multipliers entry."""
    inner, gn = hf["mamba_d_ssm"], hf["mamba_n_groups"] * hf["mamba_d_state"]
    sizes = (inner, inner, gn, gn, hf["mamba_n_heads"])
    parts = _m(hf, "ssm_multipliers", [1.0] * 5)
    return torch.cat([torch.full((n,), _m(hf, "ssm_in_multiplier") * m) for n, m in zip(sizes, parts)])


def _scaled(pattern: str, factor) -> tuple:
    """(regex, times factor(hf), divided by it): a multiplier folded into a tensor, and taken out again."""
    return (pattern, lambda t, hf: t * factor(hf), lambda t, hf: t / factor(hf))


_FOLDED = (
    _scaled(r"\.self_attn\.[qv]_proj\.weight$", lambda hf: _m(hf, "attention_in_multiplier")),
    _scaled(r"\.self_attn\.k_proj\.weight$",
            lambda hf: _m(hf, "attention_in_multiplier") * _m(hf, "key_multiplier")),
    _scaled(r"\.self_attn\.o_proj\.weight$", lambda hf: _m(hf, "attention_out_multiplier")),
    _scaled(r"\.mamba\.out_proj\.weight$", lambda hf: _m(hf, "ssm_out_multiplier")),
    _scaled(r"\.feed_forward\.gate_proj\.(weight|bias)$", lambda hf: _m(hf, "mlp_multipliers", [1.0, 1.0])[0]),
    _scaled(r"\.feed_forward\.down_proj\.(weight|bias)$", lambda hf: _m(hf, "mlp_multipliers", [1.0, 1.0])[1]),
    _scaled(r"^model\.embed_tokens\.weight$", lambda hf: _m(hf, "embedding_multiplier")),
    _scaled(r"^lm_head\.weight$", lambda hf: _m(hf, "lm_head_multiplier")),
    (r"\.mamba\.in_proj\.weight$", lambda t, hf: t * _in_proj_scale(hf).to(t)[:, None],
     lambda t, hf: t / _in_proj_scale(hf).to(t)[:, None]),
)


def _falcon_h1(hf: dict, meta: Meta) -> dict:
    """FalconH1Config's fields from the SSM keys and the tensors present; every multiplier 1 (folded)."""
    inner, heads = meta.get("ssm.inner_size"), meta.get("ssm.time_step_rank")
    return {**hf, "mamba_d_ssm": inner, "mamba_n_heads": heads, "mamba_d_head": inner // heads,
            "mamba_n_groups": meta.get("ssm.group_count", 1), "mamba_d_state": meta.get("ssm.state_size"),
            "mamba_d_conv": meta.get("ssm.conv_kernel"), "mamba_conv_bias": meta.has("blk.0.ssm_conv1d.bias"),
            "mamba_rms_norm": meta.has("blk.0.ssm_norm.weight"), "mamba_norm_before_gate": False,
            "mlp_bias": meta.has("blk.0.ffn_down.bias")}


def _falcon_h1_out(w, hf: dict) -> dict:
    """FalconH1Model.set_gguf_parameters' SSM keys (Mamba2Model's)."""
    w.add_ssm_conv_kernel(hf["mamba_d_conv"])
    w.add_ssm_state_size(hf["mamba_d_state"])
    w.add_ssm_group_count(hf["mamba_n_groups"])
    w.add_ssm_inner_size(hf["mamba_d_ssm"])
    w.add_ssm_time_step_rank(hf["mamba_n_heads"])
    return {}


def _falcon_h1_model_out(w, cfg):
    """What llama.cpp's falcon-h1 graph computes otherwise is refused; the config the file holds is this one with
    every multiplier 1 (folded into the weights) and Mamba-2's inner width as a width of its own."""
    needs = [("no attention or Mamba-2 projection biases (attention_bias, ssm_bias)",
              not (cfg.qkv_bias or cfg.o_bias or cfg.ssm_bias)),
             ("an untied head (the embedding is stored times embedding_multiplier)", not cfg.tie_embeddings),
             (f"ssm_norm 'gated' or 'none' (Mamba-2's norm after the gate), not {cfg.ssm_norm!r}",
              cfg.ssm_norm != "norm_gate")]
    problem = next((need for need, ok in needs if not ok), None)
    if problem:
        raise LlmarchError(f"GGUF falcon-h1 (llama.cpp) needs {problem}")
    inner = cfg.ssm_inner if cfg.ssm_inner is not None else cfg.ssm_expand * cfg.d_model
    return cfg.replace(parallel_in_multipliers=[1.0, 1.0], parallel_out_multipliers=[1.0, 1.0],
                       attn_key_multiplier=1.0, ffn_gate_multiplier=1.0, ffn_out_multiplier=1.0,
                       ssm_proj_multipliers=[1.0] * 5, embed_multiplier=1.0, logit_divisor=1.0, ssm_expand=2,
                       ssm_inner=None if inner == 2 * cfg.d_model else inner)


ARCHS = {
    "falcon-h1": Arch("falcon_h1", fields=_falcon_h1, write=_falcon_h1_out, model_out=_falcon_h1_model_out,
                      tensors=mamba2_tensors("mamba", "mamba_n_groups") + _FOLDED,
                      renamed=((".dt_bias", ".dt_proj.bias"),)),
}
