"""MPT, as convert_hf_to_gguf.py's MPTModel writes it: attn_qkv (Wqkv as it is: q | k | v, which llama.cpp's mpt
graph splits so), attn_output, ffn_up/ffn_down, bias-free LayerNorms; ALiBi's bound as attention.max_alibi_bias,
clip_qkv as attention.clamp_kqv."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _mpt(hf: dict, meta: Meta) -> dict:
    """MPT's config.json: ALiBi (bound 8, the only one llmarch's MPT reads), q/k/v clamped by
    attention.clamp_kqv where the file has it, scores scaled by 1/sqrt(d_h) (llama.cpp's), the exact-GELU MLP of
    feed_forward_length (the checkpoints' GELU; llama.cpp's mpt graph runs the tanh approximation), the head tied
    unless the file has output.weight."""
    d, bound = hf["hidden_size"], meta.get("attention.max_alibi_bias")
    if bound != 8:
        raise LlmarchError(f"{meta.path}: GGUF mpt with attention.max_alibi_bias {bound} is not supported (8)")
    attn = dict(alibi=True, alibi_bias_max=8, clip_qkv=meta.get("attention.clamp_kqv", None), softmax_scale=None)
    return dict(model_type="mpt", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"], d_model=d,
                n_heads=hf["num_attention_heads"], n_layers=hf["num_hidden_layers"],
                expansion_ratio=hf["intermediate_size"] // d, max_seq_len=hf["max_position_embeddings"],
                layer_norm_epsilon=meta.get("attention.layer_norm_epsilon"), attn_config=attn, no_bias=True,
                tie_word_embeddings=hf["tie_word_embeddings"], eos_token_id=hf["eos_token_id"])


def _mpt_common(hf: dict) -> dict:
    """MPT's config.json as the common names gguf_writer._metadata writes from."""
    return {**hf, "num_hidden_layers": hf["n_layers"], "max_position_embeddings": hf["max_seq_len"],
            "hidden_size": hf["d_model"], "intermediate_size": hf["expansion_ratio"] * hf["d_model"],
            "num_attention_heads": hf["n_heads"], "num_key_value_heads": hf["n_heads"]}


def _mpt_out(w, hf: dict) -> dict:
    """MPTModel.set_gguf_parameters: LayerNorm's epsilon, clip_qkv where set, ALiBi's bound. llama.cpp's mpt scales
    scores by 1/sqrt(d_h) always, so another softmax_scale is refused."""
    attn = hf["attn_config"]
    if attn.get("softmax_scale") is not None:
        raise LlmarchError(f"GGUF mpt scales scores by 1/sqrt(head_dim) (llama.cpp's mpt graph); this MPT has "
                           f"softmax_scale={attn['softmax_scale']}")
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    if attn.get("clip_qkv"):
        w.add_clamp_kqv(attn["clip_qkv"])
    w.add_max_alibi_bias(float(attn.get("alibi_bias_max", 8)))
    return {}


ARCHS = {
    "mpt": Arch("mpt", fields=_mpt, write=_mpt_out, common=_mpt_common, rope=False, layer_norm=True),
}
