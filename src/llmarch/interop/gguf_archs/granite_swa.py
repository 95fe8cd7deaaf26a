"""IBM Granite with sliding windows and attention sinks (GGUF `granite_swa`, llmarch's granite_swa), as
convert_hf_to_gguf.py's GraniteSWAModel writes it: Granite's tensors and four scalars (granite.py: q and k permuted,
a LlamaModel), each head's sink logit as `attn_sinks.weight` (the converter appends `.weight`), the window and its
layers (sliding_window, sliding_window_pattern: keys llama.cpp's granite_swa requires) and which layers rotate
(`attention.rope_pattern`, a flag a layer, from the config's NoPE layers). llama.cpp's graph has one RoPE base for
every rotating layer, so a layer_rope_theta other than the model's base or 0 (NoPE) is refused; so is Granite MoE
with windows (granitemoe_swa, whose fused gate_up experts and shared MLP this file does not hold)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta
from .granite import _granite_model_out, _granite_out, _scalars

ROPE_PATTERN = "attention.rope_pattern"  # llama.cpp's LLM_KV_ATTENTION_ROPE_PATTERN, which gguf 0.19 does not name


def _granite_swa(hf: dict, meta: Meta) -> dict:
    n = hf["num_hidden_layers"]
    if meta.get("expert_count", 0):
        raise LlmarchError(f"{meta.path}: a granite_swa file with experts (granitemoe_swa) is not supported")
    pattern = meta.get("attention.sliding_window_pattern")
    rotating = meta.get(ROPE_PATTERN, [True] * n)
    if len(pattern) != n or len(rotating) != n:
        raise LlmarchError(f"{meta.path}: granite_swa's sliding_window_pattern and rope_pattern need {n} entries")
    return {**_scalars(hf, meta), "mlp_bias": meta.has("blk.0.ffn_down.bias"),
            "sliding_window": meta.get("attention.sliding_window"),
            "layer_types": [SLIDING if s else FULL for s in pattern],
            "layer_rope_theta": [hf["rope_theta"] if r else 0 for r in rotating]}


def _granite_swa_out(w, hf: dict) -> dict:
    """GraniteSWAModel.set_gguf_parameters: Granite's keys, the window, its layers and the rotating ones."""
    base = hf["rope_parameters"]["rope_theta"]
    if set(hf["layer_rope_theta"]) - {base, 0}:
        raise LlmarchError(f"GGUF granite_swa (llama.cpp) rotates with one base, rope_theta={base}, or not at all; "
                           f"this model's layer_rope_theta is {hf['layer_rope_theta']}")
    _granite_out(w, hf)
    w.add_sliding_window(hf["sliding_window"] or 0)
    w.add_sliding_window_pattern([t == SLIDING for t in hf["layer_types"]])
    w.add_array(f"{w.arch}.{ROPE_PATTERN}", [theta != 0 for theta in hf["layer_rope_theta"]])
    return {}


ARCHS = {
    "granite_swa": Arch("granite_swa", permuted_qk=True, fields=_granite_swa, write=_granite_swa_out,
                        model_out=_granite_model_out, names="granite",
                        own_names=((".self_attn.sinks", "attn_sinks.weight"),)),
}
