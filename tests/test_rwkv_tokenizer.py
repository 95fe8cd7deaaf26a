"""The RWKV World tokenizer (data/rwkv_tokenizer.py, GGUF tokenizer.ggml.model "rwkv": interop/gguf_rwkv.py).
A real World vocabulary is not at hand, so a vocabulary of the same structure is built: token 0 `<s>` (control),
the 256 single bytes at 1-256, then multi-byte strings cut from varied text (some ending inside a UTF-8 character)
and strings on which greedy longest match differs from the fewest tokens, all in the converter's escaped spelling;
a tiny random RWKV-7 written with it by to_gguf (padded to its rows with [PAD{i}] as the converter pads). On it:
llama.cpp 0.3.36 (vocab_only, add_bos False, special True) gives our ids on every text, decode gives the text
back, `llmarch generate` on the file continues a prompt with llama.cpp's greedy tokens, and the tokenizer
survives an llmarch checkpoint, `convert --to-gguf` and transformers (save_hf)."""
import itertools
import json
from collections import Counter

import pytest
import torch

import llmarch
from llmarch.cli import main
from llmarch.data.rwkv_tokenizer import CONTROL, NORMAL, RwkvWorldTokenizer, escape, unescape
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.interop.gguf_writer import to_gguf

TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "naïve café, Ünïcödé \u2014 \u201cquotes\u201d and \u2018apostrophes\u2019",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u6211\u4eec\u5728\u8fd9\u91cc\u6d4b\u8bd5\u4e2d\u6587\u5206\u8bcd\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "emoji: \U0001f600\U0001f44d\U0001f3fd\U0001f680 and \U0001f468\u200d\U0001f469\u200d\U0001f467 family",
    "   leading spaces\t\ttabs\n\n\nnewlines\r\n  trailing   ",
    "back\\slash 'single' \"double\" \x00\x07\x7f control \\x41 \\n",
    "abcd abcde xabcdy bcd cdab",
    "<s>special in the middle<s> and [PAD3001] unused",
    "          ",
    "",
]
GREEDY = "QZJXK QZJ JXK"  # greedy QZJ X K, where QZ JXK is fewer: not in the texts the common strings come from
TRAPS = [b"ab", b"QZ", b"QZJ", b"JXK", b"'\"", b"\\x41", b"\n\n", "\u4f60".encode()[:2], b"<s>s"]


def world_vocab() -> list[str]:
    """<s>, the 256 bytes, the traps, then the commonest 2-6 byte substrings of the texts, escaped; last, a
    second spelling of `ab` (`\\x61\\x62`): llama.cpp's trie keeps the later of two tokens with the same bytes."""
    counts = Counter(t[i:i + n] for t in (x.encode() * 3 for x in TEXTS) for n in range(2, 7)
                     for i in range(len(t) - n + 1))
    common = [s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if s not in TRAPS + [b"<s>"]][:2500]
    pieces = [bytes([b]) for b in range(256)] + TRAPS + common
    return ["<s>"] + [escape(p) for p in pieces] + ["\\x61\\x62"]


@pytest.fixture(scope="module")
def rwkv_file(tmp_path_factory):
    tokens = world_vocab()
    nl = tokens.index("\\n\\n")
    tok = RwkvWorldTokenizer(tokens, [CONTROL] + [NORMAL] * (len(tokens) - 1), [0, nl])
    torch.manual_seed(0)
    model = llmarch.build("rwkv7-tiny", vocab_size=3072, d_model=128, n_heads=2, head_dim=64,
                          ffn_hidden=256, n_layers=2, layer_types=["time_mix", "channel_mix"], context_length=64)
    path = tmp_path_factory.mktemp("rwkv") / "world.gguf"
    to_gguf(model, path, "f32", tok)
    return tok, model, path


def test_unescape_reads_the_converters_spelling():
    for piece in [bytes(range(256)), "\u4f60\u597d \U0001f600".encode(), b"it's \"x\"", b"'\"\\"]:
        assert unescape(escape(piece)) == piece
    assert unescape("\\x4A") == b"Q"  # upper-case hex as llama.cpp reads it: 4 * 16 + ('A' - '0')
    assert unescape("\\q\\") == b"q"  # any other escaped character is itself; a last lone backslash is dropped


def test_ids_equal_llama_cpps(rwkv_file):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    tok, _, path = rwkv_file
    ours = checkpoint_tokenizer(path)
    assert isinstance(ours, RwkvWorldTokenizer) and ours.eos_ids == [0, ours.tokens.index("\\n\\n")]
    theirs = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in TEXTS + [GREEDY]:
        ids = ours.encode(text)
        assert theirs.tokenize(text.encode(), add_bos=False, special=True) == ids, text
        assert ours.decode(ids) == text.replace("<s>", "")  # control tokens dropped, as llmarch's tokenizers do
        assert b"".join(ours.token_bytes(i) for i in ids) == text.encode()
        assert theirs.detokenize(ids, special=True) == text.encode()
    assert theirs.tokenize(TEXTS[0].encode(), add_bos=True, special=True) == ours.encode(TEXTS[0])  # no bos
    assert ours.encode("QZJXK") == [ours.tokens.index("QZJ"), ord("X") + 1, ord("K") + 1]
    assert ours.encode("ab") == [tok.vocab_size - 1]  # the later spelling of ab
    half, last = "\u4f60".encode()[:2], "\u4f60".encode()[2]
    assert ours.decode([ours.tokens.index(escape(half))]) == "\ufffd"  # half a character
    assert ours.decode([ours.tokens.index(escape(half)), last + 1]) == "\u4f60"


