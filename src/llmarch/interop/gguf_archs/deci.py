"""NVIDIA's Llama-3.x-Nemotron "NAS" models (GGUF `deci`, llmarch's nemotron-nas), as convert_hf_to_gguf.py's
DeciModel writes them: LLaMA's tensors and keys with the shape of each layer as per-layer arrays, which llama.cpp's
deci graph (src/models/deci.cpp) reads: `attention.head_count` 0 for a layer without attention, `head_count_kv` 0 for
one whose attention is a single matrix (`replace_with_linear`, stored as its `attn_output`), else the layer's key/value
heads; `feed_forward_length` 0 for a layer without an FFN, else its width. q and k rows are permuted per head (LLaMA's
permutation, with each layer's own head count). A file with one head count and one width for every layer (DeciLM-7B's,
key/value heads per layer) reads so too. Refused: widths that no ffn_mult gives (the remote code's multiples of 256),
head counts that differ between attention layers, an attention scale of its own, and, in and out, a layer with
attention but no FFN: llama.cpp 0.3.36's graph skips such a layer whole (its `continue` drops the attention's output;
measured: a tiny model with one decodes 2.5 logits apart from llmarch, and llama.cpp aborts where it is the last)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..nemotron_nas import ffn_width
from .arch import Arch, Meta


def _per_layer(value, n: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)] * n


def _no_lone_attention(heads: list[int], widths: list[int], where: str) -> None:
    lone = [i for i, (h, w) in enumerate(zip(heads, widths)) if h and not w]
    if lone:
        raise LlmarchError(f"{where}: layer {lone[0]} has attention and no FFN, which llama.cpp's deci graph skips "
                           "whole (it drops the attention's output)")


def _deci(hf: dict, meta: Meta) -> dict:
    n, d = hf["num_hidden_layers"], hf["hidden_size"]
    heads = _per_layer(hf["num_attention_heads"], n)
    kv, widths = _per_layer(hf["num_key_value_heads"], n), _per_layer(hf["intermediate_size"], n)
    h = max(heads)
    if not h or any(x not in (0, h) for x in heads) or hf["head_dim"] != d // h:
        raise LlmarchError(f"{meta.path}: deci with attention.head_count {heads} and key_length {hf['head_dim']} is "
                           "not supported (one head count, of hidden / heads dims each)")
    if meta.get("attention.scale", 0.0):
        raise LlmarchError(f"{meta.path}: deci with an attention.scale of its own is not supported")
    _no_lone_attention(heads, widths, str(meta.path))
    blocks = []
    for i in range(n):
        if widths[i] and ffn_width(widths[i] * 3 / (2 * d), d) != widths[i]:
            raise LlmarchError(f"{meta.path}: layer {i}'s feed_forward_length {widths[i]} is not a multiple of 256, "
                               "which no ffn_mult gives")
        attention = {"no_op": not heads[i], "replace_with_linear": bool(heads[i]) and not kv[i],
                     "n_heads_in_group": h // kv[i] if heads[i] and kv[i] else None}
        ffn = {"no_op": not widths[i], "ffn_mult": widths[i] * 3 / (2 * d) if widths[i] else None}
        blocks.append({"attention": attention, "ffn": ffn})
    out = {k: v for k, v in hf.items() if k not in ("num_key_value_heads", "intermediate_size", "head_dim")}
    return {**out, "num_attention_heads": h, "block_configs": blocks}


def _deci_common(hf: dict) -> dict:
    """config.json's block_configs as the converter's per-layer arrays (heads, key/value heads, FFN widths)."""
    n, d, h = hf["num_hidden_layers"], hf["hidden_size"], hf["num_attention_heads"]
    heads, kv, widths = [], [], []
    for block in hf["block_configs"]:
        attn, ffn = block["attention"], block["ffn"]
        heads.append(0 if attn["no_op"] else h)
        kv.append(h // attn["n_heads_in_group"] if attn["n_heads_in_group"] else 0)
        widths.append(0 if ffn["no_op"] else ffn_width(ffn["ffn_mult"], d))
    assert len(heads) == n
    _no_lone_attention(heads, widths, "GGUF deci")
    return {**hf, "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": widths,
            "head_dim": d // h}


def _absent(hf: dict) -> str:
    """A projection layer's matrix and an attention layer's o_proj are both attn_output: each layer reads its own."""
    linear = [str(i) for i, b in enumerate(hf["block_configs"]) if b["attention"]["replace_with_linear"]]
    other = [str(i) for i, b in enumerate(hf["block_configs"]) if not b["attention"]["replace_with_linear"]]
    parts = [rf"model\.layers\.({'|'.join(layers)})\.self_attn\.{name}\."
             for layers, name in ((linear, "o_proj"), (other, "linear_attn")) if layers]
    return "|".join(parts)


def _heads(w: torch.Tensor, hf: dict) -> int:
    """This layer's heads of q or k (written: the per-layer arrays beside head_dim; read: config.json's fields)."""
    return w.shape[0] // (hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"])


def _permute(w: torch.Tensor, hf: dict) -> torch.Tensor:
    """LLaMA's q/k permutation (convert_hf_to_gguf.py's DeciModel.permute), per head of this layer's count."""
    heads = _heads(w, hf)
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _unpermute(w: torch.Tensor, hf: dict) -> torch.Tensor:
    heads = _heads(w, hf)
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


ARCHS = {"deci": Arch("nemotron-nas", fields=_deci, common=_deci_common, absent=_absent,
                      tensors=((r"self_attn\.[qk]_proj\.weight$", _permute, _unpermute),))}
