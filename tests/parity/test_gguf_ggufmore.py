"""GGUF in and out for MPT (`mpt`), as convert_hf_to_gguf.py's MPTModel writes it: attn_qkv as Wqkv is (q | k | v),
bias-free LayerNorms, ALiBi's bound (attention.max_alibi_bias 8), clip_qkv as attention.clamp_kqv; and for Step 3.7's
text model (`step35`, llmarch's step3p5), as Step35Model writes it: norms as 1 + g, head counts per layer, the
sliding layers flagged with their own RoPE base, per-head gates, experts and a shared one, SwiGLU bounds per layer.
Each tiny random model (from a transformers config, 1-D parameters perturbed, through from_hf) is written by to_gguf
with llmarch's byte tokenizer, read back by from_gguf to equal logits (F32, max |dlogit| <= 1e-5 here), and llama.cpp
(llama-cpp-python 0.3.36, where installed) decodes the file greedily to llmarch's tokens with llmarch's logits;
what llama.cpp would compute otherwise is refused before a file is left."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import llama_cpp_against, perturbed_from_hf, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
transformers.logging.set_verbosity_error()

MPT = dict(vocab_size=272, d_model=64, n_heads=4, n_layers=2, max_seq_len=128, expansion_ratio=4)


def tiny_mpt(tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.MptForCausalLM(transformers.MptConfig(**{**MPT, **changes}))
    return perturbed_from_hf(hf, tmp_path / "hf")


def written(model, tmp_path, arch):
    """model written as an F32 .gguf of GGUF architecture `arch`; read back by llmarch to logits within 1e-5."""
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == arch
    back = llmarch.from_gguf(path)
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-5
    return path, back


# tied, no clamp; untied with q/k/v clamped at 0.1 (binding on this model)
@pytest.mark.parametrize("changes", [dict(), dict(tie_word_embeddings=False, attn_config=dict(clip_qkv=0.1))],
                         ids=["tied", "untied-clipped"])
def test_mpt_round_trip_and_llama_cpp(changes, tmp_path):
    model = tiny_mpt(tmp_path, **changes)
    path, back = written(model, tmp_path, "mpt")
    assert back.config.tie_embeddings == model.config.tie_embeddings
    assert back.config.clip_qkv == pytest.approx(model.config.clip_qkv)  # stored as F32
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 11)), exact=True)
    # measured 1.9e-4 (tied) and 3.2e-4 apart on logits up to 0.67: llama.cpp's GELU is the tanh approximation
    # through ggml's F16 table (1e-4 apart against llmarch run so); without the clamp llama.cpp was 0.25 apart
    assert seq == ours and apart <= 1e-3


def test_mpt_refuses_what_llama_cpp_computes_otherwise(tmp_path):
    model = tiny_mpt(tmp_path, attn_config=dict(softmax_scale=0.2))  # llama.cpp scales by 1/sqrt(d_h)
    with pytest.raises(LlmarchError, match="softmax_scale=0.2"):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


STEP = dict(query_pre_attn_scalar=16, vocab_size=272, rope_theta=[10.0, 50000.0])


def tiny_step(tmp_path, **changes):
    """Step 3.7's text model (test_newtextb's: a sliding layer with its own query heads and RoPE base, a full one
    rotating half of each head, a dense layer then experts with a shared one, SwiGLU bounds that bind) under
    transformers' Step3p7ForConditionalGeneration, read by from_hf as llmarch's step3p5."""
    from test_newtextb import STEP_TEXT, STEP_VISION

    torch.manual_seed(0)
    tied = {"tie_word_embeddings": True} if changes.get("tie_word_embeddings") else {}  # the wrapper ties the head
    config = transformers.Step3p7Config(text_config={**STEP_TEXT, **changes}, vision_config=STEP_VISION,
                                        image_token_id=120, **tied)
    return perturbed_from_hf(routed_apart(transformers.Step3p7ForConditionalGeneration(config)), tmp_path / "hf")


# tied: llama.cpp's step35 requires `output`, so the head goes out as a copy of the embedding and reads back tied
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_step35_round_trip_and_llama_cpp(tied, tmp_path):
    # the sliding layer's RoPE base 10 (the full one's 5e4), so a file without rope.freq_base_swa shows
    model = tiny_step(tmp_path, **STEP, tie_word_embeddings=tied)
    assert model.config.tie_embeddings == tied
    path, back = written(model, tmp_path, "step35")
    assert (back.config.layer_types, back.config.tie_embeddings) == (model.config.layer_types, tied)
    # measured 1.8e-7 (untied) and 3.6e-7 apart; without swiglu_clamp_exp 0.06, without swiglu_clamp_shexp 0.11,
    # without rope.freq_base_swa 0.10
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 11)), exact=True)
    assert seq == ours and apart <= 1e-5


@pytest.mark.parametrize("changes,problem", [
    (dict(query_pre_attn_scalar=32), "query_pre_attn_scalar=32"),  # llama.cpp scales by 1/sqrt(head_dim)
    (dict(partial_rotary_factors=[1.0, 1.0]), "rotates half"),  # and turns half of a full layer's head
])
def test_step35_refuses_what_llama_cpp_computes_otherwise(changes, problem, tmp_path):
    model = tiny_step(tmp_path, **{**STEP, **changes})
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
