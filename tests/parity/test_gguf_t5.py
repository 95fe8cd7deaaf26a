"""GGUF "t5" in and out (llama.cpp's encoder-decoder, as convert_hf_to_gguf.py's T5Model writes it) with its
SentencePiece unigram vocabulary (tokenizer.ggml.model "t5"). Tiny random T5s from transformers (v1.1's gated
GELU, tied and unscaled as transformers 5 saves it; the original ReLU, tied and scaled by d_model^-0.5, with a
shallower decoder) and an untied v1.1 built by llmarch are written by `to_gguf` with a unigram vocabulary trained
here and read back by from_gguf to equal logits (max |dlogit| <= 1e-4); llama.cpp (llama-cpp-python's C API:
llama_encode the source, then llama_decode from llama_model_decoder_start_token) decodes each greedily to
llmarch's tokens, its logits llmarch's, times sqrt(d_model) for the tied ReLU file (llama.cpp does not scale).
The vocabulary, with a hand-built precompiled charsmap that maps tab and newline to a space, tokenizes as
transformers' T5Tokenizer (T5TokenizerFast is the same class in transformers 5) and as llama.cpp do."""
import dataclasses
import json
import math
import struct

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import BPETokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.interop.gguf_writer import to_gguf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")
transformers.logging.set_verbosity_error()

TEXTS = ["translate English to German: the house is wonderful", "summarize: studies have shown that owning a dog",
         "the quick brown fox jumps over the lazy dog", "a dog and a cat went to the market to buy bread",
         "he said that she would come back tomorrow morning"]
SENTENCES = ["translate English to German: the house is wonderful.", "summarize:  studies   have shown that",
             " the lazy fox jumps! ", "xyz qqq the dog</s> and", "Über naïve café", "a\tcat\nwent  \n to", ""]
SMALL = dict(d_model=64, d_kv=16, d_ff=96, num_heads=4, dropout_rate=0.0, decoder_start_token_id=0)


def charsmap(table: dict[str, str]) -> bytes:
    """A SentencePiece precompiled charsmap for single-byte keys: the length of a darts-clone double array, the
    array (the root's base 256; key byte c's unit at 256 ^ c holds the label c, the leaf bit and a base leading to
    a value unit, which holds its replacement's offset), then the NUL-terminated replacements."""
    units, strings = [0] * 1024, b""
    units[0] = 256 << 10
    for n, (key, value) in enumerate(table.items()):
        c, at = ord(key), 512 + n
        units[256 ^ c] = (((256 ^ c) ^ at) << 10) | 1 << 8 | c
        units[at] = 1 << 31 | len(strings)
        strings += value.encode() + b"\0"
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + strings


@pytest.fixture(scope="module")
def t5_tokenizer():
    """transformers' T5Tokenizer over a unigram vocabulary trained here (<pad> </s> <unk> first, as T5's), with
    a charsmap mapping tab and newline to a space (T5's nmt_nfkc does so among much else)."""
    tk = tokenizers.Tokenizer(tokenizers.models.Unigram())
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
    trainer = tokenizers.trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"],
                                                 unk_token="<unk>", show_progress=False)
    tk.train_from_iterator([t + " " for t in TEXTS for _ in range(5)], trainer)
    vocab = [tuple(v) for v in json.loads(tk.to_str())["model"]["vocab"]]
    return transformers.T5Tokenizer(vocab=vocab, extra_ids=0, _spm_precompiled_charsmap=charsmap({"\t": " ",
                                                                                                  "\n": " "}))


def from_transformers(tmp_path, gated: bool, vocab_size: int = 96, **fields):
    """A random T5ForConditionalGeneration as llmarch reads its directory; norm gains perturbed and the
    attention and FFN outputs amplified so the blocks, not the embedding, decide the tokens."""
    torch.manual_seed(0)
    kind = dict(feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=not gated)
    conf = transformers.T5Config(vocab_size=vocab_size, **SMALL, **{**kind, **fields})
    hf = transformers.T5ForConditionalGeneration(conf)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith((".o.weight", ".wo.weight")):
                p.mul_(3)
    hf.save_pretrained(tmp_path / "hf")
    return llmarch.from_hf(tmp_path / "hf")


