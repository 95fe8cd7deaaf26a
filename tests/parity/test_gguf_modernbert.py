"""GGUF in and out for ModernBERT, as llama.cpp's convert_hf_to_gguf.py (ModernBertModel) writes it: architecture
modern-bert, an embedding model (attention.causal false, pooling_type where the model pools, a masked-LM head
dropped), tensors token_embd, token_embd_norm, blk.N.attn_norm (none in block 0), attn_qkv, attn_output, ffn_norm,
ffn_up (the fused GeGLU Wi), ffn_down, output_norm; attention.sliding_window the whole local window,
sliding_window_pattern the global period (layer 0 global), rope.freq_base and rope.freq_base_swa the global and
local bases. A tiny random ModernBERT (4 layers, global and local with different bases, a window of 8 under
inputs of 24 and 58 tokens) round-trips to equal embeddings, and llama.cpp (llama-cpp-python, where installed) embeds
to llmarch's pooled output (measured: 3.4e-5 mean pooling, F32, 2-core CPU; the check is 1e-3)."""
import warnings

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError, LlmarchWarning
from llmarch.interop import from_hf
from llmarch.interop.gguf_writer import to_gguf
from llmarch.models.build import with_head

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

VOCAB = 300  # llmarch's byte tokenizer's 256 bytes and its specials fit
# 4 layers, global where i % 3 == 0 (layers 0 and 3), local windows of 8 (4 tokens either side)
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            global_attn_every_n_layers=3, local_attention=8, global_rope_theta=1000.0, local_rope_theta=50.0,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
            attn_implementation="eager", initializer_range=0.1)
TEXT = "Hello, world! The quick brown fox jumps over the lazy dog."


def tiny(tmp_path, suffix: str = "Model", **changes):
    """A random transformers ModernBERT (norm gains perturbed) as llmarch reads it."""
    torch.manual_seed(0)
    hf = getattr(transformers, "ModernBert" + suffix)(transformers.ModernBertConfig(**BASE, **changes)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path / "hf")
    return from_hf(tmp_path / "hf")


def batch():
    """Two rows of 24 tokens, the second right-padded by 5: longer than the window, so it binds."""
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, 19:] = 0
    return ids, mask


@pytest.mark.parametrize("pooling,code", [("mean", 1), ("cls", 2)])
def test_modernbert_round_trips_through_gguf_as_an_embedding_model(pooling, code, tmp_path):
    model = with_head(tiny(tmp_path), "embed", pooling=pooling).eval()
    path = tmp_path / "m.gguf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no head dropped: no warning
        to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    assert meta["general.architecture"] == "modern-bert" and meta["modern-bert.attention.causal"] is False
    assert meta["modern-bert.pooling_type"] == code and meta["modern-bert.attention.sliding_window"] == 8
    assert meta["modern-bert.attention.sliding_window_pattern"] == 3
    assert meta["modern-bert.rope.freq_base"] == 1000.0 and meta["modern-bert.rope.freq_base_swa"] == 50.0
    per_layer = ["attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"]
    assert {t.name for t in reader.tensors} == {
        "token_embd.weight", "token_embd_norm.weight", "output_norm.weight",
        *(f"blk.{i}.{n}.weight" for i in range(4) for n in per_layer),
        *(f"blk.{i}.attn_norm.weight" for i in range(1, 4))}  # block 0 has no attn_norm
    back = llmarch.from_gguf(path)
    assert (back.config.head, back.config.pooling, back.config.causal) == ("embed", pooling, False)
    assert back.config.layer_types == model.config.layer_types
    assert back.config.for_layer(1).sliding_window == 5 and back.config.for_layer(1).rope_theta == 50.0
    ids, mask = batch()
    with torch.no_grad():
        want = model(ids, attention_mask=mask).logits
        got = back(ids, attention_mask=mask).logits
    assert got.shape == want.shape == (2, 64) and (got - want).abs().max() <= 1e-5


def test_masked_lm_head_is_left_out_with_a_warning(tmp_path):
    model = tiny(tmp_path, "ForMaskedLM")
    path = tmp_path / "m.gguf"
    with pytest.warns(LlmarchWarning, match="no masked-LM head"):
        to_gguf(model, path, "f32", ByteTokenizer())
    back = llmarch.from_gguf(path)
    assert (back.config.head, back.config.pooling) == ("embed", "none")
    ids, mask = batch()
    with torch.no_grad():
        want = model(ids, attention_mask=mask).hidden_states
        got = back(ids, attention_mask=mask).logits
    assert (got - want)[mask.bool()].abs().max() <= 1e-5


