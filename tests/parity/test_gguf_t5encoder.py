"""T5's encoder alone: transformers' T5EncoderModel, UMT5EncoderModel and MT5EncoderModel (`architectures` naming
them) read by from_hf as llmarch's encoder-only T5 (head `embed`), their last_hidden_state on a right-padded batch
(fp32, max |diff| <= 1e-4), written back by to_hf to a directory transformers loads to the same states; then GGUF
`t5encoder` (convert_hf_to_gguf.py's T5EncoderModel) out and in: the F32 file llmarch writes reads back to the same
states (<= 1e-5), and llama.cpp (llama-cpp-python's C API: llama_encode with embeddings on) embeds each token of it
as llmarch does. UMT5 and mT5 are written as GGUF t5 too, as the converter writes them, and llama.cpp decodes them
to llmarch's greedy tokens."""
import json

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import perturbed

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=272, d_model=64, d_kv=16, d_ff=96, num_heads=4, num_layers=2, dropout_rate=0.0)
CASES = {  # name: (transformers class, its config class, config fields)
    "t5-gated": ("T5EncoderModel", "T5Config", dict(feed_forward_proj="gated-gelu")),
    "t5-relu": ("T5EncoderModel", "T5Config", dict(feed_forward_proj="relu")),
    "umt5": ("UMT5EncoderModel", "UMT5Config", dict(feed_forward_proj="gated-gelu")),
    "mt5": ("MT5EncoderModel", "MT5Config", dict(feed_forward_proj="gated-gelu")),
}
READ_AS = {"mt5": "t5"}  # GGUF holds mT5 as T5 (the same model), and it reads back so


def right_padded():
    torch.manual_seed(1)
    ids = torch.randint(3, 272, (2, 13))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return ids, mask


@pytest.fixture(scope="module", params=sorted(CASES))
def encoder(request, tmp_path_factory):
    """(case, the transformers encoder, perturbed, llmarch's model read from its directory, a folder)."""
    cls, conf, fields = CASES[request.param]
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, cls)(getattr(transformers, conf)(**SMALL, **fields)))
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder / "hf")
    return request.param, hf, llmarch.from_hf(folder / "hf"), folder


def test_encoder_reads_as_transformers_and_round_trips(encoder):
    case, hf, model, folder = encoder
    cfg = model.config
    assert (cfg.head, cfg.pooling, cfg.causal, cfg.n_decoder_layers) == ("embed", "none", False, 0)
    assert cfg.relative_bias_per_layer == (case == "umt5")
    ids, mask = right_padded()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (model(ids, attention_mask=mask).logits - want).abs().max() <= 1e-4  # measured 1.3e-6
        llmarch.to_hf(model, folder / "back")
        assert json.loads((folder / "back" / "config.json").read_text())["architectures"] == [CASES[case][0]]
        again = getattr(transformers, CASES[case][0]).from_pretrained(folder / "back").eval()
        assert (again(input_ids=ids, attention_mask=mask).last_hidden_state - want).abs().max() <= 1e-6


def llama_cpp_encode(path, tokens: list[int]) -> np.ndarray:
    """llama.cpp's embedding of each token (llama_encode in a context with embeddings on, pooling none; llama-cpp-
    python's Llama.embed decodes, which a model without a decoder cannot)."""
    import llama_cpp
    import llama_cpp._logger

    llama_cpp._logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False  # test_llama_cpp.py: its repacked buffers crash on this machine
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model and llama_cpp.llama_model_has_encoder(model) and not llama_cpp.llama_model_has_decoder(model)
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx, ctx_params.n_threads, ctx_params.n_threads_batch = 64, 1, 1
    ctx_params.embeddings = True
    ctx_params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
    ctx = llama_cpp.llama_init_from_model(model, ctx_params)
    try:
        src = (llama_cpp.llama_token * len(tokens))(*tokens)
        assert llama_cpp.llama_encode(ctx, llama_cpp.llama_batch_get_one(src, len(tokens))) == 0
        width = llama_cpp.llama_model_n_embd(model)
        return np.stack([np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_ith(ctx, i), shape=(width,)).copy()
                         for i in range(len(tokens))])
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def test_t5encoder_gguf_round_trip_and_llama_cpp(encoder):
    case, hf, model, folder = encoder
    path = folder / "enc.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "t5encoder"
    names = {t.name for t in reader.tensors}
    assert ("enc.blk.1.attn_rel_b.weight" in names) == (case == "umt5") and "enc.blk.0.attn_rel_b.weight" in names
    assert not any(n.startswith("dec.") for n in names) and "output.weight" not in names
    back = llmarch.from_gguf(path)
    assert (back.config.hf_model_type, back.config.head) == (READ_AS.get(case, case.split("-")[0]), "embed")
    ids, mask = right_padded()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        assert (back(ids, attention_mask=mask).logits - model(ids, attention_mask=mask).logits).abs().max() <= 1e-5
        assert (back(ids, attention_mask=mask).logits - want).abs().max() <= 1e-4
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    tokens = ids[0].tolist()
    theirs = llama_cpp_encode(path, tokens)
    with torch.no_grad():
        ours = back(torch.tensor([tokens])).logits[0].numpy()
    # measured 1.1e-3 (gated T5, mT5) and 7.8e-4 (UMT5) apart on states up to 3.2 and 4.6: llama.cpp's tanh-GELU goes
    # through ggml's F16 table; the ReLU T5 1.0e-6 apart
    assert np.abs(theirs - ours).max() <= 1e-3 * np.abs(ours).max(), np.abs(theirs - ours).max()