def untied(tmp_path):
    """T5 v1.1 as Google released it (flan-t5): gated GELU, its own head, no scaling."""
    from llmarch.interop.t5 import to_config

    torch.manual_seed(0)
    return llmarch.build(to_config(dict(SMALL, vocab_size=96, num_layers=2, feed_forward_proj="gated-gelu",
                                        tie_word_embeddings=False)))


CASES = {  # name: (model builder, llama.cpp's logits / llmarch's)
    "v1.1": (lambda tmp: from_transformers(tmp, gated=True, num_layers=2), 1.0),
    "v1.0": (lambda tmp: from_transformers(tmp, gated=False, num_layers=3, num_decoder_layers=2), math.sqrt(64)),
    "v1.1-untied": (untied, 1.0),
}


def llama_cpp_seq2seq(path, source: list[int], new: int) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy answer to `source` (llama_encode it, then decode one token at a time from the decoder
    start token; llama-cpp-python's Llama.generate never encodes) and its logits at each step."""
    import llama_cpp
    import llama_cpp._logger

    llama_cpp._logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False  # test_llama_cpp.py: its repacked buffers crash on this machine
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model and llama_cpp.llama_model_has_encoder(model) and llama_cpp.llama_model_has_decoder(model)
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx, ctx_params.n_threads, ctx_params.n_threads_batch = 64, 1, 1
    ctx = llama_cpp.llama_init_from_model(model, ctx_params)
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    try:
        src = (llama_cpp.llama_token * len(source))(*source)
        assert llama_cpp.llama_encode(ctx, llama_cpp.llama_batch_get_one(src, len(source))) == 0
        seq, logits = [llama_cpp.llama_model_decoder_start_token(model)], []
        for _ in range(new):
            one = (llama_cpp.llama_token * 1)(seq[-1])
            assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) == 0
            logits.append(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy())
            seq.append(int(logits[-1].argmax()))
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    return seq, np.stack(logits)


@pytest.mark.parametrize("case", sorted(CASES))
def test_t5_gguf_round_trip_and_llama_cpp(case, tmp_path, t5_tokenizer):
    build, scale = CASES[case]
    model = build(tmp_path)
    path = tmp_path / "t5.gguf"
    to_gguf(model, path, "f32", BPETokenizer(t5_tokenizer._tokenizer, eos_id=1))
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert {"enc.blk.0.attn_rel_b.weight", "dec.blk.0.attn_rel_b.weight", "dec.blk.1.cross_attn_k.weight"} <= names
    assert ("enc.blk.0.ffn_gate.weight" in names) == (model.config.ffn == "geglu_tanh")
    assert ("output.weight" in names) == (not model.config.tie_embeddings)
    back = llmarch.from_gguf(path)
    assert math.isclose(back.config.norm_eps, model.config.norm_eps, rel_tol=1e-6)  # GGUF's float32
    assert back.config == dataclasses.replace(model.config, name=back.config.name, norm_eps=back.config.norm_eps)
    torch.manual_seed(1)
    src, tgt = torch.randint(3, 96, (2, 13)), torch.randint(3, 96, (2, 7))
    with torch.no_grad():
        assert (back(src, tgt).logits - model(src, tgt).logits).abs().max() <= 1e-4
    # measured: 3.1e-4 to 4.3e-4 of the largest |logit| (about the same with llama.cpp's KV cache in F32)
    assert_llama_cpp_decodes_alike(path, model, src[1].tolist(), scale)


