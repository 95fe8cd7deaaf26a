"""LLaMA 3.1's RoPE scaling through GGUF's rope_freqs tensor (interop/gguf_rope.py): the divisors written as
llama.cpp's converter writes them, read back as the same rope_scaling, and decoded by llama.cpp (an F32 KV cache)
to llmarch's tokens within 1e-4. Without the tensor llama.cpp is 1.3e-3 (llama) and 0.08 (apertus) apart on these
models (measured), so a reader or writer that dropped it fails."""
import numpy as np
import pytest
import torch

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_rope import llama3_factors, llama3_from_factors
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

# over 64 original positions a 16-wide head's wavelengths 20 and 63 are on the ramp, 5 of 8 frequencies divided
L3 = dict(rope_type="llama3", rope_theta=1e4, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
          original_max_position_embeddings=64)
SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1,
             eos_token_id=2, head_dim=16, rope_parameters=L3, pad_token_id=0)


@pytest.mark.parametrize("theta,dim,factor,original", [
    (5e5, 128, 8.0, 8192),  # Llama 3.1 8B/70B/405B, Llama 3.3
    (5e5, 64, 32.0, 8192),  # Llama 3.2 1B
    (5e5, 128, 32.0, 8192),  # Llama 3.2 3B
    (1e4, 16, 8.0, 64),  # the tiny models below
])
def test_rope_freqs_read_as_the_scaling_that_wrote_them(theta, dim, factor, original):
    factors = llama3_factors(theta, dim, factor, 1.0, 4.0, original).tolist()
    assert llama3_from_factors(factors, theta, dim, 131072, "x.gguf") == {
        "rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": original}
    assert llama3_from_factors([1.0] * (dim // 2), theta, dim, 131072, "x.gguf") is None  # no scaling


def test_rope_freqs_no_llama3_scaling_gives_are_refused():
    factors = llama3_factors(5e5, 64, 8.0, 1.0, 4.0, 8192)
    factors[3] *= 1.5  # one ramp divisor off the curve
    with pytest.raises(LlmarchError, match="no LLaMA 3 RoPE scaling"):
        llama3_from_factors(factors.tolist(), 5e5, 64, 8192, "x.gguf")
    with pytest.raises(LlmarchError, match="16 divisors for 64 rotated dims"):
        llama3_from_factors([2.0] * 16, 5e5, 64, 8192, "x.gguf")
    with pytest.raises(LlmarchError, match="below 1"):
        llama3_from_factors(np.linspace(0.5, 8, 32).tolist(), 5e5, 64, 8192, "x.gguf")


@pytest.mark.parametrize("conf_cls,arch", [("LlamaConfig", "llama"), ("ApertusConfig", "apertus")])
def test_llama3_rope_through_gguf_and_llama_cpp(conf_cls, arch, tmp_path):
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(getattr(transformers, conf_cls)(**SMALL))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())  # to_gguf reads the file back to this config, every field
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == arch
    assert "rope_freqs.weight" in {t.name for t in reader.tensors}
    back = gguf_reads_back(path, model, exact=True, apart=1e-4)
    assert (back.config.rope_scaling, back.config.rope_original_context) == ("llama3", 64)
