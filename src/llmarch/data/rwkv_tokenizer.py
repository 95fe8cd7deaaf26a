"""The RWKV World tokenizer (Peng et al. 2024, "Eagle and Finch", arXiv:2404.05892: RWKV's 65,536-token vocabulary
`rwkv_vocab_v20230424`): no merges and no scores, a text's UTF-8 bytes cut greedily into the longest vocabulary
entry at each position, left to right. Every single byte is an entry, so any text is covered and detokenizing gives
it back.

The vocabulary is kept as a GGUF file stores it (llama.cpp's converter, `_set_vocab_rwkv_world`): token 0 `<s>`
(control), then each entry's bytes spelled as Python's bytes repr without `b'` and `'` (`\\xe4\\xbd\\xa0`, `\\n`,
`\\\\`, `\\'`), then unused `[PAD{i}]` rows; `unescape` reads a spelling back to bytes exactly as llama.cpp's
llama_unescape_rwkv_token does (lower-case hex only; any other escaped character stands for itself), and the match
is llm_tokenizer_rwkv_session's: over a trie of every token's bytes (a later token with the same bytes replaces an
earlier one), the longest entry that starts at the position. Control and user-defined tokens' text is split out
of the input first, as llama.cpp does with parse_special (and `tokenizers` with added tokens); decode drops
control tokens and joins the others' bytes, a broken UTF-8 sequence becoming U+FFFD as ByteTokenizer's does.

Saved (llmarch checkpoints) as tokenizer.json {"llmarch": "rwkv_world", "tokens", "types", "eos_ids"}; for
transformers (save_hf), as a `tokenizers` WordPiece over GPT-2's byte characters with no continuation prefix:
WordPiece's greedy longest-match-first over one word that is the whole text is this tokenizer (its search is
quadratic in the text's length, fine for prompts)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

from ..errors import LlmarchError
from .byte_level import byte_chars

KIND = "rwkv_world"
TOKENIZER_FILE = "tokenizer.json"  # data/tokenizer.py's, which reads this kind by name (and so imports this module)
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4  # llama.cpp's token types (interop/gguf_vocab.py)
_ESCAPES = {ord("t"): 9, ord("n"): 10, ord("r"): 13}


def unescape(text: str) -> bytes:
    """llama_unescape_rwkv_token: `\\t \\n \\r`, `\\xNN` (hex digits read as c - 'a' + 10 from 'a' on, else
    c - '0'), any other escaped character as itself; the rest byte by byte."""
    out, escaping, hex_left, acc = bytearray(), False, 0, 0
    for c in text.encode("utf-8"):
        if hex_left:
            acc = ((acc << 4) + (c - 87 if c >= 97 else c - 48)) & 0xFF
            hex_left -= 1
            if not hex_left:
                out.append(acc)
                acc = 0
        elif escaping:
            if c == ord("x"):
                hex_left = 2
            else:
                out.append(_ESCAPES.get(c, c))
            escaping = False
        elif c == ord("\\"):
            escaping = True
        else:
            out.append(c)
    return bytes(out)


def escape(piece: bytes) -> str:
    """A token's bytes as the converter spells them: repr(bytes)[2:-1]."""
    return repr(piece)[2:-1]


