"""LFM2 (GGUF `lfm2`, convert_hf_to_gguf.py's LFM2Model): attention.head_count_kv per layer, 0 for the gated
short-convolution layers; shortconv.l_cache the convolution's taps, its weight stored squeezed to (d, taps); the
final norm stored as token_embd_norm (Hugging Face's model.embedding_norm, applied after the last layer)."""
from __future__ import annotations

from .arch import Arch, Meta

CONV, FULL = "conv", "full_attention"


def _lfm2(hf: dict, meta: Meta) -> dict:
    n, kv = hf["num_hidden_layers"], hf["num_key_value_heads"]
    kv = kv if isinstance(kv, list) else [kv] * n
    return {**hf, "num_key_value_heads": max(kv), "layer_types": [FULL if k else CONV for k in kv],
            "conv_L_cache": meta.get("shortconv.l_cache"), "block_auto_adjust_ff_dim": False,
            "norm_eps": hf.pop("rms_norm_eps"), "conv_bias": meta.has(f"blk.{kv.index(0)}.shortconv.in_proj.bias")
            if 0 in kv else False}


def _lfm2_common(hf: dict) -> dict:
    """The KV-head count per layer (0 for a convolution layer) and RMSNorm's epsilon, as LFM2Model writes them."""
    kv = [0 if t == CONV else hf["num_key_value_heads"] for t in hf["layer_types"]]
    return {**hf, "num_key_value_heads": kv, "rms_norm_eps": hf["norm_eps"]}


def _lfm2_out(w, hf: dict) -> dict:
    w.add_shortconv_l_cache(hf["conv_L_cache"])
    return {}


ARCHS = {
    "lfm2": Arch("lfm2", fields=_lfm2, common=_lfm2_common, write=_lfm2_out,
                 tensors=((r"\.conv\.conv\.weight$", lambda t, hf: t.squeeze(1), lambda t, hf: t.unsqueeze(1)),)),
}
