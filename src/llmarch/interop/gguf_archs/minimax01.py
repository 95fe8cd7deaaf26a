"""MiniMax-Text-01 (GGUF `minimax-01`; the gguf package (0.19) has no entry, so its lightning tensors are named here,
the rest by llama's map): llama.cpp's graph runs lightning attention on the layers `attention.recurrent_layers`
flags (else every layer but each `full_attention_interval`-th, 8 by default) from the fused `attn_qkv` (each head's
q, k, v rows together, as transformers stores qkv_proj) with SiLU, its decay slopes ALiBi's times
1 - l / (L - 1) + 1e-5 as transformers', the RMSNorm `attn_norm_2` over the heads, times sigmoid(`attn_gate`), then
`attn_output`; full attention (GQA, RoPE in halves on rope.dimension_count dims) elsewhere; every FFN a softmax top-k
mixture, renormalised. Its residual is MiniMax's over the normed input, scaled by `residual_scale` (transformers'
alpha) and added to the sublayer's output unscaled. Refused both ways, in one line: an
`attention.layer_norm_rms_epsilon` other than 1e-6, which llama.cpp's graph takes for attn_norm_2 too where
transformers' lightning norm keeps its own 1e-6 (a tiny model with 1e-5 decoded 0.011 apart, with 1e-6 1.8e-7,
measured); and on writing, a residual beta (residual_multiplier) other than 1, and layers all of one kind (llama.cpp's
hybrid memory aborts without both)."""
from __future__ import annotations

import math

from ...errors import LlmarchError
from .arch import Arch, Meta

LINEAR, FULL = "linear_attention", "full_attention"


WHY_EPS = ("llama.cpp's minimax-01 takes the layers' RMSNorm epsilon for the lightning output norm, transformers' "
           "MiniMax 1e-6")


def _minimax01(hf: dict, meta: Meta) -> dict:
    n = hf["num_hidden_layers"]
    if not math.isclose(hf["rms_norm_eps"], 1e-6, rel_tol=1e-6):  # float32 in the file
        raise LlmarchError(f"{meta.path}: minimax-01 with attention.layer_norm_rms_epsilon {hf['rms_norm_eps']} is "
                           f"not read: {WHY_EPS}")
    recurrent = meta.get("attention.recurrent_layers", None)
    if recurrent is None:
        every = meta.get("full_attention_interval", 8)
        recurrent = [(i + 1) % every != 0 for i in range(n)]
    alpha = meta.get("residual_scale")
    if meta.get("rope.dimension_count", hf["head_dim"]) != hf["head_dim"]:
        raise LlmarchError(f"{meta.path}: minimax-01 with RoPE on part of each head is not supported (transformers' "
                           "MiniMax turns the whole head)")
    return {**hf, "layer_types": [LINEAR if r else FULL for r in list(recurrent)[:n]],
            "num_local_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            **{f"{kind}_alpha_factor": alpha for kind in ("full_attn", "linear_attn", "mlp")}}


def _minimax01_out(w, hf: dict) -> dict:
    betas = {hf.get(f"{kind}_beta_factor", 1.0) for kind in ("full_attn", "linear_attn", "mlp")}
    if betas != {1.0}:
        raise LlmarchError(f"GGUF minimax-01 (llama.cpp) adds each sublayer's output unscaled; this model's residual "
                           f"beta (residual_multiplier) is {betas.pop()}")
    if not math.isclose(hf["rms_norm_eps"], 1e-6, rel_tol=1e-6):
        raise LlmarchError(f"GGUF minimax-01 needs rms_norm_eps 1e-6, not {hf['rms_norm_eps']}: {WHY_EPS}")
    if len(set(hf["layer_types"])) < 2:
        raise LlmarchError("GGUF minimax-01 (llama.cpp) needs both lightning and full attention layers; this model "
                           f"has only {hf['layer_types'][0]}")
    w.add_residual_scale(hf["full_attn_alpha_factor"])
    w.add_array(f"{w.arch}.attention.recurrent_layers", [t == LINEAR for t in hf["layer_types"]])
    w.add_expert_count(hf["num_local_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    return {}


def _blocks_unkept(w, cfg):
    """The file holds no block size (llama.cpp runs a batch's lightning attention as one block): it reads back as
    transformers' default, 256, which orders the same sums otherwise."""
    return cfg.replace(attention_block=256)


ARCHS = {"minimax-01": Arch("minimax", names="llama", fields=_minimax01, write=_minimax01_out, model_out=_blocks_unkept,
                            own_names=((".self_attn.qkv_proj.weight", "attn_qkv.weight"),
                                       (".self_attn.output_gate.weight", "attn_gate.weight"),
                                       (".self_attn.norm.weight", "attn_norm_2.weight")))}
