"""Llama 4 (GGUF "llama4", convert_hf_to_gguf.py's Llama4Model): the text model of Scout and Maverick.

What the converter writes: q and k as Hugging Face holds them (undo_permute False: llama.cpp's llama4 rotates
adjacent pairs, as Llama 4 does); the fused experts' gate_up_proj (E, C, 2I), gate half first, split into
ffn_gate_exps and ffn_up_exps (E, I, C), and down_proj (E, I, C) transposed to ffn_down_exps (E, C, I); the router
as ffn_gate_inp, the shared expert as ffn_*_shexp. Metadata: feed_forward_length the dense FFN's width
(intermediate_size_mlp), expert_feed_forward_length the experts' (intermediate_size), interleave_moe_layer_step.

What llama.cpp fixes (llama-model.cpp's LLM_ARCH_LLAMA4, src/models/llama4 graph): chunked attention over 8192
positions on three layers of four and full attention on every fourth, which has no RoPE (n_no_rope_layer_step 4)
and scales its queries by 1 + 0.1 ln(1 + floor((p + 1) / 8192)) (temperature tuning); the RMS QK-norm after RoPE
on the RoPE layers unless the file has 128 experts (Maverick's); experts on every step-th layer, (i + 1) % step
== 0, chosen by sigmoid score, unnormalised, weighting the experts' input, beside a shared expert as wide as one.
A model otherwise is refused on the way out (_llama4_out, and the writer's read-back check)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta

CHUNK, NOPE_STEP, TEMP_SCALE, TEMP_FLOOR = 8192, 4, 0.1, 8192  # llama.cpp's constants for llama4
NO_QK_NORM_EXPERTS = 128  # llama.cpp's use_kq_norm: every llama4 file but one of 128 experts (Maverick)


def _llama4(hf: dict, meta: Meta) -> dict:
    """The Llama4TextConfig fields llama.cpp's loader implies: the dense FFN's width from feed_forward_length, the
    experts' from expert_feed_forward_length, and its constants for the rest."""
    n, experts = hf["num_hidden_layers"], meta.get("expert_count", 0)
    if not experts:
        raise LlmarchError(f"{meta.path}: a llama4 file without experts (MobileLLM's) is not supported")
    if meta.get("attention.sliding_window", None) is not None:
        raise LlmarchError(f"{meta.path}: a llama4 file with attention.sliding_window (llama.cpp's all-full, "
                           "all-RoPE variant) is not supported")
    step = meta.get("interleave_moe_layer_step", 1)
    return {**hf, "intermediate_size_mlp": hf["intermediate_size"],
            "intermediate_size": meta.get("expert_feed_forward_length"), "num_local_experts": experts,
            "num_experts_per_tok": meta.get("expert_used_count"), "interleave_moe_layer_step": step,
            "moe_layers": list(range(step - 1, n, step)), "attention_chunk_size": CHUNK,
            "no_rope_layer_interval": NOPE_STEP, "use_qk_norm": experts != NO_QK_NORM_EXPERTS,
            "attn_temperature_tuning": True, "attn_scale": TEMP_SCALE, "floor_scale": TEMP_FLOOR}


def _llama4_common(hf: dict) -> dict:
    """As Llama4Model.__init__: intermediate_size is the dense FFN's (intermediate_size_mlp), which _metadata
    writes as feed_forward_length; the experts' is kept as intermediate_size_moe."""
    return {**hf, "intermediate_size": hf["intermediate_size_mlp"], "intermediate_size_moe": hf["intermediate_size"]}


def _llama4_out(w, hf: dict) -> dict:
    """Llama4Model.set_gguf_parameters' keys, after refusing what llama.cpp's llama4 computes otherwise."""
    n = hf["num_hidden_layers"]
    experts = hf.get("num_local_experts") or 0
    step = hf.get("interleave_moe_layer_step") or 1
    nope = [i for i in range(n) if (i + 1) % NOPE_STEP == 0]
    if not experts:
        raise LlmarchError("GGUF llama4 out holds a model with experts (llama.cpp reads one without as MobileLLM)")
    if hf.get("moe_layers") != list(range(step - 1, n, step)):
        raise LlmarchError(f"GGUF llama4 has experts on every interleave_moe_layer_step-th layer ((i + 1) % {step} "
                           f"== 0 in llama.cpp), not moe_layers {hf.get('moe_layers')}")
    if [i for i, r in enumerate(hf["no_rope_layers"]) if not r] != nope:
        raise LlmarchError("GGUF llama4 (llama.cpp) has no RoPE on every 4th layer exactly (no_rope_layers "
                           f"{hf['no_rope_layers']})")
    if hf.get("attention_chunk_size") != CHUNK:
        raise LlmarchError(f"GGUF llama4 (llama.cpp) attends in chunks of {CHUNK} positions, not "
                           f"attention_chunk_size {hf.get('attention_chunk_size')}")
    if [t == "chunked_attention" for t in hf["layer_types"]] != [i not in nope for i in range(n)]:
        raise LlmarchError("GGUF llama4 (llama.cpp) attends in chunks on the RoPE layers and fully on the NoPE "
                           f"ones, not as layer_types {hf['layer_types']}")
    if bool(hf["use_qk_norm"]) != (experts != NO_QK_NORM_EXPERTS):
        raise LlmarchError(f"GGUF llama4 (llama.cpp) has the QK-norm unless 128 experts: not use_qk_norm "
                           f"{hf['use_qk_norm']} with {experts} experts")
    if not hf["attn_temperature_tuning"] or hf["attn_scale"] != TEMP_SCALE or hf["floor_scale"] != TEMP_FLOOR:
        raise LlmarchError(f"GGUF llama4 (llama.cpp) tunes the NoPE layers' temperature with attn_scale "
                           f"{TEMP_SCALE} and floor_scale {TEMP_FLOOR}, not attn_temperature_tuning "
                           f"{hf['attn_temperature_tuning']}, attn_scale {hf['attn_scale']}, floor_scale "
                           f"{hf['floor_scale']}")
    w.add_expert_count(experts)
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_interleave_moe_layer_step(step)
    w.add_expert_feed_forward_length(hf["intermediate_size_moe"])
    return {}


def _split_gate_up(t: torch.Tensor, hf: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, C, 2I), gate half first -> gate and up, each (E, I, C) as ggml's (out, in)."""
    gate, up = t.transpose(-1, -2).chunk(2, dim=-2)
    return gate.contiguous(), up.contiguous()


def _join_gate_up(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    return torch.cat(parts, dim=-2).transpose(-1, -2)


ARCHS = {
    "llama4": Arch("llama4_text", fields=_llama4, common=_llama4_common, write=_llama4_out,
                   split=((r"\.experts\.gate_up_proj$", (".experts.gate_proj.weight", ".experts.up_proj.weight"),
                           _split_gate_up, _join_gate_up),),
                   tensors=((r"\.experts\.down_proj$", lambda t, hf: t.transpose(-1, -2).contiguous(),
                             lambda t, hf: t.transpose(-1, -2)),),
                   # the converter names down_proj's weight `.weight` (the name map knows it so)
                   renamed=((".experts.down_proj", ".experts.down_proj.weight"),)),
}
