"""BERT as llama.cpp runs it: an embedding model (convert_hf_to_gguf.py's BertModel). The converter strips
`bert.` from the tensor names and drops the masked-LM head (cls.predictions), the next-sentence head and the
pooler; it writes attention.causal false, LayerNorm's epsilon, the token-type count (tokenizer.ggml.
token_type_count) and, where the checkpoint has a sentence-transformers Pooling module, pooling_type (none:
each token's final hidden state; mean, cls, last; rank: a reranker's classifier). llama.cpp adds token type
0's row to every token and uses learned absolute positions from 0, as BERT does with token_type_ids and
position_ids left at their defaults. So a bert file reads as an llmarch BERT with head `embed` and the file's
pooling; a model with a masked-LM head is written without it (the converter's file), a classifier is refused.

RoBERTa and XLM-RoBERTa are written as bert too (RobertaModel: positions cut to start at 0, a byte-level BPE or
SentencePiece vocabulary), as are DistilBERT and CamemBERT: llmarch reads the WordPiece (`bert` vocabulary)
files only, and writes its BERT family only (a RoBERTa model is refused by the writer's family check)."""
from __future__ import annotations

from ...errors import LlmarchError, warn
from .arch import Arch, Meta, field

POOLING = ("none", "mean", "cls", "last", "rank")  # llama.cpp's pooling_type values, in order (gguf.PoolingType)


def _bert(hf: dict, meta: Meta) -> dict:
    """BERT's config.json from the metadata: LayerNorm's epsilon, exact GELU (as BERT was trained; llama.cpp's
    bert graph runs ggml's GELU), as many token types as token_types has rows."""
    if meta.get("attention.causal", False):
        raise LlmarchError(f"{meta.path}: a bert file with attention.causal true is not BERT (bidirectional)")
    vocab = field(meta.reader, "tokenizer.ggml.model", "bert")
    if vocab != "bert":
        raise LlmarchError(f"{meta.path}: GGUF bert with a {vocab!r} vocabulary (as RoBERTa and XLM-RoBERTa are "
                           "converted) is not supported; llmarch reads and writes BERT with its WordPiece ('bert')")
    return dict(model_type="bert", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"],
                hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
                num_attention_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
                hidden_act="gelu", layer_norm_eps=meta.get("attention.layer_norm_epsilon"),
                type_vocab_size=meta.rows("token_types.weight") or 0,
                max_position_embeddings=hf["max_position_embeddings"], tie_word_embeddings=True)


def _bert_common(hf: dict) -> dict:
    return {**hf, "num_key_value_heads": hf["num_attention_heads"]}


def _bert_out(w, hf: dict) -> dict:
    """BertModel.set_gguf_parameters and set_vocab: LayerNorm's epsilon, bidirectional attention, token types."""
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_token_type_count(hf["type_vocab_size"])
    return {}


def _embedding_in(meta: Meta) -> dict:
    """No LM head: the final hidden states, pooled as pooling_type says (none where absent, as llama.cpp)."""
    pooling = POOLING[meta.get("pooling_type", 0)]
    if pooling == "rank":
        raise LlmarchError(f"{meta.path}: a bert reranker (pooling_type rank, a classifier on a pooler llama.cpp's "
                           "converter drops) is not supported")
    return dict(head="embed", pooling=pooling, head_transform=False, head_bias=False)


def _embedding_out(w, cfg):
    """The converter's file: the encoder and its pooling; a masked-LM head is left out (with a warning), a
    classifier head refused (the converter drops its pooler, and llama.cpp runs what is left as a reranker)."""
    import gguf

    if cfg.head in ("classify", "tokens"):
        raise LlmarchError(f"GGUF bert (llama.cpp) is an embedding model; this BERT has a {cfg.head} head, whose "
                           "pooler or classifier it cannot hold")
    if cfg.head == "lm":
        warn("GGUF bert keeps no masked-LM head (llama.cpp's converter drops it): the file holds the encoder, an "
             "embedding model")
    if cfg.pooling != "none":
        w.add_pooling_type(gguf.PoolingType(POOLING.index(cfg.pooling)))
    return cfg.replace(head="embed", head_transform=False, head_bias=False, tie_embeddings=True)


ARCHS = {
    "bert": Arch("bert", fields=_bert, common=_bert_common, write=_bert_out, rope=False, layer_norm=True,
                 stripped=("bert.",), dropped=r"^(cls\.|bert\.pooler\.)", model_in=_embedding_in,
                 model_out=_embedding_out),
}
