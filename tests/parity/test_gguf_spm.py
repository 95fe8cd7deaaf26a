"""SentencePiece vocabularies in GGUF files (tokenizer.ggml.model "llama": Llama 2, Mistral, Gemma, Phi-3): a
Llama-2-shaped vocabulary (<unk> <s> </s>, the 256 <0xNN> byte tokens, ▁-spelled pieces scored by merge
order, a control and a user-defined token) trained locally with `tokenizers`, written as llama.cpp's converter
writes one, and rebuilt by checkpoint_tokenizer. Its ids equal llama.cpp's algorithm (llm_tokenizer_spm,
written out below as the reference: best-scoring adjacent pair first, byte fallback, ▁ prefix at the start and
after each special token) on spaces, unseen characters and special tokens, and transformers' own GGUF
tokenizer (a LlamaTokenizer built from the same file) on text where the two agree by design."""
import re

import numpy as np
import pytest

from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer

gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")

TEXTS = ["the quick brown fox jumps", "hello world, this is it", "def main():\n    return 12345\n",
         "héllo wörld ✓ 你好\t!", "tiny vocabulary 😀", "x", ""]
SPECIAL_TEXTS = ["  two  spaces  ", " leading", "<|im_start|>user\nhello<think>x</s>", "<s>the</s> fox"]


def spm_vocab():
    """A Llama-2-shaped vocabulary: tokens, scores (merged pieces by merge order, then characters), types."""
    sp = tokenizers.SentencePieceBPETokenizer(add_prefix_space=True)
    sp.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 20,
                            "hello world, this is a tiny sentencepiece vocabulary " * 20,
                            "def main():\n    return 12345\n" * 10], vocab_size=200, min_frequency=2,
                           show_progress=False)
    vocab = sp.get_vocab()
    pieces = sorted((p for p in vocab if p != "<unk>"), key=vocab.get)  # the trainer's own <unk> is token 0
    pieces = [p for p in pieces if len(p) > 1] + [p for p in pieces if len(p) == 1]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces, "<|im_start|>", "<think>"]
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))] + [0.0, 0.0]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces) + [3, 4]
    return tokens, scores, types


def add_spm_vocab(w, add_space_prefix=None) -> None:
    """The vocabulary's metadata as convert_hf_to_gguf.py's _set_vocab_sentencepiece and gguf.SpecialVocab
    write it."""
    tokens, scores, types = spm_vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if add_space_prefix is not None:
        w.add_add_space_prefix(add_space_prefix)


def write_spm_gguf(path, add_space_prefix=None) -> None:
    """A one-layer LLaMA with the vocabulary."""
    tokens = spm_vocab()[0]
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in dict(block_count=1, context_length=64, embedding_length=32, feed_forward_length=64,
                           head_count=2, head_count_kv=2, rope_freq_base=10000.0, layer_norm_rms_eps=1e-5).items():
        getattr(w, f"add_{key}")(value)
    add_spm_vocab(w, add_space_prefix)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (len(tokens), 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,),
              "blk.0.ffn_norm.weight": (32,), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (32, 32),
              "blk.0.attn_v.weight": (32, 32), "blk.0.attn_output.weight": (32, 32),
              "blk.0.ffn_gate.weight": (64, 32), "blk.0.ffn_up.weight": (64, 32), "blk.0.ffn_down.weight": (32, 64)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32) * 0.1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_spm(text: str, add_space_prefix: bool = True) -> list[int]:
    """llama.cpp's SentencePiece tokenization (llama-vocab.cpp: tokenizer_st_partition, then
    llm_tokenizer_spm per text fragment), written out plainly."""
    tokens, scores, types = spm_vocab()
    ids = {t: i for i, t in enumerate(tokens)}
    specials = [t for t, k in zip(tokens, types) if k in (3, 4)]
    out, prev_special = [1], True
    for part in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
        if part in ids and part in specials:
            out.append(ids[part])
            prev_special = True
            continue
        if not part:
            continue
        symbols = list(((" " if prev_special and add_space_prefix else "") + part).replace(" ", "\u2581"))
        prev_special = False
        while True:  # the best-scoring adjacent pair that is a token, leftmost on ties
            pairs = [(scores[ids[a + b]], -j) for j, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in ids]
            if not pairs:
                break
            j = -max(pairs)[1]
            symbols[j:j + 2] = [symbols[j] + symbols[j + 1]]
        for s in symbols:
            out.extend([ids[s]] if s in ids else [ids[f"<0x{b:02X}>"] for b in s.encode()])
    return out