def test_generate_continues_as_llama_cpp(rwkv_file, capsys):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    tok, _, path = rwkv_file
    prompt = "\u4f60\u597d the quick"
    lc = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False)
    ids = lc.tokenize(prompt.encode(), add_bos=False, special=True)
    new = list(itertools.islice(lc.generate(ids, temp=0.0, top_k=1, reset=True), 6))
    stop = next((k for k, t in enumerate(new) if t in tok.eos_ids), len(new))
    assert main(["generate", "--checkpoint", str(path), "--prompt", prompt, "--max-new-tokens", "6",
                 "--temperature", "0"]) in (0, None)
    read = checkpoint_tokenizer(path)  # with the [PAD{i}] rows a random model may pick
    assert capsys.readouterr().out.strip("\n") == read.decode(ids + new[:stop])
    assert read.encode(prompt) == ids
    with torch.no_grad():
        ours = llmarch.generate(llmarch.from_gguf(path), torch.tensor([ids]), max_new_tokens=6)[0].tolist()
    assert ours[len(ids):] == new, (ours, new)


def test_checkpoint_gguf_and_transformers_round_trips(rwkv_file, tmp_path):
    """An llmarch checkpoint with the tokenizer, `convert --to-gguf` from it and from the .gguf file itself: the
    same vocabulary (the [PAD{i}] rows the first file added kept as they are), and transformers' ids."""
    from transformers import PreTrainedTokenizerFast

    from llmarch.checkpoint import save_model

    tok, model, path = rwkv_file
    save_model(model, tmp_path / "ckpt")
    tok.save(tmp_path / "ckpt")
    back = load_tokenizer(tmp_path / "ckpt")
    assert isinstance(back, RwkvWorldTokenizer) and back.fingerprint() == tok.fingerprint()
    read = checkpoint_tokenizer(path)
    assert read.tokens[:tok.vocab_size] == tok.tokens and read.tokens[-1] == f"[PAD{read.vocab_size - 1}]"
    for src in ("ckpt", path):
        assert main(["convert", "--to-gguf", str(tmp_path / src), "--gguf-type", "f32", "--out",
                     str(tmp_path / "again.gguf")]) in (0, None)
        again = checkpoint_tokenizer(tmp_path / "again.gguf")
        assert (again.tokens, again.types, again.eos_ids) == (read.tokens, read.types, read.eos_ids)
        (tmp_path / "again.gguf").unlink()
    (tmp_path / "hf").mkdir()
    tok.save_hf(tmp_path / "hf")
    hf = PreTrainedTokenizerFast.from_pretrained(tmp_path / "hf")
    for text in TEXTS:
        assert hf(text)["input_ids"] == tok.encode(text), text


def test_chat_template_and_assistant_mask(rwkv_file):
    """The file's chat template (as the converter writes one) renders a conversation; its tokens are the text's,
    and the assistant's mask covers exactly the tokens that start in the assistant's text."""
    from llmarch.data.chat import encode_conversation, encode_text, template_for

    tok, _, _ = rwkv_file
    source = "{% for m in messages %}{{ m.role | capitalize }}: {{ m.content }}\n\n{% endfor %}"
    chat = RwkvWorldTokenizer(tok.tokens, tok.types, tok.eos_ids,
                              {"tokenizer_config.json": json.dumps({"chat_template": source}).encode()})
    messages = [{"role": "user", "content": "\u4f60\u597d the quick"}, {"role": "assistant", "content": "abcde fox"}]
    template = template_for(chat)
    text = template.render(messages)
    ids, mask = encode_conversation(chat, template, messages)
    assert ids == encode_text(chat, text) == chat.encode(text)
    assert chat.decode([i for i, m in zip(ids, mask) if m]) == "Assistant: abcde fox\n\n"


def test_add_bos_is_ignored_and_a_missing_byte_refused(rwkv_file, tmp_path):
    """llama.cpp's tokenize adds no bos to an RWKV prompt even where the file says add_bos_token (its rwkv branch
    reads neither flag): nor does llmarch. A vocabulary without some single byte is refused (llama.cpp would put
    its unknown id, none in a World file, for that byte)."""
    import gguf

    tok, _, _ = rwkv_file
    w = gguf.GGUFWriter(str(tmp_path / "bos.gguf"), "rwkv7")
    w.add_tokenizer_model("rwkv")
    w.add_token_list(tok.tokens)
    w.add_token_types(tok.types)
    w.add_bos_token_id(0)
    w.add_add_bos_token(True)
    for write in (w.write_header_to_file, w.write_kv_data_to_file, w.write_tensors_to_file, w.close):
        write()
    assert checkpoint_tokenizer(tmp_path / "bos.gguf").encode(TEXTS[0]) == tok.encode(TEXTS[0])
    with pytest.raises(LlmarchError, match="every single byte"):
        RwkvWorldTokenizer(["<s>", "a"], [CONTROL, NORMAL], [0])
