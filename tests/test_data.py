import json

import numpy as np
import pytest

from llmarch import LlmarchError
from llmarch.data import ByteTokenizer, TokenData, load_tokenizer, read_documents, train_bpe
from llmarch.data.dataset import split_documents


def test_stdlib_corpus_is_real_and_multi_megabyte():
    docs = read_documents()
    assert sum(len(d.text) for d in docs) > 3_000_000
    assert any(d.name == "json/decoder.py" for d in docs)
    assert not any(d.name.startswith("test/") for d in docs)


def test_sources_file_dir_glob_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("beta")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "gamma"}) + "\n" + json.dumps({"text": "delta"}) + "\n")
    assert [d.text for d in read_documents(str(tmp_path / "a.txt"))] == ["alpha"]
    assert [d.text for d in read_documents(str(tmp_path / "c.jsonl"))] == ["gamma", "delta"]
    assert sorted(d.text for d in read_documents(str(tmp_path))) == ["alpha", "beta", "delta", "gamma"]
    assert [d.text for d in read_documents(str(tmp_path / "**" / "*.txt"))] == ["alpha", "beta"]


def test_bad_sources(tmp_path):
    with pytest.raises(LlmarchError, match="does not exist"):
        read_documents(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(LlmarchError, match="bad.jsonl:2: expected an object with a string field 'text'"):
        read_documents(str(bad))
    bad.write_text("{oops\n")
    with pytest.raises(LlmarchError, match="bad.jsonl:1: not valid JSON"):
        read_documents(str(bad))


def test_tokenizers_round_trip(tmp_path):
    text = "def f(x):\n    return x * 2  # é\n"
    byte = ByteTokenizer()
    assert byte.decode(byte.encode(text)) == text
    bpe = train_bpe([text * 20, "import os\nprint(os.getcwd())\n"], vocab_size=300)
    assert bpe.decode(bpe.encode(text)) == text
    assert len(bpe.encode(text)) < len(text.encode())
    bpe.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(text) == bpe.encode(text) and again.eos_id == bpe.eos_id
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(LlmarchError, match="cannot load"):
        load_tokenizer(tmp_path)


def test_split_is_deterministic_and_cached_as_memmap():
    docs = read_documents()
    train, val = split_documents(docs, 0.05)
    assert split_documents(docs, 0.05) == (train, val)
    assert 0.02 < len(val) / len(docs) < 0.1 and not {d.name for d in train} & {d.name for d in val}
    tok = ByteTokenizer()
    small = docs[:40]
    data = TokenData.prepare(small, tok)
    assert isinstance(data.train, np.memmap)
    again = TokenData.prepare(small, tok)
    assert np.array_equal(data.train, again.train) and np.array_equal(data.val, again.val)
    x, y = data.batch("train", step=3, batch_size=4, context=16, seed=0)
    x2, _ = data.batch("train", step=3, batch_size=4, context=16, seed=0)
    assert x.shape == (4, 16) and (x == x2).all() and (x[:, 1:] == y[:, :-1]).all()


def test_data_vocab_mismatch_is_an_error():
    data = TokenData.prepare(read_documents()[:25], ByteTokenizer())
    with pytest.raises(LlmarchError, match="token id 256 >= vocab_size 200"):
        data.check_vocab(200)


def test_jsonl_token_ids_are_taken_as_they_are(tmp_path, monkeypatch):
    """A record's "ids" skip tokenizing: here ids that the byte tokenizer would never make from any text
    (9 after 200 is not "\\t" after a lone continuation byte: decoding would replace them)."""
    monkeypatch.setenv("LLMARCH_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "ids.jsonl"
    rows = [[200, 9, 201] * 30, [65, 66]]
    src.write_text("".join(json.dumps({"ids": r}) + "\n" for r in rows) + json.dumps({"text": "AB"}) + "\n")
    docs = read_documents(str(src))
    assert [d.ids for d in docs] == [tuple(rows[0]), tuple(rows[1]), None]
    tok = ByteTokenizer()
    data = TokenData.prepare(docs, tok, val_fraction=0.05)
    stream = np.concatenate([data.train, data.val]).tolist()
    assert stream == rows[0] + [tok.eos_id] + rows[1] + [tok.eos_id] + tok.encode("AB") + [tok.eos_id]
    for bad in ([], [1, -2], [1, 2.5], "12"):
        src.write_text(json.dumps({"ids": bad}) + "\n")
        with pytest.raises(LlmarchError, match="ids.jsonl:1: 'ids' must be a non-empty list of token ids"):
            read_documents(str(src))
    for outside in (tok.vocab_size, 70_000):  # past the vocabulary, and past the uint16 stream's range
        src.write_text(json.dumps({"ids": [5, outside]}) + "\n")
        with pytest.raises(LlmarchError, match=f"ids.jsonl:1: token id {outside} is outside the tokenizer's"):
            TokenData.prepare(read_documents(str(src)), tok, val_fraction=0.05)


def test_a_cache_entry_being_filled_is_waited_for_then_read(tmp_path, monkeypatch):
    """While one process fills a cache entry (here this test holds its lock, as a process tokenizing it would),
    another that wants the same entry waits, then reads the entry written rather than writing it again."""
    import threading

    from llmarch.data.dataset import cache_dir, filling

    monkeypatch.setenv("LLMARCH_CACHE", str(tmp_path / "cache"))
    docs, tok = read_documents()[:25], ByteTokenizer()
    first = TokenData.prepare(docs, tok)
    [folder] = (cache_dir() / "tokens").iterdir()
    written = (folder / "train.npy").stat().st_mtime_ns
    got = []
    with filling(folder):
        (folder / "meta.json").unlink()  # as if not yet there: the waiting one would write it again
        waiter = threading.Thread(target=lambda: got.append(TokenData.prepare(docs, tok)))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not got  # waiting for the lock
        (folder / "meta.json").write_text(json.dumps({"train": len(first.train), "val": len(first.val)}))
    waiter.join()
    assert np.array_equal(got[0].train, first.train) and (folder / "train.npy").stat().st_mtime_ns == written


def test_a_cache_without_room_for_locks_is_read_as_it_is(tmp_path, monkeypatch):
    """Where the lock cannot be taken (a cache this process cannot write; here its `locks` is a file), the
    entries already there are read without one, not refused."""
    monkeypatch.setenv("LLMARCH_CACHE", str(tmp_path / "cache"))
    docs, tok = read_documents()[:25], ByteTokenizer()
    first = TokenData.prepare(docs, tok)
    import shutil

    shutil.rmtree(tmp_path / "cache" / "locks")
    (tmp_path / "cache" / "locks").write_text("")
    assert np.array_equal(TokenData.prepare(docs, tok).train, first.train)
