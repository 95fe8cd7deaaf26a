"""Gemma 1, 2 and 3 (text): RMSNorm stored as 1 + g, tanh-GELU, Gemma 2's soft-caps, Gemma 3's local/global
layers; and gemma-embedding (EmbeddingGemma, Vera et al. 2025), Gemma 3 bidirectional: llama.cpp attends both ways
(causal_attn false, whatever the file says) with a symmetric window (a sliding layer sees attention.sliding_window // 2
keys either side: config.json's window, which the converter writes as read), scales attention by 1/sqrt(head_dim),
pools as pooling_type says, then applies the sentence-transformers Dense projections the converter writes (with
--sentence-transformers-dense-modules) as dense_2.weight and dense_3.weight, without bias or activation. llama.cpp
normalizes (or not) at its caller's choice: the file holds no Normalize module, so a model that has one is written
without it, with a warning."""
from __future__ import annotations

from ...errors import LlmarchError, warn
from ..sentence_transformers import dense_name
from .arch import FULL, SLIDING, Arch, Meta
from .bert import POOLING


# llama.cpp scales Gemma 2/3 attention by 1/sqrt(n_embd / n_head) on the 27B models, which it knows by their
# layer count, and by 1/sqrt(head_dim) on the others; the converters store no query_pre_attn_scalar
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def _query_scalar(hf: dict, arch: str) -> int:
    if hf["num_hidden_layers"] == _GEMMA_27B_LAYERS[arch]:
        return hf["hidden_size"] // hf["num_attention_heads"]
    return hf["head_dim"]


def _gemma(hf: dict, meta: Meta) -> dict:
    """Gemma (1): GeGLU with tanh-GELU; llama.cpp scales the embedding by sqrt(d) and attention by
    1/sqrt(head_dim), as transformers' Gemma does."""
    return {**hf, "hidden_activation": "gelu_pytorch_tanh"}


def _gemma2(hf: dict, meta: Meta) -> dict:
    """Gemma 2: both soft-caps and the window stored (llama.cpp's defaults 50, 30 and 4096 otherwise); layer i
    slides when i is even (llama.cpp's swa pattern 2, transformers' default layer_types)."""
    return {**hf, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": _query_scalar(hf, "gemma2"),
            "sliding_window": meta.get("attention.sliding_window", 4096),
            "attn_logit_softcapping": meta.get("attn_logit_softcapping", 50.0),
            "final_logit_softcapping": meta.get("final_logit_softcapping", 30.0)}


def _gemma3(hf: dict, meta: Meta) -> dict:
    """Gemma 3 (text): five sliding layers to one full (llama.cpp's pattern 6, or the file's
    sliding_window_pattern: a period, or one flag per layer), no sliding layer without a window; rope.freq_base
    and the scaling are the full layers', the sliding ones' base is rope.freq_base_swa (llama.cpp: 10k)."""
    n, window = hf["num_hidden_layers"], meta.get("attention.sliding_window", 0)
    types = meta.window_types(n, 6) or [FULL] * n
    full = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"), **(hf.pop("rope_scaling", None) or {})}
    local = {"rope_type": "default", "rope_theta": meta.get("rope.freq_base_swa", 10000.0)}
    return {**hf, "model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": _query_scalar(hf, "gemma3"), "sliding_window": window or None,
            "layer_types": types, "attn_logit_softcapping": None,
            "final_logit_softcapping": meta.get("final_logit_softcapping", None),
            "rope_parameters": {FULL: full, SLIDING: local}}


def _gemma2_out(w, hf: dict) -> dict:
    """Gemma2Model.set_gguf_parameters: both caps and the window (a missing cap reads back as llama.cpp's
    default, which the read-back check in gguf_writer.py refuses)."""
    for key, add in (("attn_logit_softcapping", w.add_attn_logit_softcapping),
                     ("final_logit_softcapping", w.add_final_logit_softcapping)):
        if hf.get(key) is not None:
            add(hf[key])
    if hf.get("sliding_window") is not None:
        w.add_sliding_window(hf["sliding_window"])
    return {}


def _gemma3_out(w, hf: dict) -> dict:
    """Gemma3Model.set_gguf_parameters: the final cap if any, the window; the sliding layers' RoPE base where
    it is not llama.cpp's 10k."""
    if hf.get("final_logit_softcapping") is not None:
        w.add_final_logit_softcapping(hf["final_logit_softcapping"])
    if SLIDING in hf["layer_types"]:
        w.add_sliding_window(hf["sliding_window"])
    local = hf["rope_parameters"][SLIDING]["rope_theta"]
    if local != 10000.0:
        w.add_rope_freq_base_swa(local)
    return {}


