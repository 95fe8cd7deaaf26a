"""GGUF "mimo2" in and out for MiMo-V2-Flash (interop/gguf_archs/mimo2.py): a tiny random MiMoV2FlashForCausalLM
(values narrower than q and k, a value scale, a full layer with a dense FFN and a sliding one with twice the KV heads,
sinks and DeepSeek-V3-routed experts; gains, sinks and the expert bias perturbed) read by from_hf is written by
to_gguf (F32) and read back by from_gguf to equal logits (max |dlogit| <= 1e-4); llama.cpp (llama-cpp-python, where
installed) decodes the file greedily to llmarch's tokens. What llama.cpp's graph cannot mean is refused."""
import pytest

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf, routed_apart
from test_mimo import MIMO

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

GGUF_MIMO = dict(MIMO, vocab_size=272, n_group=1, routed_scaling_factor=1.0, attention_bias=False,
                 rope_parameters={kind: {"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": 0.334}
                                  for kind, theta in (("full_attention", 50000.0), ("sliding_attention", 1000.0))})


def test_written_read_back_and_decoded_by_llama_cpp(tmp_path):
    import torch

    torch.manual_seed(0)
    hf = routed_apart(transformers.MiMoV2FlashForCausalLM(transformers.MiMoV2FlashConfig(**GGUF_MIMO))).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(ours, tmp_path / "m.gguf", "f32", ByteTokenizer())
    back = gguf_reads_back(tmp_path / "m.gguf", ours, vocab=256)
    assert (back.config.value_dim, back.config.for_layer(1).n_kv_heads, back.config.rotary_dim) == (16, 2, 8)
    for change, problem in ((dict(router_scale=2.0), "no routed scale"), (dict(qkv_bias=True), "no q, k, v biases")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match=problem):
            to_gguf(ours, tmp_path / "refused.gguf", "f32", ByteTokenizer())
