"""GGUF in and out for Jais-2 (llama.cpp's `jais2`: LLaMA's attention with q, k, v, o biases, LayerNorms with biases,
an ungated squared-ReLU MLP with biases): a tiny random model from transformers, through from_hf, written by to_gguf
in F32 with llmarch's byte tokenizer, read back by from_gguf to equal logits, and decoded greedily by llama.cpp
(llama-cpp-python, where installed) to llmarch's tokens with llmarch's logits."""
import pytest

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1,
             eos_token_id=2)


def test_jais2_round_trip_and_llama_cpp(tmp_path):
    import torch

    torch.manual_seed(0)
    # RoPE base 100, so that q and k rows in the wrong order (a permutation llama.cpp's rotation does not expect)
    # move llama.cpp's logits 1e-3, 15 times the 7e-5 they are apart otherwise (measured)
    rope = {"rope_type": "default", "rope_theta": 100.0}
    hf = transformers.AutoModelForCausalLM.from_config(transformers.Jais2Config(**SMALL, rope_parameters=rope))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(tmp_path / "x.gguf")).fields["general.architecture"].contents() == "jais2"
    back = gguf_reads_back(tmp_path / "x.gguf", model, exact=False, apart=2e-4)
    assert back.config.hf_model_type == "jais2" and (back.config.qkv_bias, back.config.bias) == (True, True)