def _gemma_embedding(hf: dict, meta: Meta) -> dict:
    return {**_gemma3(hf, meta), "query_pre_attn_scalar": hf["head_dim"], "use_bidirectional_attention": True}


def _gemma_embedding_out(w, hf: dict) -> dict:
    if hf["query_pre_attn_scalar"] != hf["head_dim"]:
        raise LlmarchError("GGUF gemma-embedding (llama.cpp) scales attention by 1/sqrt(head_dim); this model has "
                           f"query_pre_attn_scalar {hf['query_pre_attn_scalar']}, not head_dim {hf['head_dim']}")
    return _gemma3_out(w, hf)


_DENSE = ("dense_2", "dense_3")  # llama.cpp's two projections after the pooling, in order


def _embedding_in(meta: Meta) -> dict:
    """An embedding model: its pooling and the Dense projections the file holds (their widths from their shapes)."""
    pooling = POOLING[meta.get("pooling_type", 0)]
    if pooling not in ("none", "mean", "cls", "last"):
        raise LlmarchError(f"{meta.path}: a gemma-embedding file with pooling_type {pooling} is not supported")
    if meta.has("dense_2.bias"):
        raise LlmarchError(f"{meta.path}: a gemma-embedding file with a dense_2 bias is not supported")
    widths = [meta.rows(f"{d}.weight") for d in _DENSE if meta.has(f"{d}.weight")]
    return dict(head="embed", pooling=pooling, head_transform=False, head_bias=False, embed_dense=widths or None,
                embed_dense_bias=False, embed_dense_act="identity", embed_normalize=False)


def _embedding_out(w, cfg):
    """The encoder with its pooling and Dense projections as llama.cpp runs them (dense_2 reads d_model, dense_3
    gives it back), the feature sizes the converter writes; a Normalize module left out with a warning."""
    import gguf

    if cfg.head != "embed":
        raise LlmarchError(f"GGUF gemma-embedding (llama.cpp) is an embedding model; this model has a {cfg.head} head")
    widths = [cfg.d_model, *(cfg.embed_dense or ())]
    if cfg.embed_dense and (len(widths) > 3 or cfg.embed_dense_bias or cfg.embed_dense_act != "identity"
                            or len(widths) == 3 and widths[-1] != cfg.d_model):
        raise LlmarchError(f"GGUF gemma-embedding (llama.cpp) holds at most two Dense projections without bias or "
                           f"activation, the second back to d_model={cfg.d_model}; this model has {cfg.embed_dense} "
                           f"(bias {cfg.embed_dense_bias}, {cfg.embed_dense_act})")
    for name, a, b in zip(_DENSE, widths, widths[1:]):
        w.add_dense_features_dims(name, a, b)
    if cfg.pooling != "none":
        w.add_pooling_type(gguf.PoolingType(POOLING.index(cfg.pooling)))
    if cfg.embed_normalize:
        warn("GGUF gemma-embedding holds no Normalize module (llama.cpp's caller chooses): read back, the model "
             "gives its vectors before unit length")
    return cfg.replace(embed_normalize=False)


# Gemma's converter adds 1 to every *norm.weight (its RMSNorm scales by 1 + g, llama.cpp's by g): Arch.tensors'
# (regex on Hugging Face names, to GGUF (tensor, config.json), from GGUF)
_NORM_PLUS_ONE = ((r"norm\.weight$", lambda t, hf: t + 1.0, lambda t, hf: t - 1.0),)


ARCHS = {
    "gemma": Arch("gemma", fields=_gemma, tensors=_NORM_PLUS_ONE),
    "gemma2": Arch("gemma2", fields=_gemma2, write=_gemma2_out, tensors=_NORM_PLUS_ONE),
    "gemma3": Arch("gemma3_text", fields=_gemma3, write=_gemma3_out, tensors=_NORM_PLUS_ONE,
                   bidirectional_arch="gemma-embedding"),
    "gemma-embedding": Arch("gemma3_text", fields=_gemma_embedding, write=_gemma_embedding_out, tensors=_NORM_PLUS_ONE,
                            model_in=_embedding_in, model_out=_embedding_out,
                            renamed=tuple((dense_name(k), f"{d}_out.weight") for k, d in enumerate(_DENSE))),
}
