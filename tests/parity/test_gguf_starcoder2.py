"""GGUF `starcoder2` in and out, as convert_hf_to_gguf.py's StarCoder2Model writes it: attn_q/k/v/output, ffn_up/
ffn_down and the three LayerNorms, all with biases; LayerNorm's epsilon; no window. A tiny random StarCoder2 (from
a transformers config, 1-D parameters perturbed, through from_hf) is written by to_gguf with llmarch's byte
tokenizer, read back by from_gguf to equal logits (F32, max |dlogit| <= 1e-4), and llama.cpp (llama-cpp-python
0.3.36, where installed) decodes the file greedily to llmarch's tokens with llmarch's logits; what llama.cpp
cannot load or would compute otherwise is refused before a file is left."""
import pytest
import torch

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)


def tiny(tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.Starcoder2ForCausalLM(transformers.Starcoder2Config(**{**SMALL, **changes}))
    return perturbed_from_hf(hf, tmp_path / "hf")


# tied: no output.weight (llama.cpp reads the embedding as the head); untied with linear RoPE scaling and the
# released models' dropout of 0.1 (not stored: the file reads back without it)
@pytest.mark.parametrize("changes", [dict(), dict(tie_word_embeddings=False, residual_dropout=0.1,
                                                  attention_dropout=0.1, embedding_dropout=0.1,
                                                  rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                   "rope_theta": 1e5})],
                         ids=["tied", "untied-linear-rope"])
def test_gguf_round_trip_and_llama_cpp(changes, tmp_path):
    model = tiny(tmp_path, **changes)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "starcoder2"
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_output.bias", "blk.0.ffn_up.bias", "blk.0.ffn_down.bias",
            "blk.0.attn_norm.bias", "blk.0.ffn_norm.bias", "output_norm.bias"} <= names
    assert ("output.weight" in names) == (not model.config.tie_embeddings)
    # llama.cpp: measured 2.9e-5 (tied) and 2.5e-5 apart, on logits up to 0.54
    cfg, want = gguf_reads_back(path, model).config, model.config  # (to_gguf checked the fields, dropout aside)
    assert (cfg.hf_model_type, cfg.norm, cfg.bias, cfg.ffn, cfg.tie_embeddings, cfg.rope_scaling, cfg.dropout) == \
        ("starcoder2", "layernorm", True, "gelu_tanh", want.tie_embeddings, want.rope_scaling, 0.0)


@pytest.mark.parametrize("changes,problem", [
    (dict(sliding_window=16), "sliding_window=None"),  # the converter writes no window; llama.cpp has none
    (dict(use_bias=False), "bias=True"),  # llama.cpp: 'blk.0.attn_output.bias' not found
    (dict(head_dim=24), "head_dim = d_model / n_heads"),  # llama.cpp: attn_q 'has wrong shape'
    # llama.cpp aborts the process (GGML_ASSERT n_embd_head == n_rot)
    (dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
     "rope_fraction=1"),
    (dict(hidden_act="gelu"), "ffn='gelu'"),  # llama.cpp's starcoder2 runs the tanh approximation
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(changes, problem, tmp_path):
    model = tiny(tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
