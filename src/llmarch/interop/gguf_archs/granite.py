"""IBM Granite 3.x as llama.cpp's `granite` (convert_hf_to_gguf.py's GraniteModel, a LlamaModel: LLaMA's tensors,
q and k permuted for llama.cpp's rotation, LLaMA's keys) with Granite's four scalars under llama.cpp's names:
embedding_multiplier as `granite.embedding_scale`, attention_multiplier as `granite.attention.scale`,
residual_multiplier as `granite.residual_scale` and logits_scaling as `granite.logit_scale`. llama.cpp's granite
graph (src/models/granite.cpp) requires logit_scale and divides the logits by it; the other three are optional,
and a missing (or 0) one means 1/sqrt(head_dim) for the attention scale and no scaling for the other two.

Granite MoE is llama.cpp's `granitemoe` (GraniteMoeModel): the same keys under `granitemoe.*` with expert_count and
expert_used_count, and each layer's stacked `block_sparse_moe.input_linear` (E, 2I, C) split into ffn_gate_exps
(its first I rows of each expert) and ffn_up_exps, output_linear as ffn_down_exps, the router as ffn_gate_inp.
llama.cpp's graph (src/models/granite.cpp, its MoE branch) takes a softmax over the top-k router logits, as
transformers does. A shared MLP (`granitemoeshared`) is not read."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta
from .llama import _experts_out


def _scalars(hf: dict, meta: Meta) -> dict:
    """The four scalars (what llama.cpp assumes where a key is missing or 0)."""
    if not meta.get("rope.scaling.finetuned", True):  # llama.cpp's granite switches RoPE off with it
        raise LlmarchError(f"{meta.path}: GGUF {meta.arch} without RoPE (rope.scaling.finetuned false) is not "
                           "supported")
    return {**hf, "attention_multiplier": meta.get("attention.scale", 0.0) or hf["head_dim"] ** -0.5,
            "embedding_multiplier": meta.get("embedding_scale", 0.0) or 1.0,
            "residual_multiplier": meta.get("residual_scale", 0.0) or 1.0,
            "logits_scaling": meta.get("logit_scale")}


def _granite(hf: dict, meta: Meta) -> dict:
    """The scalars, MLP biases where the file has them (llama.cpp's granite loads q/k/v/o and MLP biases where
    present)."""
    if meta.get("expert_count", 0):
        raise LlmarchError(f"{meta.path}: a GGUF granite file with experts is Granite MoE, whose architecture is "
                           "granitemoe")
    return {**_scalars(hf, meta), "mlp_bias": meta.has("blk.0.ffn_down.bias")}


def _granitemoe(hf: dict, meta: Meta) -> dict:
    if meta.get("expert_shared_feed_forward_length", 0):
        raise LlmarchError(f"{meta.path}: a GGUF granitemoe file with a shared MLP (granitemoeshared) is not "
                           "supported")
    return {**_scalars(hf, meta), "num_local_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count")}


def _granite_out(w, hf: dict) -> dict:
    """GraniteModel.set_gguf_parameters: the four scalars, each as its _scale key (the converter writes one only
    where it is non-zero; llmarch's are positive, so always); a mixture's expert counts (TextModel's)."""
    w.add_attention_scale(hf["attention_multiplier"])
    w.add_embedding_scale(hf["embedding_multiplier"])
    w.add_residual_scale(hf["residual_multiplier"])
    w.add_logit_scale(hf["logits_scaling"])
    return _experts_out(w, hf)


def _split_gate_up(t: torch.Tensor, hf: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """input_linear (E, 2I, C), gate rows first -> gate and up, each (E, I, C)."""
    gate, up = t.chunk(2, dim=-2)
    return gate.contiguous(), up.contiguous()


def _join_gate_up(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    return torch.cat(parts, dim=-2)


# names the gguf package's map takes to ffn_gate_exps and ffn_up_exps
_SPLIT = ((r"\.block_sparse_moe\.input_linear\.weight$",
           (".block_sparse_moe.experts.gate.weight", ".block_sparse_moe.experts.up.weight"),
           _split_gate_up, _join_gate_up),)


def _granite_model_out(w, cfg):
    """What llama.cpp's granite graph computes otherwise is refused: another activation than SiLU (it runs
    LLM_FFN_SILU whatever the config says), a head_dim other than d_model / n_heads (the converter drops head_dim;
    llama.cpp then takes d / heads). The default attention scale is written out (attention.scale)."""
    needs = [(f"ffn='swiglu' (llama.cpp's granite gates with SiLU), not {cfg.ffn!r}", cfg.ffn == "swiglu"),
             (f"head_dim = d_model / n_heads = {cfg.d_model // cfg.n_heads} (GraniteModel drops head_dim), not "
              f"{cfg.head_dim}", cfg.head_dim * cfg.n_heads == cfg.d_model)]
    problem = next((need for need, ok in needs if not ok), None)
    if problem:
        raise LlmarchError(f"GGUF {cfg.hf_model_type} needs {problem}")
    return cfg if cfg.attn_scale is not None else cfg.replace(attn_scale=cfg.head_dim ** -0.5)


ARCHS = {
    "granite": Arch("granite", permuted_qk=True, fields=_granite, write=_granite_out, model_out=_granite_model_out),
    "granitemoe": Arch("granitemoe", permuted_qk=True, fields=_granitemoe, write=_granite_out,
                       model_out=_granite_model_out, split=_SPLIT),
}