def test_t5encoder_refuses_what_llama_cpp_computes_otherwise(tmp_path):
    torch.manual_seed(0)
    hf = transformers.T5EncoderModel(transformers.T5Config(**SMALL, feed_forward_proj="gated-silu"))
    hf.save_pretrained(tmp_path / "hf")
    with pytest.raises(LlmarchError, match="gated-silu"):  # llama.cpp's gated t5 FFN is GELU
        to_gguf(llmarch.from_hf(tmp_path / "hf"), tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_umt5_written_as_t5_decodes_in_llama_cpp(tmp_path):
    """UMT5ForConditionalGeneration, tied and unscaled (UMT5Config asked for an untied head ties it anyway but
    records scale_decoder_outputs false; its default, tied and scaled, is refused as T5 v1.0's tied gated head is:
    llama.cpp does not scale): GGUF t5 with a table in every layer of both stacks, read back as umt5; llama.cpp
    decodes it greedily to llmarch's tokens."""
    from test_gguf_t5 import assert_llama_cpp_decodes_alike

    torch.manual_seed(0)
    conf = transformers.UMT5Config(**SMALL, tie_word_embeddings=False)
    hf = perturbed(transformers.UMT5ForConditionalGeneration(conf))
    hf.save_pretrained(tmp_path / "hf")
    model = llmarch.from_hf(tmp_path / "hf")
    path = tmp_path / "umt5.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "t5"
    assert {"enc.blk.1.attn_rel_b.weight", "dec.blk.1.attn_rel_b.weight"} <= {t.name for t in reader.tensors}
    back = llmarch.from_gguf(path)
    assert (model.config.tie_embeddings, model.config.head_scale) == (True, False)
    assert back.config.hf_model_type == "umt5" and back.config.relative_bias_per_layer
    torch.manual_seed(1)
    src, tgt = torch.randint(3, 256, (2, 13)), torch.randint(3, 256, (2, 7))
    with torch.no_grad():
        assert (back(src, tgt).logits - model(src, tgt).logits).abs().max() <= 1e-5
    # measured 1.3e-2 apart on logits up to 26 (the tanh-GELU's F16 table, as for T5)
    assert_llama_cpp_decodes_alike(path, model, src[1].tolist())


def test_mt5_written_as_t5_decodes_in_llama_cpp(tmp_path):
    """MT5ForConditionalGeneration (gated, untied, never rescaled): GGUF t5, read back as t5 (the same model);
    llama.cpp decodes it greedily to llmarch's tokens."""
    from test_gguf_t5 import assert_llama_cpp_decodes_alike

    torch.manual_seed(0)
    hf = perturbed(transformers.MT5ForConditionalGeneration(transformers.MT5Config(**SMALL)))
    hf.save_pretrained(tmp_path / "hf")
    model = llmarch.from_hf(tmp_path / "hf")
    path = tmp_path / "mt5.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    back = llmarch.from_gguf(path)
    assert back.config == model.config.replace(name=back.config.name, hf_model_type="t5",
                                               norm_eps=back.config.norm_eps, eos_id=back.config.eos_id)
    torch.manual_seed(1)
    src, tgt = torch.randint(3, 256, (2, 13)), torch.randint(3, 256, (2, 7))
    with torch.no_grad():
        assert (back(src, tgt).logits - model(src, tgt).logits).abs().max() <= 1e-5
    # measured 1.4e-2 apart on logits up to 26
    assert_llama_cpp_decodes_alike(path, model, src[1].tolist())
