"""Text output paths: streamed text (generate/text.py) and served text (serve/outputs.py) equal the decoded row
for SentencePiece, byte-level BPE and byte tokenizers; stop strings hold back from whole characters; logprobs'
bytes are the token's own; an unfinished last character is flushed at the end."""
import importlib

import pytest
import torch

from llmarch.data.tokenizer import BPETokenizer, ByteTokenizer, train_bpe
from llmarch.generate import generate_text
from llmarch.generate.text import text_pieces
from llmarch.serve.outputs import ChoiceText, _entry

from conftest import tiny

text_module = importlib.import_module("llmarch.generate.text")


def _spm(metaspace: bool = False) -> BPETokenizer:
    """A SentencePiece-style BPE with byte fallback, as interop/gguf_tokenizer.py builds llama.cpp's (Prepend ▁,
    Replace, ByteFallback, Strip) or, metaspace, as a Hugging Face Llama tokenizer.json may (Metaspace)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), "▁", "H", "e", "l", "o", "w", "r",
              "d", "a", "n", "m", "x", "▁world", "▁and", "▁more", "Hello", "▁Hello", "▁x"]
    tk = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[], unk_token="<unk>",
                              byte_fallback=True, ignore_merges=False))
    if metaspace:
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tk.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                    prepend_scheme="first")])
    else:
        tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                        decoders.Strip(" ", 1, 0)])
    tk.add_special_tokens(["<s>", "</s>"])
    return BPETokenizer(tk, eos_id=2)


def _gpt2() -> BPETokenizer:
    return train_bpe(["hello world and more, 日本語 x\n" * 20], vocab_size=300)


CASES = [("Hello", " world and more"), ("x", " 日本語 and more"), ("Hello", " 👍🏽 x")]
TOKENIZERS = {"spm": _spm, "spm_metaspace": lambda: _spm(metaspace=True), "gpt2": _gpt2, "byte": ByteTokenizer}


def _continuation(tok, prompt: str, rest: str) -> tuple[list[int], list[int]]:
    """Prompt ids and new ids whose joint decoding is prompt + rest (SentencePiece: rest's own encoding starts
    with ▁, the space it stands for)."""
    p = tok.encode(prompt)
    new = [i for i in tok.encode(rest.removeprefix(" ") if "spm" in _kind(tok) else rest) if i != 1]
    return p, new


def _kind(tok) -> str:
    return "spm" if isinstance(tok, BPETokenizer) and tok.tk.token_to_id("<0xE6>") is not None else "other"


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("prompt,rest", CASES)
def test_streamed_and_served_text_continue_the_prompt_text(name, prompt, rest):
    tok = TOKENIZERS[name]()
    p, new = _continuation(tok, prompt, rest)
    whole = tok.decode(p + new)
    assert whole == prompt + rest  # the cases' tokens are a continuation of the prompt with a space
    pieces: list[str] = []
    stream = text_pieces(tok, pieces.append, p)
    for i in new:
        stream(torch.tensor([i]))
    stream.end()
    assert tok.decode(p) + "".join(pieces) == whole
    out = ChoiceText(tok, [], context=p)
    served = "".join(out.add(i) for i in new) + out.end("length")
    assert tok.decode(p) + served == whole and out.text == served
    # a chat reply (no context): the generated ids' own decoding, as transformers' decode gives it
    chat = ChoiceText(tok, [])
    assert "".join(chat.add(i) for i in new) + chat.end("length") == tok.decode(new)


def test_generate_text_streams_what_no_stream_prints(monkeypatch):
    """`llmarch generate` prints decode(encode(prompt)) and then the pieces; --no-stream the decoded row."""
    tok = _spm()
    p, new = _continuation(tok, "Hello", " world and more")

    def fake_generate(model, encoded, *args, on_tokens=None, **kw):
        for i in new:
            if on_tokens is not None:
                on_tokens(torch.tensor([i]))
        return [encoded[0] + new]

    monkeypatch.setattr(text_module, "generate", fake_generate)
    model = tiny(vocab_size=300)
    pieces: list[str] = []
    full = generate_text(model, tok, ["Hello"], len(new), stream=pieces.append)[0]
    assert full == "Hello world and more"
    assert tok.decode(tok.encode("Hello")) + "".join(pieces) == full


def test_a_stop_string_does_not_leak_while_a_character_is_unfinished():
    tok = ByteTokenizer()
    out = ChoiceText(tok, ["本語"])
    shown = ""
    for i in tok.encode("x 日本語 y"):
        shown += out.add(i)
        assert "x 日".startswith(shown), shown
    shown += out.end("length")
    assert (shown, out.text, out.finish) == ("x 日", "x 日", "stop")


def test_logprob_bytes_are_the_tokens_own_bytes():
    gpt2 = BPETokenizer(ByteTokenizer().hf_tokenizer(), eos_id=256)  # byte-level BPE, one token a byte
    assert _entry(gpt2, 230, -1.0) == {"token": "\ufffd", "logprob": -1.0, "bytes": [230]}  # not U+FFFD's bytes
    byte = ByteTokenizer()
    assert [byte.token_bytes(i) for i in byte.encode("x日")] == [b"x", b"\xe6", b"\x97", b"\xa5"]
    assert byte.token_bytes(byte.eos_id) == b"<|endoftext|>"
    assert [gpt2.token_bytes(i) for i in gpt2.encode(" 日")] == [b" ", b"\xe6", b"\x97", b"\xa5"]
    trained = _gpt2()
    ids = trained.encode("hello 日本語")
    assert b"".join(trained.token_bytes(i) for i in ids) == "hello 日本語".encode()
    for spm in (_spm(), _spm(metaspace=True)):
        ids = spm.encode("x 日 world")
        got = [spm.token_bytes(i) for i in ids]  # ▁ a space (the first one's too), <0xE6> byte 0xE6
        assert b"".join(got) == " x 日 world".encode() and [b for b in got if b[0] >= 0x80] == [b"\xe6", b"\x97",
                                                                                                 b"\xa5"]
        assert spm.token_bytes(2) == b"</s>"
        assert _entry(spm, spm.tk.token_to_id("▁world"), 0.0)["token"] == " world"  # not "world"
    spm = _spm()
    out = ChoiceText(spm, [], context=spm.encode("Hello"))
    for i in spm.encode("x and more"):
        out.add(i, -1.0, [(i, -1.0)])
    out.end("length")
    logprobs = out.completion_logprobs()  # the tokens and their offsets spell the text
    assert "".join(logprobs["tokens"]) == out.text == " x and more"
    assert logprobs["text_offset"][-1] + len(logprobs["tokens"][-1]) == len(out.text)


def test_an_unfinished_last_character_is_flushed_at_the_end(monkeypatch):
    """Generation stopped inside a multi-byte character: the stream ends with its U+FFFD, as --no-stream prints."""
    tok = ByteTokenizer()
    ids = tok.encode("ok x 日")[:-2]  # stopped inside 日's bytes

    def fake_generate(model, encoded, *args, on_tokens=None, **kw):
        for i in ids[2:]:
            on_tokens(torch.tensor([i]))
        return [encoded[0] + ids[2:]]

    monkeypatch.setattr(text_module, "generate", fake_generate)
    pieces: list[str] = []
    full = generate_text(tiny(vocab_size=257), tok, ["ok"], 4, stream=pieces.append)[0]
    assert "ok" + "".join(pieces) == full == "ok x \ufffd"
    pieces.clear()
    stream = text_pieces(tok, pieces.append)
    for i in ids:
        stream(torch.tensor([i]))
    assert "".join(pieces) == "ok x "  # held back until the end
    stream.end()
    assert "".join(pieces) == tok.decode(ids) == "ok x \ufffd"


def test_served_completion_text_continues_the_prompt():
    """Over HTTP: a SentencePiece model's completion of "Hello" whose tokens are ▁world ... reads " world ...",
    echoed or not (it was "world world world")."""
    pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    from test_serve import Running

    tok = _spm()
    world = tok.tk.token_to_id("▁world")
    model = tiny(vocab_size=300)
    model.lm_head.register_forward_hook(lambda m, args, out: out + 100.0 * (torch.arange(out.shape[-1]) == world))
    running = Running(model=model, tok=tok)
    try:
        r = running.client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
        assert r.choices[0].text == " world world world"
        r = running.client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0, echo=True)
        assert r.choices[0].text == "Hello world world world"
        stream = running.client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0,
                                                   stream=True)
        assert "".join(c.choices[0].text for c in stream) == " world world world"
    finally:
        running.close()
