"""Encoders llama.cpp runs as embedding models beside BERT (bert.py) and ModernBERT (modernbert.py), as
convert_hf_to_gguf.py writes them: the body without its masked-LM head, attention.causal false, pooling_type where
a sentence-transformers Pooling module says.
- EuroBERT (architecture `eurobert`, EuroBertModel): LLaMA's tensors with `model.` stripped (q, k, v apart and
  unpermuted: llama.cpp rotates EuroBERT's halves, NEOX), RMSNorm's epsilon, rope.freq_base, rope.scaling.type
  none; a byte-level BPE vocabulary. llama.cpp's eurobert loads no biases: a model with them is refused.
- NomicBERT (`nomic-bert`, NomicBertModel) and Jina-Embeddings-v3's encoder (`jina-bert-v3`, the converter's
  XLMRobertaModel where the config names lora_adaptations): BertModel's metadata (LayerNorm's epsilon, the
  token-type count) and rope.freq_base; the original code's tensor names with `nomic_bert.` / `roberta.` stripped
  (attn.Wqkv or mixer.Wqkv fused, fc11 the up projection and fc12 the gate, emb_ln, norm1, norm2). NomicBERT has no
  biases, Jina's blocks have them. The task LoRA adapters, which the converter writes as files of their own, are
  not written (llmarch has none: interop/jina_embeddings_v3.py).
llmarch writes the encoder with its pooling (a masked-LM head left out with a warning, a classifier refused) and
reads such a file as head `embed`."""
from __future__ import annotations

from ...errors import LlmarchError, warn
from .arch import Arch, Meta, field
from .bert import POOLING


def _embedding_in(meta: Meta) -> dict:
    pooling = POOLING[meta.get("pooling_type", 0)]
    if pooling not in ("none", "mean", "cls", "last"):
        raise LlmarchError(f"{meta.path}: a {meta.arch} file with pooling_type {pooling} is not supported")
    return dict(head="embed", pooling=pooling, head_transform=False, head_bias=False)


def _embedding_out(arch: str):
    """The writer's model_out for `arch`: the encoder and its pooling, a masked-LM head left out with a warning."""
    def out(w, cfg):
        import gguf

        if cfg.head in ("classify", "tokens"):
            raise LlmarchError(f"GGUF {arch} (llama.cpp) is written as an embedding model; this model has a "
                               f"{cfg.head} head")
        if cfg.head == "lm":
            warn(f"GGUF {arch} keeps no masked-LM head: the file holds the encoder, an embedding model")
        pooling = cfg.pooling if cfg.head == "embed" else "none"
        if pooling != "none":
            w.add_pooling_type(gguf.PoolingType(POOLING.index(pooling)))
        return cfg.replace(head="embed", pooling=pooling, head_transform=False, head_bias=False,
                           tie_embeddings=True)
    return out


def _eurobert(hf: dict, meta: Meta) -> dict:
    if meta.get("attention.causal", False):
        raise LlmarchError(f"{meta.path}: a eurobert file with attention.causal true is not EuroBERT (bidirectional)")
    return {**hf, "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False}


def _eurobert_out(w, hf: dict) -> dict:
    """EuroBertModel.set_gguf_parameters: bidirectional, no RoPE scaling (the rest is TextModel's)."""
    import gguf

    if hf["attention_bias"] or hf["mlp_bias"] or hf["rope_parameters"].get("rope_type", "default") != "default":
        raise LlmarchError("GGUF eurobert (llama.cpp) has no biases and no RoPE scaling; this model has them")
    w.add_causal_attention(False)
    w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    return {}


_PAD = {"nomic_bert": 0, "jina_embeddings_v3": 1}  # the config classes' defaults


def _bert_like(model_type: str):
    """NomicBERT's or Jina-v3's config.json from the metadata: LayerNorm's epsilon, bidirectional, token types."""
    def fields(hf: dict, meta: Meta) -> dict:
        if meta.get("attention.causal", False):
            raise LlmarchError(f"{meta.path}: a {meta.arch} file with attention.causal true is not bidirectional")
        return {**hf, "layer_norm_eps": meta.get("attention.layer_norm_epsilon"), "tie_word_embeddings": True,
                "pad_token_id": field(meta.reader, "tokenizer.ggml.padding_token_id", _PAD[model_type]),
                "type_vocab_size": meta.rows("token_types.weight") or 0, "rope_parameters": {
                    "rope_type": "default", "rope_theta": hf["rope_theta"]}}
    return fields


def _bert_like_out(w, hf: dict) -> dict:
    """BertModel.set_gguf_parameters: LayerNorm's epsilon, bidirectional attention, token types; no RoPE scaling."""
    import gguf

    if hf["rope_parameters"].get("rope_type", "default") != "default":
        raise LlmarchError("GGUF nomic-bert and jina-bert-v3 (llama.cpp) have no RoPE scaling; this model has it")
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_token_type_count(hf["type_vocab_size"])
    w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    w.add_pad_token_id(hf["pad_token_id"])  # write_tokenizer's, where it has one, replaces it
    return {}


def _common(hf: dict) -> dict:
    return {**hf, "num_key_value_heads": hf["num_attention_heads"]}


ARCHS = {
    "eurobert": Arch("eurobert", fields=_eurobert, write=_eurobert_out, stripped=("model.",), dropped=r"^lm_head\.",
                     model_in=_embedding_in, model_out=_embedding_out("eurobert")),
    "nomic-bert": Arch("nomic_bert", fields=_bert_like("nomic_bert"), common=_common, write=_bert_like_out,
                       layer_norm=True, stripped=("nomic_bert.",), dropped=r"^cls\.", model_in=_embedding_in,
                       model_out=_embedding_out("nomic-bert")),
    "jina-bert-v3": Arch("jina_embeddings_v3", fields=_bert_like("jina_embeddings_v3"), common=_common,
                         write=_bert_like_out, layer_norm=True, stripped=("roberta.",), dropped=r"^lm_head\.",
                         model_in=_embedding_in, model_out=_embedding_out("jina-bert-v3")),
}
