"""T5 (Raffel et al. 2020) as llama.cpp stores it: GGUF architecture "t5", an encoder (`enc.blk.N.*`,
`enc.output_norm`) and a decoder (`dec.blk.N.*` with `cross_attn_*`, `dec.output_norm`) over one embedding
(`token_embd`, the converter's first of shared / encoder.embed_tokens / decoder.embed_tokens), each stack's
relative position bias table in its block 0 (`attn_rel_b`, (buckets, heads)).

convert_hf_to_gguf.py's T5Model writes context_length (n_positions, 512 without one), embedding_length,
feed_forward_length, block_count (the encoder's layers), decoder_block_count, attention.head_count,
attention.key_length / value_length (d_kv), attention.layer_norm_epsilon and layer_norm_rms_epsilon (both the
config's layer_norm_epsilon), attention.relative_buckets_count and decoder_start_token_id. It stores no FFN
kind: llama.cpp's t5 graphs (t5-enc.cpp, t5-dec.cpp) run a layer with an `ffn_gate` as a gated tanh-GELU (v1.1,
flan-t5: wi_0 the gate, wi_1 the up projection) and one without as a ReLU MLP (v1.0: wi); nor the buckets' max
distance, which llama.cpp fixes at 128 (llama_relative_position_bucket), the released models' value.

A tied head has no `output` tensor, and llama.cpp multiplies by the embedding unscaled. transformers' original
T5 (v1.0, ReLU) scales the decoder output by d_model^-0.5 before its tied head (Mesh TensorFlow's convention)
and v1.1's gated models do not (transformers 5 saves them tied, unscaled): llmarch reads a headless file as the
model it was converted from, scaled if its FFN is ReLU, so llama.cpp's logits for a tied v1.0 file are
sqrt(d_model) times these, with the same greedy tokens.

mT5 and UMT5 are written as t5 too (convert_hf_to_gguf.py registers MT5ForConditionalGeneration and
UMT5ForConditionalGeneration as T5Model). mT5 reads back as t5 (the same model: mT5 never rescales, as a gated T5
read from GGUF does not); UMT5 has its bias table in every layer (`attn_rel_b` in each block, which llama.cpp's
graphs use where present, else block 0's); a file with one in block 1 reads as umt5.

"t5encoder" (convert_hf_to_gguf.py's T5EncoderModel: sentence-T5, the text encoder of image models) is the encoder
alone, with t5's keys but the decoder's; llama.cpp encodes it (llama_encode) to the final norm's output, each
token's embedding, pooled where the file has pooling_type. It reads as T5EncoderModel (or UMT5EncoderModel, a
table per layer): llmarch's encoder-only T5, head `embed`."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta, field
from .encoders import _embedding_in, _embedding_out

MAX_DISTANCE = 128  # llama.cpp's llama_relative_position_bucket: max_distance is not in the file


def _t5(hf: dict, meta: Meta) -> dict:
    """config.json's T5 fields from the metadata; the FFN's kind from whether encoder block 0 has a gate."""
    tied, gated = hf["tie_word_embeddings"], meta.has("enc.blk.0.ffn_gate.weight")
    per_layer = meta.has("enc.blk.1.attn_rel_b.weight")  # UMT5's table in every layer
    return dict(model_type="umt5" if per_layer else "t5", _name_or_path=hf["_name_or_path"],
                vocab_size=hf["vocab_size"],
                d_model=hf["hidden_size"], d_ff=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
                num_decoder_layers=meta.get("decoder_block_count", hf["num_hidden_layers"]),
                num_heads=hf["num_attention_heads"], d_kv=hf["head_dim"], layer_norm_epsilon=hf["rms_norm_eps"],
                relative_attention_num_buckets=meta.get("attention.relative_buckets_count"),
                relative_attention_max_distance=MAX_DISTANCE,
                feed_forward_proj="gated-gelu" if gated else "relu",
                tie_word_embeddings=tied, scale_decoder_outputs=tied and not gated,
                n_positions=hf["max_position_embeddings"],
                pad_token_id=field(meta.reader, "tokenizer.ggml.padding_token_id", 0),  # llama.cpp's t5 defaults
                eos_token_id=1 if hf["eos_token_id"] is None else hf["eos_token_id"],
                decoder_start_token_id=meta.get("decoder_start_token_id", 0))


def _t5encoder(hf: dict, meta: Meta) -> dict:
    """The encoder alone: T5's fields, its architecture (U)MT5EncoderModel."""
    fields = _t5(hf, meta)
    return {**fields, "architectures": ["UMT5EncoderModel" if fields["model_type"] == "umt5" else "T5EncoderModel"]}


def _t5_common(hf: dict) -> dict:
    """T5's config.json as the common names gguf_writer._metadata writes from."""
    return {**hf, "num_hidden_layers": hf["num_layers"], "max_position_embeddings": hf["n_positions"],
            "hidden_size": hf["d_model"], "intermediate_size": hf["d_ff"], "num_attention_heads": hf["num_heads"],
            "num_key_value_heads": hf["num_heads"], "head_dim": hf["d_kv"], "rms_norm_eps": hf["layer_norm_epsilon"]}


def _t5encoder_out(w, hf: dict) -> dict:
    """T5EncoderModel.set_gguf_parameters' own keys: T5Model's without the decoder's. llama.cpp's graph knows two
    FFNs only (see the module docstring)."""
    if hf["feed_forward_proj"] not in ("relu", "gated-gelu"):
        raise LlmarchError(f"GGUF t5 and t5encoder (llama.cpp) run a ReLU MLP or a gated tanh-GELU; this model's "
                           f"FFN is {hf['feed_forward_proj']!r}")
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    w.add_relative_attn_buckets_count(hf["relative_attention_num_buckets"])
    return {}


def _t5_out(w, hf: dict) -> dict:
    """T5Model.set_gguf_parameters' own keys. llama-cpp-python 0.3.36 fails to load a file with more decoder than
    encoder layers (a range check)."""
    _t5encoder_out(w, hf)
    if hf["num_decoder_layers"] > hf["num_layers"]:  # llama.cpp sizes its layers by block_count, then reads past them
        raise LlmarchError(f"GGUF t5: llama.cpp cannot load a decoder deeper than its encoder "
                           f"({hf['num_decoder_layers']} > {hf['num_layers']} layers)")
    w.add_decoder_block_count(hf["num_decoder_layers"])
    w.add_decoder_start_token_id(hf["decoder_start_token_id"])
    return {}


def _absent(hf: dict) -> str:
    """T5's ReLU `wi` and gated `wi_0`, `wi_1`: one variant's names are absent."""
    return r"\.wi\." if hf["feed_forward_proj"].startswith("gated") else r"\.wi_[01]\."


ARCHS = {
    # the decoder's cross-attention bias table: some checkpoints carry one, which transformers and llama.cpp
    # load and never use
    "t5": Arch("t5", fields=_t5, common=_t5_common, write=_t5_out, rope=False, also=("umt5", "mt5"),
               encoder_arch="t5encoder", consumed=frozenset({"dec.blk.0.cross_attn_rel_b.weight"}), absent=_absent),
    "t5encoder": Arch("t5", fields=_t5encoder, common=_t5_common, write=_t5encoder_out, rope=False,
                      absent=_absent, model_in=_embedding_in, model_out=_embedding_out("t5encoder")),
}
