"""Mistral Small 4 (GGUF `mistral4`, convert_hf_to_gguf.py's Mistral4Model, a DeepseekV2Model): deepseek2's kin,
with its own router and Ministral 3's query scaling."""
from __future__ import annotations

import dataclasses

from ...errors import LlmarchError
from .arch import Meta
from .deepseek import ARCHS as _DEEPSEEK, SOFTMAX, _deepseek2, _deepseek2_out

DEEPSEEK2 = _DEEPSEEK["deepseek2"]


def _mistral4_router(meta: Meta, first_moe: int) -> dict:
    """Mistral 4's router: a softmax's top k, renormalised where expert_weights_norm, no expert bias or groups."""
    if meta.get("expert_gating_func", SOFTMAX) != SOFTMAX or meta.has(f"blk.{first_moe}.exp_probs_b.bias") \
            or meta.get("expert_group_count", 1) > 1:
        raise LlmarchError(f"{meta.path}: mistral4 routing other than a softmax without expert bias or groups is "
                           "not supported")
    return {"model_type": "mistral4", "norm_topk_prob": bool(meta.get("expert_weights_norm", False))}


def _mistral4(hf: dict, meta: Meta) -> dict:
    """Mistral Small 4 (mistral4, the converter's Mistral4Model, a DeepseekV2Model): deepseek2's keys and tensors
    with Mistral 4's router, and Llama 4's query scaling as Ministral 3's (attention.temperature_scale, its unit
    YaRN's original context)."""
    out = {**_deepseek2(hf, meta, _mistral4_router), "model_type": "mistral4", "rope_interleave": True}
    rope = out["rope_parameters"]
    if beta := meta.get("attention.temperature_scale", 0.0):
        unit = meta.get("attention.temperature_length", None)
        if rope["rope_type"] != "yarn" or unit not in (None, rope["original_max_position_embeddings"]):
            raise LlmarchError(f"{meta.path}: mistral4's query scaling is read with YaRN, its unit YaRN's original "
                               "context")
        rope["llama_4_scaling_beta"] = float(beta)
    return out


def _mistral4_out(w, hf: dict) -> dict:
    """deepseek2's keys (the router's gating softmax, expert_weights_norm from norm_topk_prob), and the query
    scaling's beta as attention.temperature_scale, its unit as temperature_length. YaRN only with mscale =
    mscale_all_dim = 1 (Mistral Small 4's): with both 0.8 llama.cpp's mistral4 decoded a tiny model 1.6e-3 logits
    apart (measured; its deepseek2 graph takes mscale = mscale_all_dim for the deepseek2 architecture only)."""
    rope = hf["rope_parameters"]
    if rope.get("rope_type") == "yarn" and not rope.get("mscale") == rope.get("mscale_all_dim") == 1.0:
        raise LlmarchError(f"GGUF mistral4 (llama.cpp) takes YaRN with mscale = mscale_all_dim = 1; this model has "
                           f"mscale {rope.get('mscale')}, mscale_all_dim {rope.get('mscale_all_dim')}")
    _deepseek2_out(w, hf)
    if rope.get("llama_4_scaling_beta"):
        w.add_attn_temperature_scale(rope["llama_4_scaling_beta"])
        w.add_attn_temperature_length(rope["original_max_position_embeddings"])
    return {}


# transformers holds the experts stacked without `.weight` (gate_up_proj (E, 2I, C), gate rows first; down_proj), and
# the converter names them with it: ffn_gate_up_exps, ffn_down_exps
ARCHS = {"mistral4": dataclasses.replace(
    DEEPSEEK2, model_type="mistral4", fields=_mistral4, write=_mistral4_out, also=(),
    renamed=DEEPSEEK2.renamed + tuple((f".experts.{p}", f".experts.{p}.weight")
                                      for p in ("gate_up_proj", "down_proj")))}