def test_sentencepiece_gguf_tokenizes_as_llama_cpp(tmp_path):
    write_spm_gguf(tmp_path / "spm.gguf")
    tok = checkpoint_tokenizer(tmp_path / "spm.gguf")
    for text in TEXTS + SPECIAL_TEXTS:
        assert tok.encode(text) == llama_cpp_spm(text), text
    tokens = spm_vocab()[0]
    # <s>, the ▁ prefix, then the unseen character as its UTF-8 bytes' <0xNN> tokens
    assert tok.encode("✓") == [1, tokens.index("\u2581"), *(3 + b for b in "✓".encode())]
    assert tok.encode("<|im_start|>") == [1, len(tokens) - 2]  # a control token matched whole
    for text in TEXTS + ["  two  spaces  ", " leading"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_id == 2 and b'"bos_token": "<s>"' in tok.side_files["tokenizer_config.json"]


def test_gemma_style_no_space_prefix(tmp_path):
    """Gemma's converter writes add_space_prefix false: no ▁ before the first word."""
    write_spm_gguf(tmp_path / "spm.gguf", add_space_prefix=False)
    tok = checkpoint_tokenizer(tmp_path / "spm.gguf")
    for text in TEXTS + SPECIAL_TEXTS:
        assert tok.encode(text) == llama_cpp_spm(text, add_space_prefix=False), text
        assert tok.decode(tok.encode(text)) == text.replace("<|im_start|>", "").replace("</s>", "").replace("<s>", "")


def test_sentencepiece_gguf_agrees_with_transformers(tmp_path):
    """transformers' GGUF tokenizer (LlamaTokenizer from the same file) agrees wherever its Metaspace does not
    differ from llama.cpp by design (a text that starts with a space, text after a special token)."""
    transformers = pytest.importorskip("transformers")
    write_spm_gguf(tmp_path / "spm.gguf")
    ours = checkpoint_tokenizer(tmp_path / "spm.gguf")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="spm.gguf")
    for text in TEXTS:
        assert ours.encode(text) == theirs.encode(text), text
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text), skip_special_tokens=True)


@pytest.mark.parametrize("prefix", [None, False])
def test_sentencepiece_tokenizer_written_back(prefix, tmp_path):
    """GGUF out of a model read with a SentencePiece vocabulary: the same tokens and types, scores in the same
    merge order, add_space_prefix and add_bos, so the file tokenizes as before."""
    import llmarch
    from llmarch.interop.gguf_writer import to_gguf

    write_spm_gguf(tmp_path / "spm.gguf", add_space_prefix=prefix)
    tok = checkpoint_tokenizer(tmp_path / "spm.gguf")
    to_gguf(llmarch.from_gguf(tmp_path / "spm.gguf"), tmp_path / "out.gguf", "f32", tok)
    back = checkpoint_tokenizer(tmp_path / "out.gguf")
    for text in TEXTS + SPECIAL_TEXTS:
        assert back.encode(text) == tok.encode(text) == llama_cpp_spm(text, prefix is None), text
    fields = gguf.GGUFReader(str(tmp_path / "out.gguf")).fields
    tokens, scores, types = spm_vocab()
    assert fields["tokenizer.ggml.token_type"].contents() == types
    assert fields["tokenizer.ggml.tokens"].contents() == tokens
    assert fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert fields["tokenizer.ggml.add_space_prefix"].contents() is (prefix is None)
    merged = [i for i, t in enumerate(types) if t == 1 and len(tokens[i]) > 1]  # ranked as the original ranks them
    written = fields["tokenizer.ggml.scores"].contents()
    assert sorted(merged, key=lambda i: -written[i]) == sorted(merged, key=lambda i: -scores[i])
