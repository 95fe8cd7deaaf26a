"""Tokenizers: byte-level BPE trained with the `tokenizers` library (saved as tokenizer.json, the
Hugging Face format) and a raw byte tokenizer (256 byte values + end-of-text). Both append `eos_id`
between documents. For masked-LM pretraining either can carry a mask token (`mask_id`); for T5 span
corruption, sentinel tokens (`sentinel_ids`, T5's `<extra_id_0>`, `<extra_id_1>`, ...: Raffel et al. 2020,
§3.1.4). Special tokens are dropped by `decode`.

A tokenizer read from a Hugging Face checkpoint keeps the files that come with its tokenizer.json
(tokenizer_config.json with the chat template, generation_config.json, ...) verbatim, and the special-token
ids of its config.json, and writes them beside tokenizer.json wherever it is saved, so that a round trip
HF -> llmarch -> HF (interop/hf.py's to_hf) gives them back. `save_hf` writes the tokenizer in the form
`transformers` reads, the byte tokenizer included. The RWKV World tokenizer (greedy longest match over byte
strings) is rwkv_tokenizer.py's, a tokenizer.json of kind "rwkv_world" that load_tokenizer reads too."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Iterable, Protocol

from ..errors import LlmarchError
from .byte_level import byte_chars as _byte_chars  # rwkv_tokenizer.py needs it too, without this module

EOS = "<|endoftext|>"
MASK = "<|mask|>"
MASK_NAMES = (MASK, "[MASK]", "<mask>")  # ours, BERT's, RoBERTa's
TOKENIZER_FILE = "tokenizer.json"
# the files a Hugging Face tokenizer.json comes with, kept verbatim (transformers 5 writes the chat template to
# chat_template.jinja, earlier versions into tokenizer_config.json; sentence-transformers' prompts, embed.py; a
# vision-language checkpoint's image processor, vision/preprocess.py)
HF_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                 "chat_template.json", "generation_config.json", "config_sentence_transformers.json",
                 "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
HF_TOKEN_IDS = "hf_token_ids.json"  # in an llmarch checkpoint: the special-token ids of the HF config.json
ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def sentinel_name(k: int) -> str:
    return f"<extra_id_{k}>"  # T5's names, so a T5 tokenizer.json's sentinels are found too


class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    eos_ids: list[int]  # every id that ends a generation, eos_id first (a chat model may have several)
    mask_id: int | None
    sentinel_ids: list[int]  # sentinel_ids[k] is <extra_id_k>

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def token_text(self, i: int) -> str: ...  # one token as text, for displays
    def token_bytes(self, i: int) -> bytes: ...  # one token's own bytes (logprobs' `bytes`)
    def save(self, directory: Path) -> None: ...
    def save_hf(self, directory: Path) -> None: ...  # the files transformers' AutoTokenizer reads
    def hf_token_ids(self) -> dict: ...  # bos/eos/pad_token_id for a Hugging Face config.json
    def fingerprint(self) -> str: ...


class ByteTokenizer:
    """Token i < 256 is byte i; 256 is end-of-text; with mask=True, 257 is the mask token; the `sentinels`
    sentinel tokens come next. Lossless on any text, no training."""

    eos_id = 256
    eos_ids = [256]

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

    def token_bytes(self, i: int) -> bytes:
        return bytes([i]) if i < 256 else self.token_text(i).encode()

    def save(self, directory: Path) -> None:
        spec = {"llmarch": "byte", **({"mask": True} if self.mask_id is not None else {}),
                **({"sentinels": len(self.sentinel_ids)} if self.sentinel_ids else {})}
        (Path(directory) / TOKENIZER_FILE).write_text(json.dumps(spec) + "\n")

    def special_names(self) -> list[str]:
        mask = [MASK] if self.mask_id is not None else []
        return [EOS, *mask, *map(sentinel_name, range(len(self.sentinel_ids)))]

    def save_hf(self, directory: Path) -> None:
        """The same ids as a `tokenizers` tokenizer.json: byte-level BPE without merges, whose 256 base
        tokens are the bytes in GPT-2's byte-to-character mapping, token i byte i; the special tokens follow
        in our order (256 end-of-text, then mask and sentinels). One difference: transformers splits the
        special tokens' text out of its input (\"<|endoftext|>\" in a prompt is id 256), we encode it as bytes."""
        self.hf_tokenizer().save(str(Path(directory) / TOKENIZER_FILE))
        _write_json(Path(directory) / "tokenizer_config.json", _hf_tokenizer_config(self))

    def hf_tokenizer(self):
        """The `tokenizers` Tokenizer of save_hf (also what GGUF out writes, interop/gguf_tokenizer.py)."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        chars = _byte_chars()
        tk = HFTokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens(self.special_names())
        return tk

    def hf_token_ids(self) -> dict:
        return {"eos_token_id": self.eos_id}

    def fingerprint(self) -> str:
        return ("byte" + ("+mask" if self.mask_id is not None else "")
                + (f"+{len(self.sentinel_ids)}sentinels" if self.sentinel_ids else ""))


class BPETokenizer:
    """Any `tokenizers` tokenizer.json: ours (byte-level BPE) or a Hugging Face checkpoint's."""

    def __init__(self, tokenizer, eos_id: int | list[int] | None = None, side_files: dict[str, bytes] | None = None):
        """eos_id: the id (or ids) that end a generation, default <|endoftext|>'s. side_files: name -> content
        of the Hugging Face files (HF_SIDE_FILES, HF_TOKEN_IDS) that travel with this tokenizer."""
        self.tk = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        if eos_id is None:
            eos_id = tokenizer.token_to_id(EOS)
        if eos_id is None or eos_id == []:
            raise LlmarchError("the tokenizer has no end-of-text token (<|endoftext|>) and no eos_token_id is given")
        self.eos_ids = list(eos_id) if isinstance(eos_id, list) else [eos_id]
        self.eos_id = self.eos_ids[0]
        self.side_files = dict(side_files or {})
        self.mask_id = next((i for i in map(tokenizer.token_to_id, MASK_NAMES) if i is not None), None)
        self.sentinel_ids = []
        while (i := tokenizer.token_to_id(sentinel_name(len(self.sentinel_ids)))) is not None:
            self.sentinel_ids.append(i)

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text).ids

    def encode_offsets(self, text: str) -> list[tuple[int, int]]:
        """(id, the character of `text` it starts at) per token, nothing added around the text (no BOS/EOS): how
        transformers tokenizes a rendered chat (chat.py)."""
        encoding = self.tk.encode(text, add_special_tokens=False)
        return [(i, start) for i, (start, _) in zip(encoding.ids, encoding.offsets)]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tk.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tk.decode(list(ids))

    def token_text(self, i: int) -> str:
        """One token's text as it would read in place: a WordPiece continuation keeps its `##`."""
        piece = self.tk.id_to_token(i) or ""
        return piece if piece.startswith("##") else self.tk.decode([i], skip_special_tokens=False)

    def token_bytes(self, i: int) -> bytes:
        """One token's own bytes, where its text may show U+FFFD for part of a multi-byte character: a byte-level
        BPE piece through GPT-2's character -> byte map; a SentencePiece byte token <0xNN> is byte NN, ▁ a space
        (the decoder's Strip of a first token's space left out: a token's bytes, not its place); an added
        (special) token and any other tokenizer's (WordPiece): its text's bytes."""
        piece = self.tk.id_to_token(i) or ""
        if i in self._added:
            return self.token_text(i).encode()
        kind = self._decoder_kind
        if kind == "byte_level":
            inverse = _char_bytes()
            if all(c in inverse for c in piece):
                return bytes(inverse[c] for c in piece)
        if kind == "sentencepiece":
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                return bytes([int(piece[3:5], 16)])
            return piece.replace("\u2581", " ").encode()
        return self.token_text(i).encode()

    @functools.cached_property
    def _added(self) -> set[int]:
        return set(self.tk.get_added_tokens_decoder())

    @functools.cached_property
    def _decoder_kind(self) -> str | None:
        """byte_level (GPT-2's ByteLevel decoder), sentencepiece (▁ for spaces: Metaspace or Replace) or None."""
        decoder = json.dumps(json.loads(self.tk.to_str()).get("decoder"))
        if '"ByteLevel"' in decoder:
            return "byte_level"
        return "sentencepiece" if '"Metaspace"' in decoder or "\\u2581" in decoder else None

    def save(self, directory: Path, hf: bool = False) -> None:
        """tokenizer.json and the side files; hf: without HF_TOKEN_IDS, whose ids go in config.json."""
        self.tk.save(str(Path(directory) / TOKENIZER_FILE))
        for name, content in self.side_files.items():
            if not (hf and name == HF_TOKEN_IDS):
                (Path(directory) / name).write_bytes(content)

    def special_names(self) -> list[str]:
        ids = [self.eos_id, *([self.mask_id] if self.mask_id is not None else []), *self.sentinel_ids]
        return [self.tk.id_to_token(i) for i in ids]

    def save_hf(self, directory: Path) -> None:
        """tokenizer.json and the side files as they came, and a tokenizer_config.json naming our special
        tokens where none came."""
        self.save(directory, hf=True)
        if "tokenizer_config.json" not in self.side_files:
            _write_json(Path(directory) / "tokenizer_config.json", _hf_tokenizer_config(self))

    def hf_token_ids(self) -> dict:
        """The ids the source config.json held, or the end-of-text id(s) this tokenizer stops at."""
        if HF_TOKEN_IDS in self.side_files:
            return json.loads(self.side_files[HF_TOKEN_IDS])
        return {"eos_token_id": self.eos_ids if len(self.eos_ids) > 1 else self.eos_id}

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


