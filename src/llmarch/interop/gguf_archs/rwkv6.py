"""RWKV-6 (GGUF `rwkv6`, convert_hf_to_gguf.py's Rwkv6Model; llama.cpp's rwkv6 graph): no attention heads (head_count
0, as the converter writes), the heads' width in `wkv.head_size`, the LoRA ranks in `time_mix_extra_dim` (the token
shift's) and `time_decay_extra_dim`, LayerNorm's epsilon in `attention.layer_norm_epsilon` (llama.cpp's output norm
takes it too, where the HF layout's ln_out has 1e-5: another is refused), two token shifts a layer (llama.cpp's
default token_shift_count). The converter transposes time_maa_w1 and the decay LoRA, stores time_maa_w2 as (5, d, R),
the (1, 1, d) lerps and decay as vectors, and the five lerps w k v r g as one time_mix_lerp_fused (5, 1, 1, d);
llama.cpp's older unfused time_mix_lerp_w ... g read too; the HF names without `.weight` get it.
`rescale_every_n_layers` n (6 in the released models' files): the converter divides layer j's time_mix_output and
channel_mix_value by 2^(j // n), and llama.cpp halves the residual stream after every n-th layer (an fp16 range guard
of the RWKV code). The two cancel in floating point (powers of 2) except in the LayerNorms, where layer j sees the
stream 2^-(j // n) times smaller: LN(x / s; eps) = LN(x; eps s^2). llmarch reads such a file as RWKV-4's family reads
rescale_every (presets.rwkv_layers): the two weights multiplied back, layer j's norms with eps 4^(j // n) (layer
types time_mix_k, channel_mix_k) and the output norm with eps 4^(layers // n), what llama.cpp computes. The HF layout
cannot hold those epsilons (its code rescales only in fp16 and bf16), so such a model is written neither to_hf nor
to_gguf; llmarch writes `rescale_every_n_layers` 0.

QRWKV6 (GGUF `rwkv6qwen2`, RWKV6Qwen2Model): the same time mixing keys and tensors under Qwen2's `self_attn.` names,
`attention.head_count_kv` (the keys' and values' heads), RMSNorm's epsilon, one token shift a layer; the converter
reorders the token-shift LoRA's slices from Hugging Face's r k v w g to w k v r g. A file with time_mix_first (RWKV-6's
bonus in these blocks, which llama.cpp would run as RWKV-6's time mixing) is refused."""
from __future__ import annotations

import math

import torch

from ...errors import LlmarchError
from ...layers.rwkv6 import FINAL_NORM_EPS, default_ranks
from ...presets import rwkv_layers
from .arch import Arch, Meta

_NO_SUFFIX = ("time_maa_x", "time_maa_w", "time_maa_k", "time_maa_v", "time_maa_r", "time_maa_g", "time_maa_w1",
              "time_maa_w2", "time_decay", "time_decay_w1", "time_decay_w2", "time_faaaa")


def _rwkv6(hf: dict, meta: Meta) -> dict:
    get = meta.get
    if get("token_shift_count", 2) != 2:
        raise LlmarchError(f"{meta.path}: rwkv6 token_shift_count {get('token_shift_count')} is not supported (2)")
    if not math.isclose(eps := get("attention.layer_norm_epsilon"), FINAL_NORM_EPS, rel_tol=1e-6):
        raise LlmarchError(f"{meta.path}: rwkv6 layer_norm_epsilon {eps} is not supported (1e-5: llama.cpp's output "
                           "norm takes it, the HF layout's ln_out has 1e-5)")
    # rescale_every: not the HF code's (which the family reads as nothing) but the converter's division, undone per
    # layer (_rescaled)
    return {**hf, "head_size": get("wkv.head_size"), "layer_norm_epsilon": get("attention.layer_norm_epsilon"),
            "lora_rank_tokenshift": get("time_mix_extra_dim"), "lora_rank_decay": get("time_decay_extra_dim"),
            "rescale_every": get("rescale_every_n_layers", 0)}


def _rwkv6_in(meta: Meta) -> dict:
    """A rescaled file's norm epsilons, as llama.cpp's halved stream meets them (presets.rwkv_layers)."""
    every = meta.get("rescale_every_n_layers", 0)
    return rwkv_layers(meta.get("block_count"), meta.get("attention.layer_norm_epsilon"), every) if every else {}


