"""GGUF files out (`llmarch convert --to-gguf`) for llmarch's LLaMA-family models (hf_model_type llama or
qwen2): the Hugging Face tensors of the family table, named by the `gguf` package's name map, q/k rows permuted
for llama as llama.cpp's converter does (gguf.py reads them back), in F32, F16 or Q8_0 (quantized by
gguf.quants.quantize; norms and 1-D tensors stay F32, as llama.cpp keeps them), with the metadata llama.cpp
reads and a byte-level BPE tokenizer's vocabulary, merges, token types, special ids and chat template."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import state_for_saving
from ..errors import LlmarchError
from .gguf import ARCHS
from .gguf_tokenizer import CONTROL

TYPES = ("f32", "f16", "q8_0")
NORMAL = 1


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf.py's LlamaModel.permute: per head, the two rotated halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _check(cfg) -> None:
    if cfg.hf_model_type not in ARCHS:
        raise LlmarchError(f"GGUF export supports hf_model_type {', '.join(ARCHS)}; this model has "
                           f"{cfg.hf_model_type!r}")
    if cfg.rope_scaling not in ("none", "linear") or cfg.sliding_window is not None:
        raise LlmarchError("GGUF export supports RoPE scaling none or linear and no sliding window")


def _metadata(w, cfg) -> None:
    import gguf

    w.add_name(cfg.name)
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.context_length)
    w.add_embedding_length(cfg.d_model)
    w.add_feed_forward_length(cfg.ffn_hidden)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if cfg.rope_scaling == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg.rope_factor)


def _tokenizer(w, tok, vocab_size: int) -> None:
    """A byte-level BPE tokenizer (`tokenizers` BPE model, ByteLevel pieces) into tokenizer.ggml.*; the
    vocabulary is padded to the model's with unused entries, as llama.cpp expects one entry per row."""
    spec = json.loads(tok.tk.to_str())
    if spec["model"]["type"] != "BPE":
        raise LlmarchError(f"GGUF export writes byte-level BPE tokenizers; this one is {spec['model']['type']}")
    vocab = tok.tk.get_vocab(with_added_tokens=True)
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    for text, i in vocab.items():
        tokens[i] = text
    specials = {a["content"] for a in spec.get("added_tokens", []) if a.get("special")}
    types = [CONTROL if t in specials else NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    pre = spec.get("pre_tokenizer") or {}
    kinds = [p["type"] for p in pre.get("pretokenizers", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm" if kinds == ["Digits", "ByteLevel"] else "default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    ids = tok.hf_token_ids()
    eos = ids.get("eos_token_id", tok.eos_id)
    w.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    for key, add in (("bos_token_id", w.add_bos_token_id), ("pad_token_id", w.add_pad_token_id)):
        if isinstance(ids.get(key), int):
            add(ids[key])
    config = json.loads(tok.side_files.get("tokenizer_config.json", b"{}"))
    if config.get("chat_template"):
        w.add_chat_template(config["chat_template"])


def to_gguf(model, path: str | Path, dtype: str = "f16", tokenizer=None) -> None:
    """Write `model` as a GGUF file of tensor type `dtype` (f32, f16, q8_0), with `tokenizer` (byte-level BPE)
    if given."""
    import gguf

    from .hf import FAMILIES
    from .mapping import export_state

    if dtype not in TYPES:
        raise LlmarchError(f"unknown GGUF type {dtype!r}; choose one of: {', '.join(TYPES)}")
    cfg = model.config
    _check(cfg)
    arch = cfg.hf_model_type
    tensors = export_state(state_for_saving(model), FAMILIES[arch].rules_for(cfg), cfg)
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], cfg.n_layers)
    kind = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
            "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]
    w = gguf.GGUFWriter(str(path), arch)
    _metadata(w, cfg)
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
    if tokenizer is not None:
        _tokenizer(w, tokenizer, cfg.vocab_size)
    for name, t in tensors.items():
        if ARCHS[arch].permuted_qk and ".q_proj." in name:
            t = _permute(t, cfg.n_heads)
        if ARCHS[arch].permuted_qk and ".k_proj." in name:
            t = _permute(t, cfg.n_kv_heads)
        array = t.detach().float().cpu().numpy()
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if array.ndim == 1 or kind == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gguf_name, array)
        elif kind == gguf.GGMLQuantizationType.F16 or array.shape[-1] % 32:  # Q8_0 needs rows of 32k
            w.add_tensor(gguf_name, array.astype(np.float16))
        else:
            w.add_tensor(gguf_name, gguf.quants.quantize(array, kind), raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