def test_llama_cpp_embeds_as_llmarch(tmp_path):
    """llama.cpp on the written file (F32, and F16) with its pooling, on token ids it tokenized itself (58
    byte tokens over a window of 8): its pooled embeddings are llmarch's on the same file within 1e-3."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    base = tiny(tmp_path)
    for pooling, dtype in (("mean", "f32"), ("cls", "f32"), ("mean", "f16")):
        path = tmp_path / f"{pooling}-{dtype}.gguf"
        to_gguf(with_head(base, "embed", pooling=pooling).eval(), path, dtype, ByteTokenizer())
        model = llmarch.from_gguf(path)
        lc = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=128, n_threads=1, verbose=False)
        try:
            ids = lc.tokenize(TEXT.encode(), add_bos=True, special=True)
            theirs = np.array(lc.embed(TEXT, normalize=False))
        finally:
            lc.close()
        assert len(ids) == 58
        with torch.no_grad():
            mine = model(torch.tensor([ids])).logits[0].numpy()
        assert theirs.shape == mine.shape == (64,), (pooling, dtype)
        assert np.abs(theirs - mine).max() <= 1e-3, (pooling, dtype, np.abs(theirs - mine).max())
        if (pooling, dtype) == ("mean", "f32"):  # what the match rests on: the window, the pattern, the two bases
            for change in (dict(layer_types=None, layer_overrides=None),
                           dict(layer_types=["sliding_attention"] * 3 + ["full_attention"]),
                           dict(layer_overrides={"sliding_attention": {"sliding_window": 5}})):
                other = llmarch.build(model.config.replace(**change)).eval()
                other.load_state_dict(model.state_dict())
                with torch.no_grad():
                    wrong = other(torch.tensor([ids])).logits[0].numpy()
                assert np.abs(theirs - wrong).max() > 1e-3, change


def write_like_llama_cpp(hf, path, extra: dict | None = None) -> None:
    """convert_hf_to_gguf.py's ModernBertModel on a transformers ModernBertModel, as far as this one needs: the
    metadata its set_gguf_parameters writes (the bases from rope_parameters), the names without `model.`; no
    vocabulary (llmarch reads the model without one). `extra`: more tensors, by GGUF name."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), "modern-bert")
    for key, value in dict(block_count=c.num_hidden_layers, context_length=c.max_position_embeddings,
                           embedding_length=c.hidden_size, feed_forward_length=c.intermediate_size,
                           head_count=c.num_attention_heads, head_count_kv=c.num_attention_heads,
                           rope_freq_base=c.rope_parameters["full_attention"]["rope_theta"],
                           rope_freq_base_swa=c.rope_parameters["sliding_attention"]["rope_theta"],
                           layer_norm_rms_eps=c.norm_eps, layer_norm_eps=c.norm_eps, causal_attention=False,
                           sliding_window=c.local_attention, sliding_window_pattern=c.global_attn_every_n_layers,
                           vocab_size=c.vocab_size).items():
        getattr(w, f"add_{key}")(value)
    w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MODERN_BERT, c.num_hidden_layers)
    for name, t in hf.state_dict().items():
        w.add_tensor(names.get_name(name.removeprefix("model."), try_suffixes=(".weight", ".bias")), t.numpy())
    for name, array in (extra or {}).items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_converter_style_file_reads_as_transformers_modernbert(tmp_path):
    """A file written as llama.cpp's converter writes a transformers ModernBertModel: llmarch's output is the
    model's last_hidden_state on a right-padded batch; a file with a head (cls tensors) is refused."""
    torch.manual_seed(0)
    hf = transformers.ModernBertModel(transformers.ModernBertConfig(**BASE)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "conv.gguf"
    write_like_llama_cpp(hf, path)
    model = llmarch.from_gguf(path)
    assert (model.config.head, model.config.pooling) == ("embed", "none")
    ids, mask = batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(ids, attention_mask=mask).logits
    assert (got - want)[mask.bool()].abs().max() <= 1e-4
    write_like_llama_cpp(hf, tmp_path / "head.gguf", {"cls.weight": np.zeros((64, 64), np.float32)})
    with pytest.raises(LlmarchError, match="head.dense.weight that the model has no place for"):
        llmarch.from_gguf(tmp_path / "head.gguf")


@pytest.mark.parametrize("suffix,changes,problem", [
    ("ForSequenceClassification", {}, "classify head"),
    ("ForTokenClassification", {}, "tokens head"),
    ("Model", dict(attention_bias=True, mlp_bias=True), "no biases"),
    ("Model", dict(norm_bias=True), "no biases"),
    ("Model", dict(hidden_activation="gelu_pytorch_tanh", classifier_activation="gelu_pytorch_tanh"),
     "ffn='geglu_tanh'"),
    ("Model", dict(layer_types=["full_attention", "sliding_attention", "full_attention", "full_attention"]),
     "every n-th layer global"),
    ("Model", dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "no RoPE scaling"),
])
def test_what_llama_cpp_computes_otherwise_is_refused(suffix, changes, problem, tmp_path):
    """One-line errors, and no file."""
    model = tiny(tmp_path, suffix, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_causal_files_are_refused(tmp_path):
    path = tmp_path / "x.gguf"
    to_gguf(with_head(tiny(tmp_path), "embed", pooling="cls"), path, "f32", ByteTokenizer())
    gguf.GGUFReader(str(path), "r+").fields["modern-bert.attention.causal"].parts[-1][0] = True
    with pytest.raises(LlmarchError, match="causal true"):
        llmarch.from_gguf(path)