def _rescaled(t, hf: dict, layer: int):
    """Layer `layer`'s time_mix_output or channel_mix_value as the converter stores it: divided by 2^(layer // n)."""
    every = hf.get("rescale_every", 0)
    return t / 2 ** (layer // every) if every else t


def _unscaled(t, hf: dict, layer: int):
    every = hf.get("rescale_every", 0)
    return t * 2 ** (layer // every) if every else t


def _rwkv6_common(hf: dict) -> dict:
    """No attention heads, as Rwkv6Model writes them; the HF config's context_length as the common keys' name."""
    return {**hf, "num_attention_heads": 0, "num_key_value_heads": 0, "max_position_embeddings": hf["context_length"]}


def _rwkv6_out(w, hf: dict) -> dict:
    mix, decay = default_ranks(hf["hidden_size"])
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    w.add_rescale_every_n_layers(0)
    w.add_wkv_head_size(hf["head_size"])
    w.add_time_mix_extra_dim(hf.get("lora_rank_tokenshift", mix))
    w.add_time_decay_extra_dim(hf.get("lora_rank_decay", decay))
    return {}


def _flat(t, hf):
    return t.reshape(-1)


def _row(t, hf):
    return t.reshape(1, 1, -1)


_TENSORS = (
    (r"\.attention\.(time_maa_w1|time_decay_w1|time_decay_w2)$", lambda t, hf: t.t(), lambda t, hf: t.t()),
    (r"\.attention\.time_maa_w2$", lambda t, hf: t.permute(0, 2, 1), lambda t, hf: t.permute(0, 2, 1)),
    (r"\.(attention\.time_maa_[xwkvrg]|attention\.time_decay|feed_forward\.time_maa_[kr])$", _flat, _row),
    (r"^rwkv\.blocks\.(?P<layer>\d+)\.(attention\.output|feed_forward\.value)\.weight$", _rescaled, _unscaled),
)
_RENAMED = tuple((f"attention.{p}", f"attention.{p}.weight") for p in _NO_SUFFIX) + \
    tuple((f"feed_forward.{p}", f"feed_forward.{p}.weight") for p in ("time_maa_k", "time_maa_r"))
def _rwkv6qwen2(hf: dict, meta: Meta) -> dict:
    get = meta.get
    heads = hf["hidden_size"] // get("wkv.head_size")
    if get("rescale_every_n_layers", 0):
        raise LlmarchError(f"{meta.path}: rwkv6qwen2 rescale_every_n_layers {get('rescale_every_n_layers')} is not "
                           "supported (0 only)")
    if meta.has("blk.0.time_mix_first.weight"):
        raise LlmarchError(f"{meta.path}: rwkv6qwen2 with time_mix_first (RWKV-6's bonus in Qwen2's blocks) is not "
                           "supported")
    return {**hf, "num_attention_heads": heads, "num_key_value_heads": get("attention.head_count_kv", heads),
            "lora_rank_tokenshift": get("time_mix_extra_dim"), "lora_rank_decay": get("time_decay_extra_dim"),
            "attention_bias": meta.has("blk.0.time_mix_receptance.bias")}


def _rwkv6qwen2_common(hf: dict) -> dict:
    return {**hf, "head_size": hf["hidden_size"] // hf["num_attention_heads"], "num_attention_heads": 0}


def _rwkv6qwen2_out(w, hf: dict) -> dict:
    w.add_wkv_head_size(hf["head_size"])
    w.add_time_mix_extra_dim(hf["lora_rank_tokenshift"])
    w.add_time_decay_extra_dim(hf["lora_rank_decay"])
    w.add_token_shift_count(1)
    w.add_head_count_kv(hf["num_key_value_heads"])
    return {}


def _rkvwg_columns(t, hf):
    """QRWKV6's W1 (d, 5 R), slices r k v w g, as the converter stores it: (5 R, d), slices w k v r g."""
    return _swap(t.t(), 0)


def _swap(t, dim: int):
    blocks = list(t.chunk(5, dim=dim))
    return torch.cat([blocks[3], blocks[1], blocks[2], blocks[0], blocks[4]], dim=dim)


_QWEN2_TENSORS = (
    (r"\.self_attn\.time_maa_w1$", _rkvwg_columns, lambda t, hf: _swap(t, 0).t()),
    (r"\.self_attn\.time_maa_w2$", lambda t, hf: _swap(t, 0).permute(0, 2, 1),
     lambda t, hf: _swap(t.permute(0, 2, 1), 0)),
    (r"\.self_attn\.time_decay_w[12]$", lambda t, hf: t.t(), lambda t, hf: t.t()),
    (r"\.self_attn\.(time_maa_[xwkvrg]|time_decay)$", _flat, _row),
)
_QWEN2_RENAMED = tuple((f"self_attn.{p}", f"self_attn.{p}.weight") for p in _NO_SUFFIX[:-1])


# the five lerps as rows of time_mix_lerp_fused (5, 1, 1, d), in the ddlerp's order (the converter's fusion)
_FUSED = ((r"\.attention\.time_maa_(?P<row>[wkvrg])$", ".attention.time_maa_fused", "wkvrg"),)
ARCHS = {
    "rwkv6": Arch("rwkv6", fields=_rwkv6, model_in=_rwkv6_in, common=_rwkv6_common, write=_rwkv6_out, rope=False,
                  layer_norm=True, head_copy=True, tensors=_TENSORS, renamed=_RENAMED, indexed=_FUSED,
                  own_names=(("attention.time_maa_fused", "time_mix_lerp_fused.weight"),)),
    "rwkv6qwen2": Arch("rwkv6qwen2", fields=_rwkv6qwen2, common=_rwkv6qwen2_common, write=_rwkv6qwen2_out,
                       rope=False, head_copy=True, tensors=_QWEN2_TENSORS, renamed=_QWEN2_RENAMED,
                       indexed=((r"\.self_attn\.time_maa_(?P<row>[wkvrg])$", ".self_attn.time_maa_fused", "wkvrg"),),
                       own_names=(("self_attn.time_maa_fused", "time_mix_lerp_fused.weight"),)),
}