@functools.cache
def _char_bytes() -> dict[str, int]:
    return {c: b for b, c in _byte_chars().items()}


def ends_in_eos(ids: list[int], eos_id: int) -> list[int]:
    """ids ending in one eos: a tokenizer whose post-processor appends </s> itself (T5's, BART's tokenizer.json)
    has ended them already, and a second one is a source the model never saw in training (transformers: one)."""
    return list(ids) if ids and ids[-1] == eos_id else [*ids, eos_id]


def _hf_tokenizer_config(tok) -> dict:
    """tokenizer_config.json for a tokenizer llmarch made: its special tokens by name, text decoded as is."""
    names = tok.special_names()
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": names[0],
              "clean_up_tokenization_spaces": False}
    if tok.mask_id is not None:
        config["mask_token"] = names[1]
    if tok.sentinel_ids:
        config["additional_special_tokens"] = names[-len(tok.sentinel_ids):]
    return config


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _read_json(path: Path) -> dict:
    """A JSON object from a file that may be missing (empty then); a damaged one is a one-line error."""
    try:
        obj = json.loads(path.read_text())
    except OSError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LlmarchError(f"cannot parse {path}: {e}") from None
    if not isinstance(obj, dict):
        raise LlmarchError(f"{path} holds a JSON {type(obj).__name__}, not an object")
    return obj


