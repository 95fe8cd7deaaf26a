"""Embedding models llama.cpp runs beside BERT (bert.py) and the encoders of encoders.py, as convert_hf_to_gguf.py
writes them (the body without its masked-LM head, attention.causal false, pooling_type where a sentence-transformers
Pooling module says), each onto a table of llmarch's (transformers has none of them: interop/<family>.py gives the
original code's layout, which the converter reads):
- JinaBERT-v2 (`jina-bert-v2`, JinaBertV2Model; interop/jina_bert_v2.py): BertModel's keys (LayerNorm's epsilon,
  the token-type count) and no position table: llama.cpp adds ALiBi with max bias 8 (the slopes of Press et al.
  2022) to the scores, -m_h |i - j| both ways (llama-graph.cpp's mask for a model without a cache), which is
  llmarch's alibi_symmetric. `mlp.gated_layers` is ffn_up whole (gate | up rows; llama.cpp's GEGLU), `mlp.wo`
  ffn_down, `mlp.layernorm` layer_output_norm. The file names no activation: llama.cpp runs GELU, and reads a
  WordPiece (`bert`) or a byte-level BPE vocabulary (jina-embeddings-v2-base-de/-es/-zh). Refused: the variants
  with LayerNorms on q and k (attn_q_norm, attn_k_norm), a second norm after attention (attn_norm_2:
  jina-embeddings-v2-base-code's layer_norm_1, which llama.cpp adds the block's input to twice) and older files
  with the gate apart (ffn_gate), whose layouts llmarch's table does not hold.
- NomicBERT-MoE (`nomic-bert-moe`, NomicBertModel with moe_every_n_layers; interop/nomic_bert_moe.py): nomic-bert's
  keys (encoders.py) and `moe_every_n_layers`, `expert_count`, `expert_used_count`; layer i's MLP is a mixture where
  i % n == 1 (llama.cpp's graph), `mlp.router.layer` as ffn_gate_inp, the experts' stacked rows `mlp.experts.mlp.w1`
  (E * I, d) as ffn_up_exps (E, I, d) and `w2` as ffn_down_exps (E, d, I), each expert's rows transposed (the
  converter's view and transpose), biases on q | k | v (`attn_qkv.bias`), the output and the dense GELU MLP
  (`ffn_up`, `ffn_down`), none on the experts; softmax top-k weights not renormalised. The vocabulary is XLM-R's
  SentencePiece unigram (`t5`).
- NeoBERT (`neo-bert`, NeoBert; interop/neobert.py): pre-RMSNorm blocks (`attention.layer_norm_rms_epsilon`), one
  fused `attn_qkv` (all q | all k | all v) without biases, RoPE on adjacent pairs (llama.cpp's normal rotation,
  rope.freq_base, the converter's 10000), the SwiGLU's fused `ffn.w12` as ffn_up (2 n_ff rows, gate first) and
  `ffn.w3` as ffn_down, the final norm `layer_norm` as enc.output_norm; no token types, no embedding norm;
  `feed_forward_length` the SwiGLU's width, 2/3 of NeoBERT's intermediate_size (NeoBert.set_gguf_parameters);
  names without `model.`, the MLM head `decoder` dropped. The converter writes pooling_type cls; a WordPiece
  vocabulary. A classifier's `cls`/`cls_out` (NeoBERTForSequenceClassification) has no place in llmarch's table."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .bert import _bert_out
from .encoders import _bert_like, _bert_like_out, _common, _embedding_in, _embedding_out

_JINA_REFUSED = {"attn_q_norm": "LayerNorms on q and k", "attn_norm_2": "a second LayerNorm after attention "
                 "(jina-embeddings-v2-base-code's layout)", "ffn_gate": "the GEGLU gate apart from ffn_up (an older "
                 "converter's split)"}


def _jina(hf: dict, meta: Meta) -> dict:
    """JinaBERT-v2's config.json from the metadata: LayerNorm's epsilon, bidirectional, token types, ALiBi, GEGLU."""
    if meta.get("attention.causal", False):
        raise LlmarchError(f"{meta.path}: a jina-bert-v2 file with attention.causal true is not bidirectional")
    for name, what in _JINA_REFUSED.items():
        if meta.has(f"blk.0.{name}.weight"):
            raise LlmarchError(f"{meta.path}: a jina-bert-v2 file with {what} ({name}) is not supported")
    return dict(model_type="jina_bert_v2", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"],
                hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
                num_attention_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
                layer_norm_eps=meta.get("attention.layer_norm_epsilon"),
                type_vocab_size=meta.rows("token_types.weight") or 0,
                max_position_embeddings=hf["max_position_embeddings"], tie_word_embeddings=True)


def _nomic_moe(hf: dict, meta: Meta) -> dict:
    """NomicBERT-MoE's config.json: nomic-bert's, with its experts and where they sit."""
    return {**_bert_like("nomic_bert")(hf, meta), "model_type": "nomic_bert_moe", "hidden_act": "gelu",
            "num_experts": meta.get("expert_count"), "moe_top_k": meta.get("expert_used_count"),
            "moe_every_n_layers": meta.get("moe_every_n_layers")}


def _nomic_moe_out(w, hf: dict) -> dict:
    """NomicBertModel.set_gguf_parameters with experts (TextModel's writes expert_count)."""
    w.add_expert_count(hf["num_experts"])
    w.add_moe_every_n_layers(hf["moe_every_n_layers"])
    w.add_expert_used_count(hf["moe_top_k"])
    return _bert_like_out(w, hf)


def _expert_rows(t, hf: dict):
    """(E * I, d) -> (E, I, d): the converter's view of w1 (and, transposed after, of w2)."""
    return t.reshape(hf["num_experts"], -1, t.shape[-1])


def _neo(hf: dict, meta: Meta) -> dict:
    """NeoBERT's config.json: RMSNorm's epsilon, RoPE's base, the intermediate_size whose 2/3 is the file's width."""
    if meta.get("attention.causal", False):
        raise LlmarchError(f"{meta.path}: a neo-bert file with attention.causal true is not bidirectional")
    return dict(model_type="neobert", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"],
                hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
                num_attention_heads=hf["num_attention_heads"], intermediate_size=(3 * hf["intermediate_size"] + 1) // 2,
                norm_eps=hf["rms_norm_eps"], rope_theta=hf["rope_theta"], max_length=hf["max_position_embeddings"],
                tie_word_embeddings=True)  # no head: the embedding model's convention (encoders.py)


def _neo_common(hf: dict) -> dict:
    """The names _metadata writes from: the SwiGLU's width as the converter writes it, RMSNorm's epsilon, RoPE."""
    return {**hf, "num_key_value_heads": hf["num_attention_heads"], "intermediate_size": int(2 * hf[
        "intermediate_size"] / 3), "rms_norm_eps": hf["norm_eps"], "max_position_embeddings": hf["max_length"],
            "rope_parameters": {"rope_type": "default", "rope_theta": hf["rope_theta"]}}


def _neo_out(w, hf: dict) -> dict:
    """NeoBert.set_gguf_parameters beyond the common keys: bidirectional, no RoPE scaling."""
    import gguf

    w.add_causal_attention(False)
    w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    return {}


_W1, _W2 = r"mlp\.experts\.mlp\.w1$", r"mlp\.experts\.mlp\.w2$"

ARCHS = {
    "jina-bert-v2": Arch("jina_bert_v2", fields=_jina, common=_common, write=_bert_out, rope=False,
                         layer_norm=True, stripped=("bert.",), dropped=r"^cls\.", model_in=_embedding_in,
                         model_out=_embedding_out("jina-bert-v2")),
    "nomic-bert-moe": Arch("nomic_bert_moe", fields=_nomic_moe, common=_common, write=_nomic_moe_out,
                           layer_norm=True, stripped=("nomic_bert.",), dropped=r"^cls\.", model_in=_embedding_in,
                           model_out=_embedding_out("nomic-bert-moe"),
                           renamed=(("mlp.experts.mlp.w1", "mlp.experts.mlp.w1.weight"),
                                    ("mlp.experts.mlp.w2", "mlp.experts.mlp.w2.weight")),
                           tensors=((_W1, _expert_rows, lambda t, hf: t.flatten(0, 1)),
                                    (_W2, lambda t, hf: _expert_rows(t, hf).transpose(1, 2),
                                     lambda t, hf: t.transpose(1, 2).flatten(0, 1)))),
    "neo-bert": Arch("neobert", fields=_neo, common=_neo_common, write=_neo_out, stripped=("model.",),
                     dropped=r"^decoder\.", model_in=_embedding_in, model_out=_embedding_out("neo-bert")),
}
