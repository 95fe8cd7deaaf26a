"""PLM (GGUF `plm`, llmarch's plm), as convert_hf_to_gguf.py's PLMModel writes it: the tensors as Hugging Face holds
them (attn_q, attn_kv_a_mqa, attn_kv_a_norm, attn_kv_b whole, attn_output; RoPE dims in DeepSeek's interleaved
pairs, which llama.cpp's plm graph rotates as adjacent pairs, so nothing is permuted), ffn_up and ffn_down of the
squared-ReLU MLP; attention.key_length the query/key head (nope + rope), value_length, rope.dimension_count the
rotated part, attention.kv_lora_rank. llama.cpp's graph has no compressed query, no biases and no RoPE scaling, and
always takes the embedding as the head (a file's `output` is not read): other models are refused, in and out."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _plm(hf: dict, meta: Meta) -> dict:
    if meta.has("output.weight") or hf.get("rope_scaling") or hf.get("attention_bias") \
            or meta.get("attention.q_lora_rank", 0):
        raise LlmarchError(f"{meta.path}: a plm file with an output matrix, RoPE scaling, attention biases or a "
                           "compressed query is not supported (llama.cpp's plm has none)")
    rope, key = meta.get("rope.dimension_count"), hf.pop("head_dim")
    return {**hf, "hidden_act": "relu2", "rope_interleave": True, "q_lora_rank": None,
            "kv_lora_rank": meta.get("attention.kv_lora_rank"), "qk_rope_head_dim": rope,
            "qk_nope_head_dim": key - rope, "v_head_dim": meta.get("attention.value_length")}


def _plm_out(w, hf: dict) -> dict:
    rope = hf["rope_parameters"]
    if not hf["tie_word_embeddings"] or hf.get("q_lora_rank") or hf.get("attention_bias") \
            or rope.get("rope_type", "default") != "default":
        raise LlmarchError("GGUF plm: llama.cpp's graph takes the embedding as the head and has no compressed "
                           "query, attention biases or RoPE scaling; this model has one of them")
    nope, r = hf["qk_nope_head_dim"], hf["qk_rope_head_dim"]
    w.add_kv_lora_rank(hf["kv_lora_rank"])
    w.add_key_length(nope + r)
    w.add_value_length(hf["v_head_dim"])
    w.add_rope_dimension_count(r)
    return {}


ARCHS = {"plm": Arch("plm", fields=_plm, write=_plm_out, head_lengths=False)}