class RwkvWorldTokenizer:
    """tokens: the file's spellings (see the module docstring); types: llama.cpp's token type of each;
    eos_ids: the ids that end a generation (the converter's eos 0, and its eot 261, `\\n\\n`, in a World file)."""

    mask_id = None
    sentinel_ids: list[int] = []

    def __init__(self, tokens: list[str], types: list[int], eos_ids: list[int],
                 side_files: dict[str, bytes] | None = None):
        if len(types) != len(tokens):
            raise LlmarchError(f"an RWKV World vocabulary needs one type per token: {len(tokens)} tokens, "
                               f"{len(types)} types")
        if not eos_ids or not all(isinstance(i, int) and 0 <= i < len(tokens) for i in eos_ids):
            raise LlmarchError(f"RWKV World end-of-text ids {eos_ids!r} are not ids of its {len(tokens)} tokens")
        self.tokens, self.types, self.eos_ids = list(tokens), list(types), list(eos_ids)
        self.eos_id, self.vocab_size = self.eos_ids[0], len(tokens)
        self.side_files = dict(side_files or {})
        self.pieces = [unescape(t) for t in tokens]
        # llama.cpp's trie as two sets: the tokens (a later token with the same bytes replaces an earlier one, as
        # in its trie) and their proper prefixes (the trie's inner nodes); a dict walk per byte took 3x longer
        self._ids = {piece: i for i, piece in enumerate(self.pieces)}
        self._prefixes = {piece[:k] for piece in self.pieces for k in range(1, len(piece))}
        missing = [b for b in range(256) if bytes([b]) not in self._ids]
        if missing:  # llama.cpp would emit its unknown id (none in a World file) for such a byte
            raise LlmarchError(f"an RWKV World vocabulary needs every single byte as a token; byte {missing[0]:#04x} "
                               f"is not one ({len(missing)} missing)")
        special = sorted((t for t, k in zip(tokens, types) if k in (CONTROL, USER_DEFINED) and t), key=len,
                         reverse=True)
        self._special = {t: i for i, t in enumerate(tokens) if types[i] in (CONTROL, USER_DEFINED)}
        self._split = re.compile("(" + "|".join(map(re.escape, special)) + ")") if special else None

    def _greedy(self, data: bytes) -> list[tuple[int, int]]:
        """llm_tokenizer_rwkv_session::tokenize: at each position the longest token that starts there; (id, the
        byte it starts at) each."""
        out, pos, n = [], 0, len(data)
        while pos < n:
            end, best, at = pos + 1, None, pos
            while end <= n:
                piece = data[pos:end]
                if (i := self._ids.get(piece)) is not None:
                    best, at = i, end
                elif piece not in self._prefixes:  # the trie has no node here: no longer token either
                    break
                end += 1
            out.append((best, pos))
            pos = at
        return out

    def encode_offsets(self, text: str) -> list[tuple[int, int]]:
        """(id, the character of `text` it starts at) per token: chat.py's mask of who wrote each token."""
        parts = self._split.split(text) if self._split else [text]
        out, chars = [], 0
        for k, part in enumerate(parts):  # odd parts are special tokens' text
            if k % 2:
                out.append((self._special[part], chars))
            else:
                char_at = [c for c, ch in enumerate(part) for _ in range(len(ch.encode("utf-8")))]
                out += [(i, chars + char_at[b]) for i, b in self._greedy(part.encode("utf-8"))]
            chars += len(part)
        return out

    def encode(self, text: str) -> list[int]:
        return [i for i, _ in self.encode_offsets(text)]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.pieces[i] for i in ids if self.types[i] != CONTROL).decode("utf-8", errors="replace")

    def token_text(self, i: int) -> str:
        return self.token_bytes(i).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        return self.tokens[i].encode() if self.types[i] == CONTROL else self.pieces[i]

    def spec(self) -> dict:
        return {"llmarch": KIND, "tokens": self.tokens, "types": self.types, "eos_ids": self.eos_ids}

    @classmethod
    def from_spec(cls, spec: dict, side_files: dict[str, bytes] | None = None) -> RwkvWorldTokenizer:
        try:
            return cls(list(spec["tokens"]), list(spec["types"]), list(spec["eos_ids"]), side_files)
        except (KeyError, TypeError) as e:
            raise LlmarchError(f"an {KIND} tokenizer.json needs tokens, types and eos_ids lists ({e})") from None

    def save(self, directory: Path) -> None:
        (Path(directory) / TOKENIZER_FILE).write_text(json.dumps(self.spec()) + "\n")
        for name, content in self.side_files.items():
            (Path(directory) / name).write_bytes(content)

    def hf_tokenizer(self):
        """The `tokenizers` form of save_hf (module docstring)."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        chars = byte_chars()
        vocab = {"".join(chars[b] for b in p): i for i, p in enumerate(self.pieces)}  # later duplicates win
        tk = Tokenizer(models.WordPiece(vocab, unk_token=self.tokens[self.eos_id], continuing_subword_prefix="",
                                        max_input_chars_per_word=2**31 - 1))
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(self.tokens, self.types)
                               if k == CONTROL])
        return tk

    def save_hf(self, directory: Path) -> None:
        self.hf_tokenizer().save(str(Path(directory) / TOKENIZER_FILE))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": self.tokens[self.eos_id],
                  "clean_up_tokenization_spaces": False}
        template = json.loads(self.side_files.get("tokenizer_config.json", b"{}")).get("chat_template")
        config.update({"chat_template": template} if template else {})
        (Path(directory) / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")

    def hf_token_ids(self) -> dict:
        return {"eos_token_id": self.eos_ids if len(self.eos_ids) > 1 else self.eos_id}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.spec()).encode()).hexdigest()[:16]
