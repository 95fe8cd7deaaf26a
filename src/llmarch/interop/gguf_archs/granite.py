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
transformers does. A GGUF granitemoe file with a shared MLP (`granitemoeshared`) is not read.

Granite 4.0 (`granitemoehybrid`) is llama.cpp's `granitehybrid` (GraniteHybridModel: Mamba2Model's SSM tensors and
keys, ssm.time_step_rank the head count, with GraniteMoeModel's): attention.head_count_kv per layer, 0 for the
Mamba-2 ones; RoPE only where rope.scaling.finetuned is true (the converter writes false for a hybrid, and
llama.cpp's graph then has no positions); the shared MLP as ffn_gate_shexp / ffn_up_shexp / ffn_down_shexp beside
experts (expert_shared_feed_forward_length), or as the dense ffn_gate / ffn_up / ffn_down without. Bamba
(`bamba`) is written as this architecture too (the converter registers BambaForCausalLM with it): RoPE on, none of
Granite's keys, its attention layers by the same KV-head counts."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta
from .llama import _experts_out
from .mamba import mamba2_tensors


def _scalars(hf: dict, meta: Meta) -> dict:
    """The four scalars (what llama.cpp assumes where a key is missing or 0)."""
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
    _check_rope(meta)
    return {**_scalars(hf, meta), "mlp_bias": meta.has("blk.0.ffn_down.bias")}


def _check_rope(meta: Meta) -> None:
    if not meta.get("rope.scaling.finetuned", True):  # llama.cpp's granite switches RoPE off with it
        raise LlmarchError(f"{meta.path}: GGUF {meta.arch} without RoPE (rope.scaling.finetuned false) is not "
                           "supported")


def _granitemoe(hf: dict, meta: Meta) -> dict:
    _check_rope(meta)
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


def _granitehybrid(hf: dict, meta: Meta) -> dict:
    """GraniteMoeHybridConfig's fields: each layer's type from its KV-head count, the SSM keys as mamba_*, the
    experts and the shared MLP's width (the dense FFN's, feed_forward_length, without experts)."""
    n, d = hf["num_hidden_layers"], hf["hidden_size"]
    kv = hf["num_key_value_heads"]
    kv = kv if isinstance(kv, list) else [kv] * n
    inner, heads = meta.get("ssm.inner_size"), meta.get("ssm.time_step_rank")
    if inner % d:
        raise LlmarchError(f"{meta.path}: ssm.inner_size {inner} is not a multiple of embedding_length {d}")
    experts = meta.get("expert_count", 0)
    mamba = dict(mamba_d_state=meta.get("ssm.state_size"), mamba_d_conv=meta.get("ssm.conv_kernel"),
                 mamba_expand=inner // d, mamba_n_heads=heads, mamba_d_head=inner // heads,
                 mamba_n_groups=meta.get("ssm.group_count", 1),
                 mamba_conv_bias=meta.has(f"blk.{kv.index(0)}.ssm_conv1d.bias") if 0 in kv else True,
                 mamba_proj_bias=False)
    rope = meta.get("rope.scaling.finetuned", True)
    if rope and meta.get("logit_scale", None) is None and not experts:  # Bamba: RoPE on, none of Granite's keys
        head_dim = hf["head_dim"]
        rope_parameters = {**(hf.pop("rope_scaling", None) or {"rope_type": "default"}),
                           "rope_theta": hf.pop("rope_theta"),
                           "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
        bias = meta.has("blk.0.ffn_down.bias")
        return {**hf, **mamba, "model_type": "bamba", "num_key_value_heads": max(kv),
                "attn_layer_indices": [i for i, k in enumerate(kv) if k], "rope_parameters": rope_parameters,
                "attention_bias": bias, "mlp_bias": bias}
    ffn = dict(num_local_experts=experts, num_experts_per_tok=meta.get("expert_used_count"),
               shared_intermediate_size=meta.get("expert_shared_feed_forward_length")) if experts else \
        dict(num_local_experts=0, shared_intermediate_size=hf["intermediate_size"])
    return {**_scalars(hf, meta), **ffn, **mamba, "num_key_value_heads": max(kv),
            "layer_types": ["full_attention" if k else "linear_attention" for k in kv],
            "position_embedding_type": "rope" if rope else "nope"}


def _granitehybrid_common(hf: dict) -> dict:
    """The KV-head count per layer, 0 for the Mamba-2 ones, as GraniteHybridModel writes it (Bamba's attention
    layers from attn_layer_indices)."""
    if hf["model_type"] == "bamba":
        attn = set(hf["attn_layer_indices"])
        kv = [hf["num_key_value_heads"] if i in attn else 0 for i in range(hf["num_hidden_layers"])]
    else:
        kv = [0 if t == "linear_attention" else hf["num_key_value_heads"] for t in hf["layer_types"]]
    return {**hf, "num_key_value_heads": kv}


def _granitehybrid_out(w, hf: dict) -> dict:
    """GraniteHybridModel.set_gguf_parameters: Granite's scalars and expert counts, the shared MLP's width, the
    SSM keys, RoPE switched off unless the model has it."""
    if hf.get("mamba_proj_bias"):  # llama.cpp's Mamba-2 graph has no in/out projection biases
        raise LlmarchError("GGUF granitehybrid (llama.cpp) has no Mamba-2 in_proj/out_proj biases")
    bamba = hf["model_type"] == "bamba"
    if not bamba:  # Bamba: none of Granite's scalars (the converter writes each only where the config has it)
        _granite_out(w, hf)
    if hf.get("num_local_experts"):
        w.add_expert_shared_feed_forward_length(hf["shared_intermediate_size"])
    w.add_ssm_conv_kernel(hf["mamba_d_conv"])
    w.add_ssm_state_size(hf["mamba_d_state"])
    w.add_ssm_group_count(hf["mamba_n_groups"])
    w.add_ssm_inner_size(hf["mamba_expand"] * hf["hidden_size"])
    w.add_ssm_time_step_rank(hf["mamba_n_heads"])
    w.add_rope_scaling_finetuned(bamba or hf["position_embedding_type"] == "rope")
    return {}


def _granitehybrid_model_out(w, cfg):
    """The converter switches RoPE off in a Granite 4.0 hybrid (a file with it on is Bamba's), and a model without
    Mamba-2 layers is Granite's or Granite MoE's architecture; Bamba's heads must be wholly rotated."""
    mamba = any(cfg.layer_mixer(i) == "mamba2" for i in range(cfg.n_layers))
    if not mamba:
        raise LlmarchError("GGUF granitehybrid needs Mamba-2 layers; a Granite 4.0 of attention layers alone is "
                           "written as granite or granitemoe by llama.cpp's converter")
    if cfg.hf_model_type == "bamba" and cfg.rope_fraction != 1.0:
        # llama.cpp rotates the first rope.dimension_count dims of the permuted head in pairs across its halves,
        # transformers the first dims' own halves: a file of this Bamba decoded 0.61 logits apart in llama.cpp
        raise LlmarchError(f"GGUF granitehybrid (Bamba) needs rope_fraction=1, not {cfg.rope_fraction}: llama.cpp "
                           "rotates a partly rotated head otherwise")
    if cfg.positions != "none" and cfg.hf_model_type != "bamba":
        raise LlmarchError("GGUF granitehybrid needs positions='none' (the converter switches RoPE off in a hybrid "
                           f"and llama.cpp's graph has none), not {cfg.positions!r}")
    kept = _granite_model_out(w, cfg)
    return cfg if cfg.hf_model_type == "bamba" else kept  # Bamba's attention scale is llama.cpp's default


def _has_experts(hf: dict) -> bool:
    return bool(hf.get("num_local_experts"))


_SHARED_IN = r"\.shared_mlp\.input_linear\.weight$"
_HYBRID_SPLIT = _SPLIT + (
    (_SHARED_IN, (".mlp.shared_expert.gate_proj.weight", ".mlp.shared_expert.up_proj.weight"),
     lambda t, hf: _split_gate_up(t, hf) if _has_experts(hf) else None, _join_gate_up),
    (_SHARED_IN, (".mlp.gate_proj.weight", ".mlp.up_proj.weight"),
     lambda t, hf: None if _has_experts(hf) else _split_gate_up(t, hf), _join_gate_up),
    # without experts the shared MLP's down projection is the dense ffn_down (else the map's ffn_down_shexp)
    (r"\.shared_mlp\.output_linear\.weight$", (".mlp.down_proj.weight",),
     lambda t, hf: None if _has_experts(hf) else (t,), lambda parts, hf: parts[0]),
)
ARCHS = {
    "granite": Arch("granite", permuted_qk=True, fields=_granite, write=_granite_out, model_out=_granite_model_out),
    "granitemoe": Arch("granitemoe", permuted_qk=True, fields=_granitemoe, write=_granite_out,
                       model_out=_granite_model_out, split=_SPLIT),
    "granitehybrid": Arch("granitemoehybrid", also=("bamba",), permuted_qk=True, fields=_granitehybrid,
                          common=_granitehybrid_common,
                          write=_granitehybrid_out, model_out=_granitehybrid_model_out, split=_HYBRID_SPLIT,
                          tensors=mamba2_tensors("mamba", "mamba_n_groups"),
                          renamed=((".dt_bias", ".dt_proj.bias"),)),
}
