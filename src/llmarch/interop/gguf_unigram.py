"""SentencePiece unigram vocabularies in GGUF files (tokenizer.ggml.model "t5", llama.cpp's UGM: T5, flan-t5,
mT5), read as a `tokenizers` Unigram model and written from one.

llama.cpp's llm_tokenizer_ugm (llama-vocab.cpp): the text goes through the precompiled charsmap
(tokenizer.ggml.precompiled_charsmap, SentencePiece's normalization rules, T5's nmt_nfkc) when the file has
one; then with remove_extra_whitespaces, leading and trailing spaces go and runs of spaces become one; with
add_space_prefix, a ▁ goes first; every space becomes ▁. The whole normalized text is then segmented by Viterbi
(Kudo 2018): the split maximizing the sum of the tokens' scores (log-probabilities), over the normal,
user-defined (scored 0) and unused tokens, a character no token covers costing min(normal score) - 10 as the
unknown token, consecutive unknowns fused into one. A `tokenizers` Unigram model does the same Viterbi with the
same unknown cost over the scores it is given, so non-normal tokens, whose scores llama.cpp leaves out of the
minimum, are given at least that minimum. There is no pre-tokenizer: SentencePiece's pieces never hold a ▁ past
their first character, so splitting at spaces first (as transformers' T5Tokenizer does) gives the same ids on
text whose only whitespace is spaces."""
from __future__ import annotations

import base64
import json

from ..errors import LlmarchError
from .gguf import field
from .gguf_vocab import CONTROL, NORMAL, SPACE, UNKNOWN, UNUSED, USER_DEFINED

DEFAULT_IDS = {"eos": 1, "unknown": 2, "padding": 0}  # llama.cpp's for a t5 vocabulary (tokenizer.ggml.*_token_id)


def unigram_tokenizer(reader, tokens: list[str], types: list[int], path):
    """The file's unigram model with llama.cpp's normalization (module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers

    scores = field(reader, "tokenizer.ggml.scores")
    if scores is None:
        raise LlmarchError(f"{path}: a t5 (unigram) vocabulary without tokenizer.ggml.scores")
    floor = min((s for s, k in zip(scores, types) if k == NORMAL), default=0.0)
    lattice = [(t, 0.0 if k == USER_DEFINED else s if k == NORMAL else max(s, floor))
               for t, s, k in zip(tokens, scores, types)]
    unk = field(reader, "tokenizer.ggml.unknown_token_id", DEFAULT_IDS["unknown"])
    tk = Tokenizer(models.Unigram(lattice, unk_id=unk, byte_fallback=False))
    steps = []
    charsmap = field(reader, "tokenizer.ggml.precompiled_charsmap")
    if charsmap:
        steps.append(normalizers.Precompiled(bytes(b & 0xFF for b in charsmap)))  # an INT8 array too, as llama.cpp
    if field(reader, "tokenizer.ggml.remove_extra_whitespaces", False):
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    prefix = field(reader, "tokenizer.ggml.add_space_prefix", False)
    if prefix:
        steps.append(normalizers.Prepend(SPACE))
    tk.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", SPACE)])
    tk.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always" if prefix else "never")
    return tk


def _charsmap(spec: dict) -> bytes | None:
    norm = spec.get("normalizer") or {}
    for step in norm.get("normalizers", [norm]):
        if step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
            return base64.b64decode(step["precompiled_charsmap"])
    return None


def _whitespace(spec: dict) -> tuple[bool, bool]:
    """(add_space_prefix, remove_extra_whitespaces): transformers' T5Tokenizer spells them as a Metaspace
    pre-tokenizer prepending ▁ after a WhitespaceSplit, which drops every run of spaces; unigram_tokenizer as
    normalizer steps (a Prepend of ▁, the replacement of space runs)."""
    pre, norm = spec.get("pre_tokenizer") or {}, spec.get("normalizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre else []
    kinds = [s.get("type") for s in steps]
    meta = next((s for s in steps if s.get("type") == "Metaspace"), None)
    if meta is not None and meta.get("replacement") == SPACE and set(kinds) <= {"Metaspace", "WhitespaceSplit"}:
        return meta.get("prepend_scheme", "always") != "never", "WhitespaceSplit" in kinds
    rules = norm.get("normalizers", [norm])
    if not steps and {"type": "Replace", "pattern": {"String": " "}, "content": SPACE} in rules:
        return (any(r.get("type") == "Prepend" and r.get("prepend") == SPACE for r in rules),
                any(r.get("pattern") == {"Regex": " {2,}"} for r in rules))
    raise LlmarchError("GGUF export: a unigram tokenizer needs SentencePiece's ▁ spaces (a Metaspace pre-tokenizer, "
                       f"as transformers' T5Tokenizer has); this one has {kinds or 'none'}")


def write_unigram(w, tok, tokens: list[str]) -> None:
    """A `tokenizers` Unigram tokenizer's vocabulary as llama.cpp's t5 keys (convert_hf_to_gguf.py's T5Model
    set_vocab): scores, types (unknown, control for special added tokens, user-defined for the others), the
    whitespace flags, the charsmap; padding rows [PAD{i}] unused at -10000 (the converter's score)."""
    spec = json.loads(tok.tk.to_str())
    vocab, unk = spec["model"]["vocab"], spec["model"].get("unk_id")
    if spec["model"].get("byte_fallback"):
        raise LlmarchError("GGUF export: llama.cpp's unigram (t5) tokenizer has no byte fallback")
    prefix, merge = _whitespace(spec)
    added = {a["id"]: a.get("special", False) for a in spec.get("added_tokens", [])}
    scores = [vocab[i][1] if i < len(vocab) else -10000.0 for i in range(len(tokens))]
    types = [UNKNOWN if i == unk else (CONTROL if added[i] else USER_DEFINED) if i in added else
             NORMAL if i < len(vocab) else UNUSED for i in range(len(tokens))]
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(prefix)
    w.add_remove_extra_whitespaces(merge)
    if (charsmap := _charsmap(spec)) is not None:
        w.add_precompiled_charsmap(charsmap)
    if unk is not None:
        w.add_unk_token_id(unk)
