"""Grok-1 (GGUF `grok`, llmarch's grok-1), as convert_hf_to_gguf.py's GrokModel writes it: LLaMA's attention tensors
(q and k unpermuted: llama.cpp's grok graph rotates halves), `attn_output_norm` and `post_ffw_norm` (the sandwich's
post-norms), the GELU-gated experts stacked, `attention.output_scale` (the scores' multiplier),
`attn_logit_softcapping`, `embedding_scale`, `logit_scale` and `final_logit_softcapping` where given. Where a file
lacks them llama.cpp takes Grok-1's values (llama-model.cpp's defaults: scale 1/sqrt(128), cap 30, embedding scale
78.38, logit scale 1/sqrt(3)), and so does reading here. llama.cpp 0.3.36's graph does not soft-cap the router's
logits whatever `router_logit_softcapping` says (measured: with router logits of ~10, 3e-3 apart from a capped
llmarch, 1.9e-4 from an uncapped one), so a file reads uncapped and a capped model is refused. Its experts' GELU is
ggml's F16 table (the gate rounded to F16, the result read in F16): tanh-GELU in llmarch, 1.2e-4 apart on a tiny
model, 1.8e-6 once llmarch's gate and result are rounded so too (measured). Refused: a dense FFN beside the experts
(Grok-2's), RoPE and YaRN scaling, attention temperature."""
from __future__ import annotations


from ...errors import LlmarchError
from .arch import Arch, Meta

# llama.cpp's grok defaults for files without the keys (Grok-1's)
_DEFAULTS = {"attention.output_scale": 128 ** -0.5, "attn_logit_softcapping": 30.0,
             "embedding_scale": 78.38367176906169, "logit_scale": 3 ** -0.5}


def _grok(hf: dict, meta: Meta) -> dict:
    if meta.has("blk.0.ffn_up.weight") or hf.get("rope_scaling") or meta.get("attention.temperature_length", 0):
        raise LlmarchError(f"{meta.path}: a grok file with a dense FFN beside the experts (Grok-2's), RoPE scaling or "
                           "attention temperature is not supported")
    got = {k: float(meta.get(k, v)) for k, v in _DEFAULTS.items()}
    final = meta.get("final_logit_softcapping", 0.0)
    return {**hf, "model_type": "grok-1", "hidden_act": "gelu_pytorch_tanh",
            "intermediate_size": meta.get("expert_feed_forward_length", hf["intermediate_size"]),
            "num_local_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "attn_output_multiplier": got["attention.output_scale"],
            "attn_logit_softcapping": got["attn_logit_softcapping"],
            "embedding_multiplier_scale": got["embedding_scale"], "output_multiplier_scale": got["logit_scale"],
            **({"final_logit_softcapping": final} if final else {})}


def _grok_common(hf: dict) -> dict:
    return {**hf, "rope_parameters": {"rope_type": "default", "rope_theta": hf["rope_theta"]}}


def _grok_out(w, hf: dict) -> dict:
    if hf["hidden_act"] != "gelu_pytorch_tanh" or hf.get("router_logit_softcapping") is not None:
        raise LlmarchError("GGUF grok: llama.cpp's graph runs tanh-GELU experts and does not soft-cap the router's "
                           f"logits; this model has hidden_act {hf['hidden_act']!r} and router_logit_softcapping "
                           f"{hf.get('router_logit_softcapping')}")
    w.add_expert_count(hf["num_local_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["intermediate_size"])
    w.add_attn_output_scale(hf["attn_output_multiplier"])
    w.add_attn_logit_softcapping(hf["attn_logit_softcapping"])
    w.add_embedding_scale(hf["embedding_multiplier_scale"])
    w.add_logit_scale(hf["output_multiplier_scale"])
    if hf.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(hf["final_logit_softcapping"])
    return {}


ARCHS = {"grok": Arch("grok-1", fields=_grok, common=_grok_common, write=_grok_out)}
