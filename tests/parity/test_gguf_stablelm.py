"""GGUF `stablelm` in and out, as convert_hf_to_gguf.py's StableLMModel writes it: LayerNorms with biases (ffn_norm
only where the residual is sequential), attn_q/k/v with biases where use_qkv_bias, ffn_gate/up/down, the head
`output` always (a tied one as a copy), rope.dimension_count for the partial rotation, LayerNorm's epsilon and
use_parallel_residual. A tiny random StableLM (from a transformers config, 1-D parameters perturbed, through
from_hf) is written by to_gguf with llmarch's byte tokenizer, read back by from_gguf to equal logits (F32, max
|dlogit| <= 1e-4), and llama.cpp (llama-cpp-python 0.3.36, where installed) decodes the file greedily to
llmarch's tokens with llmarch's logits; so are StableLM-2-12B's per-head q/k norms."""
import pytest
import torch

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
CASES = {
    # StableLM-3B-4E1T's shape: no q/k/v biases, two LayerNorms a layer, untied, 4 of each head's 16 dims rotated
    "3b-style": SMALL,
    # StableLM-2's options: q/k/v biases, the parallel residual (no ffn_norm), 2 kv heads, the tied head written
    # as a copy, half of each head rotated, a RoPE base of 1e5 (rope.freq_base)
    "2-parallel-gqa-tied": dict(SMALL, use_qkv_bias=True, use_parallel_residual=True, num_key_value_heads=2,
                                tie_word_embeddings=True,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e5,
                                                 "partial_rotary_factor": 0.5}),
}


def tiny(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.StableLmForCausalLM(transformers.StableLmConfig(**CASES[case]))
    return perturbed_from_hf(hf, tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    parallel = case != "3b-style"
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    assert meta["general.architecture"] == "stablelm" and meta["stablelm.use_parallel_residual"] == parallel
    assert meta["stablelm.rope.dimension_count"] == (8 if parallel else 4)
    assert meta["stablelm.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_norm.bias", "blk.0.ffn_gate.weight", "output_norm.bias", "output.weight"} <= names
    assert ("blk.0.attn_q.bias" in names) == parallel and ("blk.0.ffn_norm.bias" in names) == (not parallel)
    # llama.cpp: measured 3.0e-7 (3b-style) and 2.1e-7 apart, on logits up to 0.64, 0.87
    cfg = gguf_reads_back(path, model).config
    assert (cfg.hf_model_type, cfg.block, cfg.qkv_bias, cfg.tie_embeddings) == \
        ("stablelm", "parallel" if parallel else "sequential", parallel, parallel)


def test_per_head_qk_norms_in_and_out_and_llama_cpp(tmp_path):
    """StableLM-2-12B's q and k LayerNorm per head (qk_norm="per_head"; Hugging Face's q_layernorm.norms.{h}) as the
    converter's _stack_qk_norm writes them, one attn_q_norm / attn_k_norm (heads, head_dim) a layer, each head's
    gains a row (Arch.indexed); read back to equal logits and decoded by llama.cpp (where installed) to llmarch's
    tokens, so each head's gains reach its head."""
    torch.manual_seed(0)
    hf = transformers.StableLmForCausalLM(transformers.StableLmConfig(
        **dict(SMALL, use_parallel_residual=True, qk_layernorm=True, num_key_value_heads=2)))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    assert model.config.qk_norm == "per_head"
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in gguf.GGUFReader(str(path)).tensors}
    assert shapes["blk.0.attn_q_norm.weight"] == (16, 4) and shapes["blk.0.attn_k_norm.weight"] == (16, 2)
    assert gguf_reads_back(path, model).config.qk_norm == "per_head"