def _eos_ids(value, source: Path) -> list[int] | None:
    """An eos_token_id value (an int or a list of ints; transformers allows both) as a list."""
    if value is None:
        return None
    ids = value if isinstance(value, list) else [value]
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise LlmarchError(f"{source}: eos_token_id must be a token id or a list of them, got {value!r}")
    return ids


def _side_files(directory: Path) -> dict[str, bytes]:
    """The HF files beside tokenizer.json; from a Hugging Face directory, its config.json's special-token ids too."""
    files = {name: (directory / name).read_bytes() for name in (*HF_SIDE_FILES, HF_TOKEN_IDS)
             if (directory / name).is_file()}
    hf_config = _read_json(directory / "config.json")
    if "model_type" in hf_config and HF_TOKEN_IDS not in files:
        ids = {k: hf_config[k] for k in ID_FIELDS if k in hf_config}
        if ids:
            files[HF_TOKEN_IDS] = (json.dumps(ids, indent=2) + "\n").encode()
    return files


def _hf_eos_ids(directory: Path, side_files: dict[str, bytes]) -> list[int] | None:
    """The ids that end a generation: generation_config.json's eos_token_id (what transformers' generate
    stops at), else the HF config.json's."""
    generation = directory / "generation_config.json"
    ids = _eos_ids(_read_json(generation).get("eos_token_id"), generation)
    if ids is None and HF_TOKEN_IDS in side_files:
        ids = _eos_ids(json.loads(side_files[HF_TOKEN_IDS]).get("eos_token_id"), directory / "config.json")
    return ids


def load_tokenizer(directory: str | Path) -> Tokenizer:
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise LlmarchError(f"{directory} has no {TOKENIZER_FILE}")
    try:
        text = path.read_text(encoding="utf-8")
        spec = json.loads(text)
        if spec.get("llmarch") == "byte":
            return ByteTokenizer(mask=bool(spec.get("mask")), sentinels=int(spec.get("sentinels", 0)))
        if spec.get("llmarch") == "rwkv_world":
            from .rwkv_tokenizer import RwkvWorldTokenizer

            return RwkvWorldTokenizer.from_spec(spec, _side_files(Path(directory)))
        from tokenizers import Tokenizer as HFTokenizer

        tk = HFTokenizer.from_str(text)
    except LlmarchError:
        raise
    except Exception as e:  # json or tokenizers parse failure: the file is damaged
        raise LlmarchError(f"cannot load {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    side_files = _side_files(Path(directory))
    eos = _hf_eos_ids(Path(directory), side_files)
    if eos is None and tk.token_to_id(EOS) is None:
        eos = _sep_id(tk, side_files)
    return BPETokenizer(tk, eos_id=eos, side_files=side_files)


def _sep_id(tk, side_files: dict[str, bytes]) -> int | None:
    """A BERT-style tokenizer's separator ([SEP], tokenizer_config.json's sep_token), which ends each of its
    segments: the end-of-text of a tokenizer that has no eos token."""
    sep = json.loads(side_files.get("tokenizer_config.json", b"{}")).get("sep_token")
    sep = sep.get("content") if isinstance(sep, dict) else sep
    return tk.token_to_id(sep) if isinstance(sep, str) else None


def check_fits(tok: Tokenizer, vocab_size: int) -> None:
    """A tokenizer may not emit ids the model has no embedding for."""
    if tok.vocab_size > vocab_size:
        raise LlmarchError(f"tokenizer has {tok.vocab_size} tokens but the model's vocab_size is {vocab_size}")
