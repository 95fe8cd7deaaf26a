"""StarCoder2, as convert_hf_to_gguf.py's StarCoder2Model writes it (TextModel's keys and nothing of its own)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _starcoder2(hf: dict, meta: Meta) -> dict:
    """StarCoder2: LayerNorms with biases (attention.layer_norm_epsilon), q/k/v/o and the MLP with biases where
    the file has them, RoPE on rope.dimension_count dims of a head (llama.cpp's neox rotation: Hugging Face's
    halves, no permutation), tanh-GELU (llama.cpp's starcoder2 graph runs ggml_gelu, the tanh approximation, as
    the released models' gelu_pytorch_tanh). No window: the converter writes none and llama.cpp's starcoder2
    attends to every earlier key."""
    head_dim = hf["head_dim"]
    rope = {**(hf.pop("rope_scaling", None) or {"rope_type": "default"}), "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    return {**hf, "norm_epsilon": meta.get("attention.layer_norm_epsilon"), "use_bias": meta.has("blk.0.attn_q.bias"),
            "hidden_act": "gelu_pytorch_tanh", "rope_parameters": rope}


def _starcoder2_out(w, hf: dict) -> dict:
    """TextModel.set_gguf_parameters: norm_epsilon as LayerNorm's epsilon."""
    w.add_layer_norm_eps(hf["norm_epsilon"])
    return {}


def _starcoder2_model_out(w, cfg):
    """What llama-cpp-python 0.3.36's starcoder2 cannot hold is refused: a window (the converter writes none, and
    llama.cpp would attend past it), linears without biases (it requires every bias: 'blk.0.attn_output.bias not
    found'), head_dim other than d_model / n_heads (its q/k/v/o are checked as (d, d): 'wrong shape'), RoPE on
    part of a head (GGML_ASSERT(n_embd_head == n_rot) aborts the process). Dropout is not stored (it changes no
    output): the file reads back without it."""
    needs = [(f"sliding_window=None (llama.cpp's starcoder2 attends to every earlier key), not "
              f"{cfg.sliding_window}", cfg.sliding_window is None),
             ("bias=True (llama.cpp loads a starcoder2 file only with every bias)", cfg.bias and cfg.qkv_bias),
             (f"head_dim = d_model / n_heads = {cfg.d_model // cfg.n_heads}, not {cfg.head_dim}",
              cfg.head_dim * cfg.n_heads == cfg.d_model),
             (f"rope_fraction=1 (llama.cpp rotates whole heads), not {cfg.rope_fraction}", cfg.rope_fraction == 1)]
    problem = next((need for need, ok in needs if not ok), None)
    if problem:
        raise LlmarchError(f"GGUF starcoder2 needs {problem}")
    return cfg.replace(dropout=0.0)


ARCHS = {
    "starcoder2": Arch("starcoder2", fields=_starcoder2, write=_starcoder2_out, layer_norm=True,
                       model_out=_starcoder2_model_out),
}