@pytest.mark.parametrize("kind", ["q8_0", "q4_0"])
def test_llama_cpp_decodes_quantized_t5_file_as_llmarch_reads_it(kind, tmp_path, t5_tokenizer):
    """Q8_0 / Q4_0 (norms, the bias tables and rows shorter than a block stay float): llama.cpp's greedy answer is
    llmarch's on the same file, read dequantized, but at near-ties (measured: the same 8 tokens, logits within
    1.2e-2 and 1.5e-2 of the largest |logit|: llama.cpp quantizes the activations to Q8 for these products)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    path = tmp_path / f"{kind}.gguf"
    to_gguf(untied(tmp_path), path, kind, BPETokenizer(t5_tokenizer._tokenizer, eos_id=1))
    model = llmarch.from_gguf(path)
    torch.manual_seed(1)
    source = torch.randint(3, 96, (13,)).tolist()
    seq, theirs = llama_cpp_seq2seq(path, source, 8)
    with torch.no_grad():
        ours = llmarch.generate(model, torch.tensor([source]), max_new_tokens=8, eos_id=-1)[0].tolist()
        logits = model(torch.tensor([source]), torch.tensor([seq[:-1]])).logits[0].numpy()
    tol = 5e-2 * np.abs(logits).max()
    assert np.abs(theirs - logits).max() <= tol
    split = next((i for i, (a, b) in enumerate(zip(ours, seq)) if a != b), len(seq))
    if split < len(seq):
        top2 = np.sort(logits[split - 1])[-2:]
        assert top2[1] - top2[0] <= 2 * tol, (split, top2)


def test_converter_style_file_reads_as_transformers(tmp_path):
    """A file as T5Model writes one, by hand from the transformers state dict and the `gguf` package's name map
    (its keys only: no head_count_kv or vocab_size; an older checkpoint's unused cross-attention bias table),
    gives transformers' logits."""
    torch.manual_seed(0)
    conf = transformers.T5Config(vocab_size=96, **SMALL, num_layers=2, feed_forward_proj="relu")
    hf = transformers.T5ForConditionalGeneration(conf).eval()
    w = gguf.GGUFWriter(str(tmp_path / "t5.gguf"), "t5")
    for key, value in dict(context_length=512, embedding_length=64, feed_forward_length=96, block_count=2,
                           decoder_block_count=2, head_count=4, key_length=16, value_length=16,
                           layer_norm_eps=1e-6, relative_attn_buckets_count=32, layer_norm_rms_eps=1e-6,
                           decoder_start_token_id=0).items():
        getattr(w, f"add_{key}")(value)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5, 2)
    state = {k: v for k, v in hf.state_dict().items() if k not in ("lm_head.weight", "encoder.embed_tokens.weight",
                                                                   "decoder.embed_tokens.weight")}
    state["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.randn(32, 4)
    for name, t in state.items():
        w.add_tensor(names.get_name(name, try_suffixes=(".weight",)), t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = llmarch.from_gguf(tmp_path / "t5.gguf")
    src, tgt = torch.randint(3, 96, (2, 11)), torch.randint(3, 96, (2, 5))
    with torch.no_grad():
        want = hf(input_ids=src, decoder_input_ids=tgt).logits
        assert (ours(src, tgt).logits - want).abs().max() <= 1e-4


def test_unigram_vocabulary_tokenizes_as_transformers_and_llama_cpp(tmp_path, t5_tokenizer):
    path = tmp_path / "t5.gguf"
    to_gguf(from_transformers(tmp_path, gated=True, num_layers=1), path, "f32",
            BPETokenizer(t5_tokenizer._tokenizer, eos_id=1))
    fields = gguf.GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.model"].contents() == "t5" and fields["tokenizer.ggml.add_space_prefix"].contents()
    assert bytes(fields["tokenizer.ggml.precompiled_charsmap"].contents()) == charsmap({"\t": " ", "\n": " "})
    tok = checkpoint_tokenizer(path)
    for text in SENTENCES:
        assert tok.encode(text) == t5_tokenizer(text).input_ids, text
    assert tok.decode(tok.encode(TEXTS[0])) == TEXTS[0]
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in SENTENCES + ["xyz\u00a0qq  ", "  "]:  # a no-break space: not a space to llama.cpp or the charsmap
        assert vocab.tokenize(text.encode(), add_bos=True, special=True) == tok.encode(text), text


def test_convert_and_generate_cli_on_t5_gguf_answer_as_on_its_hf_checkpoint(tmp_path, t5_tokenizer, capsys):
    """`convert --to-gguf` of the Hugging Face directory, then of the GGUF file to Q8_0 (its vocabulary written
    again from the file's); `generate` answers alike on the three (the Q8_0 file on the int8 kernel)."""
    from llmarch.cli import main

    from_transformers(tmp_path, gated=True, vocab_size=len(t5_tokenizer), num_layers=1)
    t5_tokenizer.save_pretrained(tmp_path / "hf")
    for src, kind, out in (("hf", "f32", "t5.gguf"), ("t5.gguf", "q8_0", "q8.gguf")):
        assert main(["convert", "--to-gguf", str(tmp_path / src), "--gguf-type", kind, "--out",
                     str(tmp_path / out)]) == 0
    capsys.readouterr()
    answers = []
    for checkpoint in ("hf", "t5.gguf", "q8.gguf"):
        assert main(["generate", "--checkpoint", str(tmp_path / checkpoint), "--prompt", TEXTS[1],
                     "--temperature", "0", "--max-new-tokens", "6", "--no-stream"]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1] == answers[2] and answers[0].strip()
    assert checkpoint_tokenizer(tmp_path / "q8.gguf").encode(SENTENCES[1]) == t5_tokenizer(SENTENCES[1]).input_ids


@pytest.mark.parametrize("gated,fields,problem", [
    (True, dict(feed_forward_proj="gated-silu"), "gated-silu"),  # llama.cpp's gated t5 FFN is GELU
    (False, dict(feed_forward_proj="gelu"), "'gelu'"),  # and its plain one ReLU
    (False, dict(relative_attention_max_distance=64), "relative_max_distance=64"),  # llama.cpp's is 128
    (False, dict(num_decoder_layers=3), "deeper than its encoder"),  # llama.cpp 0.3.36 fails to load it
    (True, dict(tie_word_embeddings=None), "head_scale=True"),  # a tied gated head read back unscaled
])
def test_to_gguf_refuses_t5_variants_llama_cpp_would_run_otherwise(gated, fields, problem, tmp_path):
    model = from_transformers(tmp_path, gated=gated, num_layers=2, **fields)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


def test_unigram_vocabulary_without_space_prefix_or_merging_tokenizes_as_llama_cpp(tmp_path, t5_tokenizer):
    """add_space_prefix and remove_extra_whitespaces false (a Metaspace that never prepends, no WhitespaceSplit):
    spaces kept one ▁ each, at the ends too."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    tk = tokenizers.Tokenizer.from_str(t5_tokenizer._tokenizer.to_str())
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(prepend_scheme="never")
    path = tmp_path / "t5.gguf"
    to_gguf(from_transformers(tmp_path, gated=True, num_layers=1), path, "f32", BPETokenizer(tk, eos_id=1))
    fields = gguf.GGUFReader(str(path)).fields
    assert not fields["tokenizer.ggml.add_space_prefix"].contents()
    assert not fields["tokenizer.ggml.remove_extra_whitespaces"].contents()
    tok = checkpoint_tokenizer(path)
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in SENTENCES:
        assert vocab.tokenize(text.encode(), add_bos=True, special=True) == tok.encode(text), text
    assert "".join(map(tok.tk.id_to_token, tok.encode(" the  dog "))) == "▁the▁▁dog▁</s>"


def assert_llama_cpp_decodes_alike(path, model, source: list[int], scale: float = 1.0) -> None:
    """llama.cpp decodes the seq2seq file at `path` from `source` greedily to llmarch's 8 tokens, its logits (over
    `scale`, what its head multiplies them by) within 2e-3 of the largest |logit| of llmarch's."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    seq, theirs = llama_cpp_seq2seq(path, source, 8)
    with torch.no_grad():
        ours = llmarch.generate(model, torch.tensor([source]), max_new_tokens=8, eos_id=-1)[0].tolist()
        logits = model(torch.tensor([source]), torch.tensor([seq[:-1]])).logits[0].numpy()
    assert ours == seq
    assert np.abs(theirs / scale - logits).max() <= 2e-3 * np.abs(logits).max(), np.abs(theirs - logits).max()
