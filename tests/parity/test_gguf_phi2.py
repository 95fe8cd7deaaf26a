"""Phi as llama.cpp's GGUF `phi2`, as convert_hf_to_gguf.py's Phi2Model writes it (attention.layer_norm_epsilon,
rope.dimension_count for the partial rotation, attn_q/k/v with biases, the head `output` with its bias): a tiny
random Phi written by `to_gguf` with llmarch's byte tokenizer reads back by from_gguf to equal logits (F32, max
|dlogit| <= 1e-4), and llama.cpp (llama-cpp-python, where installed) decodes the file greedily to llmarch's tokens
with llmarch's logits; a file holding q, k, v fused (attn_qkv, as older Phi-2 files do) reads to the same model."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=272, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
CASES = {
    # Phi-2's shape: 8 of each head's 20 dims rotated, multi-head attention, an untied head with its bias
    "phi-2-style": dict(SMALL, hidden_size=80, partial_rotary_factor=0.4),
    # 2 kv heads, a RoPE base of 1e5 (rope.freq_base), the tied head written as a copy (output.weight)
    "phi-gqa-tied": dict(SMALL, hidden_size=64, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e5),
}


def tiny(case, tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.PhiForCausalLM(transformers.PhiConfig(**{**CASES[case], **changes}))
    return perturbed_from_hf(hf, tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    assert meta["general.architecture"] == "phi2" and meta["phi2.rope.dimension_count"] == 8
    assert meta["phi2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_output.bias", "blk.0.ffn_up.bias", "output.bias"} <= names
    # llama.cpp: measured 3.2e-5 apart (Phi-2-shaped), 2.2e-5 (GQA, tied)
    back = gguf_reads_back(path, model)
    assert back.config.hf_model_type == "phi" and back.config.tie_embeddings == (case == "phi-gqa-tied")


def fuse_qkv(src, dst) -> None:
    """`src` rewritten with each layer's attn_q, attn_k, attn_v (weight and bias) as one attn_qkv, rows all q | all
    k | all v: the layout of Phi-2 files converted from Microsoft's original checkpoints (mixer.Wqkv); without
    attention.key_length and value_length, which Phi2Model does not write (head_dim is then d / heads)."""
    from llmarch.interop.gguf_writer import _writer_class

    reader = gguf.GGUFReader(str(src))
    w = _writer_class()(str(dst), "phi2")  # the byte vocabulary's empty merges list: a writer that packs it
    for key, f in reader.fields.items():
        if not key.startswith("GGUF.") and key not in ("general.architecture", "phi2.attention.key_length",
                                                          "phi2.attention.value_length"):
            # an array's element type; the reader lists none for an empty one (the byte vocabulary's merges, strings)
            sub = (f.types[1:] or [gguf.GGUFValueType.STRING])[0] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(key, f.contents(), f.types[0], sub_type=sub)
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    for name, array in tensors.items():
        if ".attn_q." in name:
            parts = [tensors[name.replace(".attn_q.", f".attn_{p}.")] for p in "qkv"]
            w.add_tensor(name.replace(".attn_q.", ".attn_qkv."), np.concatenate(parts, axis=0))
        elif not (".attn_k." in name or ".attn_v." in name):
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_fused_attn_qkv_file_reads_as_the_split_one(tmp_path):
    model = tiny("phi-gqa-tied", tmp_path)
    to_gguf(model, tmp_path / "split.gguf", "f32", ByteTokenizer())
    fuse_qkv(tmp_path / "split.gguf", tmp_path / "fused.gguf")
    assert "blk.1.attn_qkv.bias" in {t.name for t in gguf.GGUFReader(str(tmp_path / "fused.gguf")).tensors}
    fused = llmarch.from_gguf(tmp_path / "fused.gguf")
    state = model.state_dict()
    assert all(torch.equal(t, state[name]) for name, t in fused.state_dict().items())
    gguf_reads_back(tmp_path / "fused.gguf", model)


def test_to_gguf_refuses_qk_layernorm(tmp_path):
    model = tiny("phi-2-style", tmp_path, qk_layernorm=True)
    with pytest.raises(LlmarchError, match="GGUF phi2 has no QK-norm"):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
