"""GGUF in and out for gpt-oss (GGUF "gpt-oss"), as convert_hf_to_gguf.py's GptOssModel writes it: the sinks as
attn_sinks.weight, the interleaved gate_up_proj split into ffn_gate_exps and ffn_up_exps (and its bias into
theirs), down_proj transposed, the router's bias, YaRN's keys, the window. A tiny random GptOssForCausalLM (sinks,
sliding and full layers with a window shorter than the prompt, YaRN whose ramp falls mid-head, biased router and
experts) is written by `to_gguf` and read back by from_gguf to equal logits; llama.cpp (llama-cpp-python, where
installed, with an F32 KV cache and no flash attention) decodes the file greedily to llmarch's tokens and logits.
A file with MXFP4 experts (gguf.quants quantizes and dequantizes them) reads as its dequantized values, and
llama.cpp agrees with it. Variants llama.cpp's gpt-oss cannot run are refused with one line."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

# the ramp between dims 2.0 and 4.4 of 8 (original context 4096, base 150000, head 16): llama.cpp floors and
# ceils its ends (transformers' truncate), so a file means truncate true
YARN = {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "truncate": True, "original_max_position_embeddings": 4096}
TINY = dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
            max_position_embeddings=16384, rope_parameters=YARN, initializer_range=0.1, eos_token_id=2)


def tiny(tmp_path, **changes):
    """The random model as llmarch reads it from a Hugging Face directory; biases, gains and sinks perturbed and
    the router sharpened (as test_gpt_oss_parity's), weights of 0.1 so that logits spread over a few units."""
    torch.manual_seed(0)
    hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(**{**TINY, **changes}))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1 or name.endswith("_bias"):
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("sinks"):
                p.normal_(0, 2.0)
            if name.endswith("router.weight"):
                p.mul_(5.0)
    hf.save_pretrained(tmp_path / "hf")
    return llmarch.from_hf(tmp_path / "hf")


def llama_cpp_agrees(model, path, prompt: list[int], tol: float) -> None:
    """llama.cpp's greedy tokens on the file are `model`'s, its logits within tol of `model`'s."""
    llama_cpp_test = pytest.importorskip("test_llama_cpp", reason="llama-cpp-python is not installed")
    seq, theirs = llama_cpp_test.llama_cpp_greedy(path, prompt, 8, exact=True)
    with torch.no_grad():
        ours = llmarch.generate(model, torch.tensor([prompt]), max_new_tokens=8)[0].tolist()
        logits = model(torch.tensor([seq[:-1]])).logits[0].numpy()
    assert np.abs(theirs - logits).max() <= tol and ours == seq


def test_round_trip_and_llama_cpp(tmp_path):
    model = tiny(tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("gpt-oss.")}
    assert fields["gpt-oss.rope.scaling.type"] == "yarn" and fields["gpt-oss.rope.scaling.factor"] == 4.0
    assert fields["gpt-oss.rope.scaling.original_context_length"] == 4096
    assert fields["gpt-oss.attention.sliding_window"] == 4 and fields["gpt-oss.expert_feed_forward_length"] == 64
    shapes = {t.name: (t.tensor_type.name, [int(n) for n in reversed(t.shape)]) for t in reader.tensors}
    assert shapes["blk.0.attn_sinks.weight"] == ("F32", [4])
    for kind, shape in (("gate", [4, 64, 64]), ("up", [4, 64, 64]), ("down", [4, 64, 64])):
        assert shapes[f"blk.1.ffn_{kind}_exps.weight"] == ("F32", shape)
        assert shapes[f"blk.1.ffn_{kind}_exps.bias"] == ("F32", [4, 64])
    assert shapes["blk.0.ffn_gate_inp.bias"] == ("F32", [4])
    back = llmarch.from_gguf(path)
    assert back.config.hf_model_type == "gpt_oss" and back.config.rope_scaling == "yarn"
    assert [type(b.attn.kind).__name__ for b in back.blocks] == ["SlidingWindowKind", "Full"]
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4
    # ggml's gate and up rows are llmarch's: expert 3's gate row 5 and up row 7 of block 0 (gates first in ours)
    data = {t.name: np.asarray(t.data) for t in reader.tensors}
    ours = model.blocks[0].mlp.experts.gate_up.detach().numpy()
    assert np.array_equal(data["blk.0.ffn_gate_exps.weight"][3, 5], ours[3, 5])
    assert np.array_equal(data["blk.0.ffn_up_exps.weight"][3, 7], ours[3, 64 + 7])
    llama_cpp_agrees(model, path, ids[0, :8].tolist(), 1e-4)
