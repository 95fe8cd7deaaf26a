"""ModernBERT as llama.cpp runs it (architecture `modern-bert`): an embedding model, as convert_hf_to_gguf.py's
ModernBertModel (a BertModel) writes it. The converter strips `model.` from the tensor names; q, k, v stay one
fused attn_qkv and the GeGLU's Wi one ffn_up (activated half first); block 0 has no attn_norm (an Identity in
transformers). Its metadata: BertModel's (attention.causal false, LayerNorm's epsilon, pooling_type where a
sentence-transformers Pooling module says), attention.sliding_window = local_attention (the whole window:
llama.cpp's symmetric window lets a token see n_swa / 2 either side, as ModernBERT does; our sliding_window is
local_attention // 2 + 1), attention.sliding_window_pattern = global_attn_every_n_layers (llama.cpp's
set_swa_pattern with the dense layer first: layer i is global where i % n == 0), rope.freq_base the global layers'
base and rope.freq_base_swa the local layers'. The vocabulary is a byte-level BPE (gpt2).

llmarch writes the encoder (the file llama.cpp embeds with) with its pooling: a masked-LM head is left out with a
warning, a classifier refused; a file holding a head (cls tensors, which llama.cpp loads where present) is refused
on reading, naming the tensor (llmarch reads the encoder only). What llama.cpp's graph computes otherwise is
refused on the way out: an MLP other than GeGLU with exact GELU, biases (its loader takes none), RoPE scaling,
layer types that are not every n-th layer global from layer 0."""
from __future__ import annotations

from ...errors import LlmarchError, warn
from .arch import FULL, SLIDING, Arch, Meta, field
from .bert import POOLING


def _layer_types(meta: Meta, n: int) -> list[str]:
    """Each layer's type as llama.cpp's modern-bert reads them: no window, all global; else the pattern (a
    period, dense first, 3 where absent; or a list of flags, true for a local layer)."""
    if not meta.get("attention.sliding_window", 0):
        return [FULL] * n
    pattern = meta.get("attention.sliding_window_pattern", 3)
    if isinstance(pattern, list):
        return [SLIDING if flag else FULL for flag in pattern[:n]]
    return [SLIDING if i % int(pattern) else FULL for i in range(n)]


def _modernbert(hf: dict, meta: Meta) -> dict:
    """ModernBERT's config.json from the metadata: norm and projection biases where the file has them, exact GELU
    (ModernBERT's default; llama.cpp's geglu), the two RoPE bases, the window and the layer types."""
    if meta.get("attention.causal", False):
        raise LlmarchError(f"{meta.path}: a modern-bert file with attention.causal true is not ModernBERT "
                           "(bidirectional)")
    n = hf["num_hidden_layers"]
    biased = meta.has("blk.0.attn_qkv.bias")
    return dict(model_type="modernbert", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"],
                hidden_size=hf["hidden_size"], num_hidden_layers=n, num_attention_heads=hf["num_attention_heads"],
                intermediate_size=hf["intermediate_size"], hidden_activation="gelu", classifier_activation="gelu",
                norm_eps=meta.get("attention.layer_norm_epsilon"), norm_bias=meta.has("token_embd_norm.bias"),
                attention_bias=biased, mlp_bias=biased, max_position_embeddings=hf["max_position_embeddings"],
                global_rope_theta=hf["rope_theta"],
                local_rope_theta=meta.get("rope.freq_base_swa", hf["rope_theta"]),  # llama.cpp: the global base
                local_attention=meta.get("attention.sliding_window", 0) or 128, layer_types=_layer_types(meta, n),
                pad_token_id=field(meta.reader, "tokenizer.ggml.padding_token_id", 50283),  # ModernBERT's default
                tie_word_embeddings=True)


def _common(hf: dict) -> dict:
    """The names _metadata writes from: the global layers' base as rope_theta (rope.freq_base)."""
    return {**hf, "num_key_value_heads": hf["num_attention_heads"], "rope_theta": hf["global_rope_theta"]}


def _every(hf: dict) -> int | None:
    types, n = hf["layer_types"], hf["num_hidden_layers"]
    return next((k for k in range(1, n + 1) if types == [SLIDING if i % k else FULL for i in range(n)]), None)


def _modernbert_out(w, hf: dict) -> dict:
    """ModernBertModel.set_gguf_parameters: BertModel's keys, the window, its pattern, the local layers' base."""
    import gguf

    every = _every(hf)
    if every is None:
        raise LlmarchError(f"GGUF modern-bert (llama.cpp) takes every n-th layer global from layer 0 "
                           f"(sliding_window_pattern); this model's layer_types are {hf['layer_types']}")
    w.add_layer_norm_eps(hf["norm_eps"])
    w.add_causal_attention(False)
    w.add_sliding_window(hf["local_attention"])
    w.add_sliding_window_pattern(every)
    w.add_rope_freq_base_swa(hf["local_rope_theta"])
    w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    w.add_pad_token_id(hf["pad_token_id"])  # write_tokenizer's, where it has one, replaces it
    return {}


def _embedding_in(meta: Meta) -> dict:
    pooling = POOLING[meta.get("pooling_type", 0)]
    if pooling not in ("none", "mean", "cls"):
        raise LlmarchError(f"{meta.path}: a modern-bert file with pooling_type {pooling} is not supported "
                           "(none, mean, cls)")
    return dict(head="embed", pooling=pooling, head_transform=False, head_bias=False)


def _embedding_out(w, cfg):
    """The encoder and its pooling; a masked-LM head left out (with a warning), a classifier refused."""
    import gguf

    if cfg.head in ("classify", "tokens"):
        raise LlmarchError(f"GGUF modern-bert (llama.cpp) is written as an embedding model; this ModernBERT has a "
                           f"{cfg.head} head")
    if cfg.ffn != "geglu":  # llama.cpp's modern-bert runs ggml's geglu (exact GELU), as ModernBERT's default
        raise LlmarchError(f"GGUF modern-bert (llama.cpp) computes a GeGLU MLP with exact GELU; this model has "
                           f"ffn={cfg.ffn!r}")
    if cfg.bias or cfg.qkv_bias or cfg.norm_bias:  # its loader takes weights only: a file with biases fails to load
        raise LlmarchError("GGUF modern-bert (llama.cpp) has no biases (attention_bias, mlp_bias, norm_bias); this "
                           "model has them")
    scaled = {cfg.for_layer(i).rope_scaling for i in range(cfg.n_layers)} - {"none"}
    if scaled:  # the converter writes rope.scaling.type none: llama.cpp rotates without scaling
        raise LlmarchError(f"GGUF modern-bert (llama.cpp) has no RoPE scaling; this model has rope_scaling "
                           f"{', '.join(sorted(scaled))}")
    if cfg.head == "lm":
        warn("GGUF modern-bert keeps no masked-LM head: the file holds the encoder, an embedding model")
    # a masked LM's pooling is its unused classifier_pooling: the converter writes none without a Pooling module
    pooling = cfg.pooling if cfg.head == "embed" else "none"
    if pooling != "none":
        w.add_pooling_type(gguf.PoolingType(POOLING.index(pooling)))
    return cfg.replace(head="embed", pooling=pooling, head_transform=False, head_bias=False)


ARCHS = {
    "modern-bert": Arch("modernbert", fields=_modernbert, common=_common, write=_modernbert_out, layer_norm=True,
                        stripped=("model.",), dropped=r"^(head\.|decoder\.)", model_in=_embedding_in,
                        model_out=_embedding_out),
}
