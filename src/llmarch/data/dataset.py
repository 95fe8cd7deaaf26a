"""Tokenized data: documents -> token ids (EOS between documents) -> train/val arrays, cached on disk as
memory-mapped .npy files keyed by the corpus' and tokenizer's hashes. The split is deterministic: with
20 or more documents, a document goes to validation when crc32(name) falls in the validation fraction;
with fewer, the last fraction of the token stream is validation."""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import LlmarchError, warn
from .batching import IGNORE
from ..progress import Bar
from ..rundir import atomic_directory, write_text_atomic
from .corpus import Document, read_documents
from .tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer, train_bpe


def cache_dir() -> Path:
    return Path(os.environ.get("LLMARCH_CACHE", Path.home() / ".cache" / "llmarch"))


@contextmanager
def filling(folder: Path):
    """Held while this process fills the cache entry `folder`: another process that wants the same entry at the
    same time (two runs started together, a test suite's workers) waits, then reads what this one wrote, rather
    than computing it again beside it and racing it on the files' names. The lock files are kept apart, in the
    cache's `locks` folder (never removed: removing one races a process about to take it). Where there is no
    fcntl, or the cache cannot be written, no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        locks = cache_dir() / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = open(locks / f"{folder.parent.name}-{folder.name}", "a")
    except OSError:  # a cache this process cannot write (filled beforehand, read-only): read it as it is
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def corpus_hash(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.name.encode())
        h.update(b"\0")
        h.update(d.text.encode())
        h.update(b"\0")
        if d.ids is not None:
            h.update(b"ids:" + ",".join(map(str, d.ids)).encode())
    return h.hexdigest()[:16]


def split_documents(docs: list[Document], val_fraction: float) -> tuple[list[Document], list[Document]]:
    if len(docs) < 20:
        return docs, []  # split by position after tokenizing
    threshold = int(val_fraction * 1000)
    val = [d for d in docs if zlib.crc32(d.name.encode()) % 1000 < threshold]
    train = [d for d in docs if zlib.crc32(d.name.encode()) % 1000 >= threshold]
    if not val or not train:
        return docs, []
    return train, val


ENCODE_CHUNK = 256  # documents per encode_batch call: the progress bar moves between calls


def _encode(docs: list[Document], tok: Tokenizer, bar: Bar | None = None) -> np.ndarray:
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32
    parts = []
    for i in range(0, len(docs), ENCODE_CHUNK):
        chunk = docs[i:i + ENCODE_CHUNK]
        texts = iter(tok.encode_batch([d.text for d in chunk if d.ids is None]))
        for d in chunk:
            if d.ids is not None and max(d.ids) >= tok.vocab_size:
                raise LlmarchError(f"{d.name}: token id {max(d.ids)} is outside the tokenizer's vocabulary of "
                                   f"{tok.vocab_size}: 'ids' records must come from the tokenizer the run uses")
            parts.append(np.asarray(next(texts) if d.ids is None else d.ids, dtype=dtype))
            parts.append(np.asarray([tok.eos_id], dtype=dtype))
        if bar is not None:
            bar.advance(sum(len(d.text) for d in chunk))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _chars(docs: list[Document]) -> int:
    return sum(len(d.text) for d in docs)


def tokenizer_for(docs: list[Document], kind: str, vocab_size: int, mask: bool = False,
                  sentinels: int = 0) -> Tokenizer:
    """The tokenizer a fresh run trains with: bytes, or BPE trained on the training documents (cached);
    with a mask token for masked-LM pretraining, and sentinel tokens for span corruption."""
    if kind == "byte":
        return ByteTokenizer(mask=mask, sentinels=sentinels)
    if kind != "bpe":
        raise LlmarchError(f"unknown tokenizer {kind!r}; choose one of: bpe, byte")
    specials = ("-mask" if mask else "") + (f"-sentinels{sentinels}" if sentinels else "")
    folder = cache_dir() / "tokenizers" / f"{corpus_hash(docs)}-bpe{vocab_size}{specials}"
    with filling(folder):
        if (folder / "tokenizer.json").is_file():
            try:
                return load_tokenizer(folder)
            except LlmarchError as e:  # truncated or corrupt (written by an older version without atomic saves)
                warn(f"the cached tokenizer in {folder} is damaged ({e}); training it again")
        with Bar(_chars(docs), "training the BPE tokenizer (once; cached)", "chars") as bar:
            def texts():
                for d in docs:
                    yield d.text
                    bar.advance(len(d.text))

            tok = train_bpe(texts(), vocab_size, mask=mask, sentinels=sentinels)
        atomic_directory(folder, tok.save)  # a run killed while saving leaves no half-written cache
    return tok


@dataclass
class TokenData:
    train: np.ndarray
    val: np.ndarray

    @classmethod
    def prepare(cls, docs: list[Document], tok: Tokenizer, val_fraction: float = 0.05) -> "TokenData":
        key = f"{corpus_hash(docs)}-{tok.fingerprint()}-v{int(val_fraction * 1000)}"
        folder = cache_dir() / "tokens" / key
        with filling(folder):
            data = cls._fill(folder, docs, tok, val_fraction)
        data.check_vocab(tok.vocab_size)
        return data

    @classmethod
    def _fill(cls, folder: Path, docs: list[Document], tok: Tokenizer, val_fraction: float) -> "TokenData":
        """The cached arrays in folder, written first if they are not there (whole)."""
        data = cls._cached(folder)
        if data is None:
            train_docs, val_docs = split_documents(docs, val_fraction)
            with Bar(_chars(docs), "tokenizing the data (once; cached)", "chars") as bar:
                train, val = _encode(train_docs, tok, bar), _encode(val_docs, tok, bar)
            if not len(val):
                cut = int(len(train) * (1 - val_fraction))
                train, val = train[:cut], train[cut:]
            folder.mkdir(parents=True, exist_ok=True)
            for name, arr in (("train", train), ("val", val)):
                np.save(folder / f".{name}.npy", arr)
                os.replace(folder / f".{name}.npy", folder / f"{name}.npy")
            write_text_atomic(folder / "meta.json", json.dumps({"train": len(train), "val": len(val)}))
            data = cls(np.load(folder / "train.npy", mmap_mode="r"), np.load(folder / "val.npy", mmap_mode="r"))
        return data

    @classmethod
    def _cached(cls, folder: Path) -> "TokenData | None":
        """The cached arrays if they are whole (their lengths as meta.json records them), else None."""
        if not (folder / "meta.json").is_file():
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text())
            data = cls(np.load(folder / "train.npy", mmap_mode="r"), np.load(folder / "val.npy", mmap_mode="r"))
            if [len(data.train), len(data.val)] == [meta["train"], meta["val"]]:
                return data
        except (OSError, ValueError, KeyError, TypeError):
            pass
        warn(f"the cached token arrays in {folder} are damaged; tokenizing again")
        return None

    def check_vocab(self, vocab_size: int) -> None:
        for name, arr in (("train", self.train), ("val", self.val)):
            if len(arr) and int(arr.max()) >= vocab_size:
                raise LlmarchError(f"{name} data holds token id {int(arr.max())} >= vocab_size {vocab_size}")

    def _windows(self, split: str, context: int) -> np.ndarray:
        arr = self.train if split == "train" else self.val
        if len(arr) < context + 1:
            raise LlmarchError(f"{split} split has {len(arr)} tokens, fewer than context_length + 1 = {context + 1}")
        return arr

    def batch(self, split: str, step: int, batch_size: int, context: int, seed: int,
              micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of random windows, a pure function of (seed, step, micro): resuming at a step sees exactly
        the batches an uninterrupted run would, and every process of a multi-process run draws the same
        (global) batch, of which it trains on its own rows."""
        arr = self._windows(split, context)
        rng = np.random.default_rng([seed, step, micro, 0, split == "val"])  # 0 was the rank: kept, the same rows
        starts = rng.integers(0, len(arr) - context, size=batch_size)
        return _stack(arr, starts, context)

    def sequential(self, split: str, batch_size: int, context: int, max_tokens: int | None = None,
                   tail: bool = False):
        """Non-overlapping windows in order (for evaluation), in batches. tail (and no max_tokens cut short of the
        split): the targets after the last whole window too, in one more window that ends at the split's last
        token, its targets already scored IGNORE: each target is scored once, and the tail with a whole context."""
        arr = self._windows(split, context)
        n = (len(arr) - 1) // context
        rest = len(arr) - 1 - n * context  # targets after the last whole window
        if max_tokens is not None and max_tokens < len(arr) - 1:
            n, rest = max(1, min(n, max_tokens // context)), 0
        starts = list(np.arange(n) * context) + ([len(arr) - 1 - context] if tail and rest else [])
        for i in range(0, len(starts), batch_size):
            x, y = _stack(arr, np.asarray(starts[i:i + batch_size]), context)
            if tail and rest and i + batch_size >= len(starts):
                y = y.clone()  # a view of x's tensor
                y[-1, :context - rest] = IGNORE
            yield x, y


def _stack(arr: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = np.stack([np.asarray(arr[s:s + context + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(chunk)
    return t[:, :-1], t[:, 1:]


def load_data(source: str | None, tok: Tokenizer, val_fraction: float = 0.05) -> TokenData:
    return TokenData.prepare(read_documents(source), tok, val_fraction)


__all__ = ["TokenData", "tokenizer_for", "load_data", "BPETokenizer"]
