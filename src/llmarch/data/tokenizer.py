"""Tokenizers: byte-level BPE trained with the `tokenizers` library (saved as tokenizer.json, the
Hugging Face format) and a raw byte tokenizer (256 byte values + end-of-text). Both append `eos_id`
between documents. For masked-LM pretraining either can carry a mask token (`mask_id`); for T5 span
corruption, sentinel tokens (`sentinel_ids`, T5's `<extra_id_0>`, `<extra_id_1>`, ...: Raffel et al. 2020,
§3.1.4). Special tokens are dropped by `decode`."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Protocol

from ..errors import LlmarchError

EOS = "<|endoftext|>"
MASK = "<|mask|>"
MASK_NAMES = (MASK, "[MASK]", "<mask>")  # ours, BERT's, RoBERTa's
TOKENIZER_FILE = "tokenizer.json"


def sentinel_name(k: int) -> str:
    return f"<extra_id_{k}>"  # T5's names, so a T5 tokenizer.json's sentinels are found too


class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    mask_id: int | None
    sentinel_ids: list[int]  # sentinel_ids[k] is <extra_id_k>

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def token_text(self, i: int) -> str: ...  # one token as text, for displays
    def save(self, directory: Path) -> None: ...
    def fingerprint(self) -> str: ...


class ByteTokenizer:
    """Token i < 256 is byte i; 256 is end-of-text; with mask=True, 257 is the mask token; the `sentinels`
    sentinel tokens come next. Lossless on any text, no training."""

    eos_id = 256

    def __init__(self, mask: bool = False, sentinels: int = 0):
        if sentinels < 0:
            raise LlmarchError(f"sentinels must be >= 0, got {sentinels}")
        self.mask_id = 257 if mask else None
        first = 258 if mask else 257
        self.sentinel_ids = list(range(first, first + sentinels))
        self.vocab_size = first + sentinels

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_text(self, i: int) -> str:
        if i < 256:
            return chr(i) if i < 128 else "\ufffd"  # a byte past ASCII is part of a multi-byte character
        if i in self.sentinel_ids:
            return sentinel_name(self.sentinel_ids.index(i))
        return {self.eos_id: EOS, self.mask_id: MASK}.get(i, "")

    def save(self, directory: Path) -> None:
        spec = {"llmarch": "byte", **({"mask": True} if self.mask_id is not None else {}),
                **({"sentinels": len(self.sentinel_ids)} if self.sentinel_ids else {})}
        (Path(directory) / TOKENIZER_FILE).write_text(json.dumps(spec) + "\n")

    def fingerprint(self) -> str:
        return ("byte" + ("+mask" if self.mask_id is not None else "")
                + (f"+{len(self.sentinel_ids)}sentinels" if self.sentinel_ids else ""))


class BPETokenizer:
    """Any `tokenizers` tokenizer.json: ours (byte-level BPE) or a Hugging Face checkpoint's."""

    def __init__(self, tokenizer, eos_id: int | None = None):
        self.tk = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        if eos_id is None:
            eos_id = tokenizer.token_to_id(EOS)
        if eos_id is None:
            raise LlmarchError("the tokenizer has no end-of-text token (<|endoftext|>) and no eos_token_id is given")
        self.eos_id = eos_id
        self.mask_id = next((i for i in map(tokenizer.token_to_id, MASK_NAMES) if i is not None), None)
        self.sentinel_ids = []
        while (i := tokenizer.token_to_id(sentinel_name(len(self.sentinel_ids)))) is not None:
            self.sentinel_ids.append(i)

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tk.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tk.decode(list(ids))

    def token_text(self, i: int) -> str:
        """One token's text as it would read in place: a WordPiece continuation keeps its `##`."""
        piece = self.tk.id_to_token(i) or ""
        return piece if piece.startswith("##") else self.tk.decode([i], skip_special_tokens=False)

    def save(self, directory: Path) -> None:
        self.tk.save(str(Path(directory) / TOKENIZER_FILE))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.tk.to_str().encode()).hexdigest()[:16]


def train_bpe(texts: Iterable[str], vocab_size: int, mask: bool = False, sentinels: int = 0) -> BPETokenizer:
    """Byte-level BPE (Sennrich et al. 2016; the GPT-2 byte-level variant) with the special token EOS, the
    mask token too when `mask` (masked-LM pretraining), and `sentinels` sentinel tokens (span corruption)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if sentinels < 0:
        raise LlmarchError(f"sentinels must be >= 0, got {sentinels}")
    if vocab_size < 257 + sentinels + 1:
        raise LlmarchError(f"a byte-level BPE vocabulary needs more than {257 + sentinels} entries, got {vocab_size}")
    specials = [EOS, *([MASK] if mask else []), *map(sentinel_name, range(sentinels))]
    tk = HFTokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(tk)


def _hf_eos_id(directory: Path) -> int | None:
    """eos_token_id of a Hugging Face checkpoint: generation_config.json, else config.json (first if a list)."""
    for name in ("generation_config.json", "config.json"):
        try:
            eos = json.loads((directory / name).read_text()).get("eos_token_id")
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        if isinstance(eos, int):
            return eos
    return None


def load_tokenizer(directory: str | Path) -> Tokenizer:
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise LlmarchError(f"{directory} has no {TOKENIZER_FILE}")
    try:
        text = path.read_text(encoding="utf-8")
        spec = json.loads(text)
        if spec.get("llmarch") == "byte":
            return ByteTokenizer(mask=bool(spec.get("mask")), sentinels=int(spec.get("sentinels", 0)))
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(text), eos_id=_hf_eos_id(Path(directory)))
    except LlmarchError:
        raise
    except Exception as e:  # json or tokenizers parse failure: the file is damaged
        raise LlmarchError(f"cannot load {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None


def check_fits(tok: Tokenizer, vocab_size: int) -> None:
    """A tokenizer may not emit ids the model has no embedding for."""
    if tok.vocab_size > vocab_size:
        raise LlmarchError(f"tokenizer has {tok.vocab_size} tokens but the model's vocab_size is {vocab_size}")
