"""RWKV-7 (GGUF `rwkv7`, convert_hf_to_gguf.py's Rwkv7Model; llama.cpp's rwkv7 graph): no attention heads (head_count
0, as the converter writes), the heads' width in `wkv.head_size`, the four LoRA ranks in `attention.decay_lora_rank`,
`iclr_lora_rank`, `value_residual_mix_lora_rank`, `gate_lora_rank`, LayerNorm's epsilon in
`attention.layer_norm_epsilon`, two token shifts a layer (`token_shift_count` 2: the time and channel mixing's).
The converter stores the six lerps as one `time_mix_lerp_fused` (6, 1, 1, d), the LoRA matrices transposed to
(out, in), and layer 0's unused v0 v1 v2 as copies of its a0 a1 a2 (llama.cpp's loader requires them: written here as
zeros of those shapes, never read). llama.cpp's group norm epsilon is 64e-5 whatever the head width (the table's
refusal keeps any other out), its removal key's L2 norm eps 1e-12 (as layers/rwkv7.py's).

ARWKV-7 (GGUF `arwkv7`, ARwkv7Model): the same time mixing in Qwen2.5's blocks (RMSNorm's epsilon, SwiGLU's
feed_forward_length), one token shift a layer; without the output gate (`wkv_has_gate` false) the lerps are five
and gate_lora_rank 0, and llama.cpp leaves out the group norm where the file has no time_mix_ln: which of the two a
file has is read from its tensors."""
from __future__ import annotations

import numpy as np

from .arch import Arch, Meta

_UNUSED = ("blk.0.time_mix_v0.weight", "blk.0.time_mix_v1.weight", "blk.0.time_mix_v2.weight")


def _rwkv7(hf: dict, meta: Meta) -> dict:
    get = meta.get
    return {**hf, "head_size": get("wkv.head_size"), "layer_norm_epsilon": get("attention.layer_norm_epsilon"),
            "lora_rank_decay": get("attention.decay_lora_rank"), "lora_rank_iclr": get("attention.iclr_lora_rank"),
            "lora_rank_value_residual_mix": get("attention.value_residual_mix_lora_rank"),
            "lora_rank_gate": get("attention.gate_lora_rank")}


def _rwkv7_common(hf: dict) -> dict:
    """No attention heads, as Rwkv7Model writes them."""
    return {**hf, "num_attention_heads": 0, "num_key_value_heads": 0}


def _arwkv7(hf: dict, meta: Meta) -> dict:
    get = meta.get
    return {**hf, "head_size": get("wkv.head_size"), "lora_rank_decay": get("attention.decay_lora_rank"),
            "lora_rank_iclr": get("attention.iclr_lora_rank"),
            "lora_rank_value_residual_mix": get("attention.value_residual_mix_lora_rank"),
            "lora_rank_gate": get("attention.gate_lora_rank", 0), "wkv_has_gate": meta.has("blk.0.time_mix_g1.weight"),
            "wkv_has_group_norm": meta.has("blk.0.time_mix_ln.weight")}


def _rwkv7_out(w, hf: dict) -> dict:
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    return _time_mix_out(w, hf, 2)


def _arwkv7_out(w, hf: dict) -> dict:
    return _time_mix_out(w, hf, 1)


def _time_mix_out(w, hf: dict, shifts: int) -> dict:
    """The time mixing's keys (`shifts` token shifts a layer) and layer 0's unused v0 v1 v2."""
    d, iclr = hf["hidden_size"], hf["lora_rank_iclr"]
    w.add_wkv_head_size(hf["head_size"])
    w.add_decay_lora_rank(hf["lora_rank_decay"])
    w.add_iclr_lora_rank(iclr)
    w.add_value_residual_mix_lora_rank(hf["lora_rank_value_residual_mix"])
    w.add_gate_lora_rank(hf["lora_rank_gate"])
    w.add_token_shift_count(shifts)
    zeros = (np.zeros(d, np.float32), np.zeros((iclr, d), np.float32), np.zeros((d, iclr), np.float32))
    return dict(zip(_UNUSED, zeros))


_TENSORS = (
    (r"\.attention\.x_x\.weight$", lambda t, hf: t.reshape(t.shape[0], 1, 1, -1),
     lambda t, hf: t.reshape(t.shape[0], -1)),
    (r"\.attention\.[wavg][12]\.weight$", lambda t, hf: t.t(), lambda t, hf: t.t()),
)
_LERPS = ((".attention.x_x.weight", "time_mix_lerp_fused.weight"),)
ARCHS = {
    "rwkv7": Arch("rwkv7", fields=_rwkv7, common=_rwkv7_common, write=_rwkv7_out, rope=False, layer_norm=True,
                  head_copy=True, tensors=_TENSORS, consumed=frozenset(_UNUSED), own_names=_LERPS),
    "arwkv7": Arch("arwkv7", fields=_arwkv7, common=_rwkv7_common, write=_arwkv7_out, rope=False, head_copy=True,
                   tensors=_TENSORS, consumed=frozenset(_UNUSED), own_names=_LERPS),
}
