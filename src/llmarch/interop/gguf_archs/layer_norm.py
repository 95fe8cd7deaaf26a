"""The LayerNorm families: GPT-2 (learned positions, Conv1D weights), StarCoder (GPT-2's blocks, multi-query),
GPT-NeoX, BLOOM (ALiBi) and Falcon."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _gpt2(hf: dict, meta: Meta) -> dict:
    """GPT-2 in its own config.json names: LayerNorm (attention.layer_norm_epsilon), learned positions, a
    tanh-GELU FFN of width feed_forward_length. The converter writes the tied head as a copy of the embedding
    (output.weight): a file whose head is the embedding, byte for byte, reads back tied."""
    return dict(model_type="gpt2", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"],
                n_embd=hf["hidden_size"], n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
                n_inner=hf["intermediate_size"], n_positions=hf["max_position_embeddings"],
                layer_norm_epsilon=meta.get("attention.layer_norm_epsilon"), activation_function="gelu_new",
                tie_word_embeddings=hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight"),
                eos_token_id=hf["eos_token_id"])


def _gpt2_common(hf: dict) -> dict:
    """GPT-2's config.json as the common names gguf_writer._metadata writes from."""
    return {**hf, "num_hidden_layers": hf["n_layer"], "max_position_embeddings": hf["n_positions"],
            "hidden_size": hf["n_embd"], "intermediate_size": hf["n_inner"], "num_attention_heads": hf["n_head"],
            "num_key_value_heads": hf["n_head"]}


def _layer_norm_out(w, hf: dict) -> dict:
    """GPT-2's, BLOOM's and Falcon's converters: LayerNorm's epsilon."""
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    return {}


def _gptneox(hf: dict, meta: Meta) -> dict:
    """GPT-NeoX: LayerNorm (attention.layer_norm_epsilon), the parallel residual unless use_parallel_residual is
    false, RoPE on rope.dimension_count dims of each head, biases where the file has them. The FFN is exact GELU,
    as the checkpoints were trained (llama.cpp's gptneox graph runs ggml_gelu, the tanh approximation)."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    return {**hf, "hidden_act": "gelu", "layer_norm_eps": meta.get("attention.layer_norm_epsilon"),
            "use_parallel_residual": meta.get("use_parallel_residual", True), "rope_parameters": rope,
            "attention_bias": meta.has("blk.0.attn_qkv.bias")}


def _gptneox_common(hf: dict) -> dict:
    return {**hf, "num_key_value_heads": hf["num_attention_heads"]}


def _gptneox_out(w, hf: dict) -> dict:
    """GPTNeoXModel.set_gguf_parameters: LayerNorm's epsilon and the residual's kind."""
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_parallel_residual(hf["use_parallel_residual"])
    return {}


def _bloom(hf: dict, meta: Meta) -> dict:
    """BLOOM: LayerNorm (attention.layer_norm_epsilon), ALiBi (llama.cpp's bias bound 8, the paper's slopes), the
    head tied to the embedding (the converter writes it as a copy)."""
    return {**hf, "layer_norm_epsilon": meta.get("attention.layer_norm_epsilon"),
            "seq_length": hf["max_position_embeddings"],
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _bloom_common(hf: dict) -> dict:
    return {**hf, "num_hidden_layers": hf["n_layer"], "num_attention_heads": hf["n_head"],
            "num_key_value_heads": hf["n_head"], "intermediate_size": 4 * hf["hidden_size"],
            "max_position_embeddings": hf["seq_length"]}


def _falcon(hf: dict, meta: Meta) -> dict:
    """Falcon, always a parallel block in llama.cpp: two norms (attn_norm, attn_norm_2: Falcon-40B's new
    architecture) or one shared (Falcon-7B, multi-query; Falcon2-11B's new architecture with one norm); RoPE on
    every dim; biases where the file has them; exact GELU, as trained (llama.cpp runs the tanh approximation)."""
    kv, two = hf["num_key_value_heads"], meta.has("blk.0.attn_norm_2.weight")
    return {**hf, "num_kv_heads": kv, "new_decoder_architecture": two or kv not in (1, hf["num_attention_heads"]),
            "multi_query": kv == 1, "parallel_attn": True, "num_ln_in_parallel_attn": 2 if two else 1,
            "bias": meta.has("blk.0.attn_qkv.bias"), "activation": "gelu", "ffn_hidden_size": hf["intermediate_size"],
            "layer_norm_epsilon": meta.get("attention.layer_norm_epsilon"),
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _falcon_out(w, hf: dict) -> dict:
    """FalconModel.set_gguf_parameters' LayerNorm epsilon. llama.cpp's falcon has no biases (llama-cpp-python
    0.3.36 refuses a file with them), so a model with biases is refused here."""
    if hf["bias"]:
        raise LlmarchError("GGUF falcon has no biases (llama.cpp loads none); this Falcon has bias=True")
    return _layer_norm_out(w, hf)


def _falcon_common(hf: dict) -> dict:
    return {**hf, "num_key_value_heads": hf["num_kv_heads"], "intermediate_size": hf["ffn_hidden_size"]}


def _starcoder(hf: dict, meta: Meta) -> dict:
    """StarCoder (gpt_bigcode): GPT-2's fields with multi-query attention where head_count_kv is 1."""
    return {**_gpt2(hf, meta), "model_type": "gpt_bigcode", "activation_function": "gelu_pytorch_tanh",
            "multi_query": hf["num_key_value_heads"] == 1}


def _starcoder_common(hf: dict) -> dict:
    return {**_gpt2_common(hf), "num_key_value_heads": 1 if hf["multi_query"] else hf["n_head"]}


def _starcoder_out(w, hf: dict) -> dict:
    """StarCoderModel's converter: LayerNorm's epsilon; c_attn as it is, which llama.cpp splits as all q, all k,
    all v: so only multi-query attention (a one-head k and v), whose rows are so."""
    if not hf["multi_query"] or not hf.get("scale_attn_weights", True):
        raise LlmarchError("GGUF starcoder holds multi-query attention with scaled scores (multi_query, "
                           "scale_attn_weights): llama.cpp reads c_attn as all q, all k, all v")
    return _layer_norm_out(w, hf)


# GPT-2's converter stores its Conv1D weights, (in, out), transposed to (out, in)
_CONV1D_TRANSPOSED = ((r"\.(c_attn|c_proj|c_fc)\.weight$", lambda t, hf: t.t(), lambda t, hf: t.t().contiguous()),)


ARCHS = {
    "gpt2": Arch("gpt2", fields=_gpt2, write=_layer_norm_out, common=_gpt2_common, rope=False, layer_norm=True,
                 head_copy=True, tensors=_CONV1D_TRANSPOSED),
    "starcoder": Arch("gpt_bigcode", fields=_starcoder, write=_starcoder_out, common=_starcoder_common, rope=False,
                      layer_norm=True, head_copy=True),
    "gptneox": Arch("gpt_neox", fields=_gptneox, write=_gptneox_out, common=_gptneox_common, layer_norm=True,
                    qkv_per_head=r"\.query_key_value\.(weight|bias)$"),
    "bloom": Arch("bloom", fields=_bloom, write=_layer_norm_out, common=_bloom_common, rope=False, layer_norm=True,
                  head_copy=True, qkv_per_head=r"\.query_key_value\.(weight|bias)$"),
    "falcon": Arch("falcon", fields=_falcon, write=_falcon_out, common=_falcon_common, layer_norm=True,
                   head_copy=True, qkv_per_head=r"\.query_key_value\.(weight|bias)$"),
}
