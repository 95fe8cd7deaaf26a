"""WordPiece vocabularies (BERT's; Wu et al. 2016, §4.1) in GGUF: tokenizer.ggml.model "bert", which llama.cpp
runs as its WPM tokenizer. convert_hf_to_gguf.py's BertModel.set_vocab spells the vocabulary with a "phantom
space": a word-initial piece `un` becomes `▁un`, a continuation `##able` becomes `able`, a control token
([CLS], [SEP], [UNK], [PAD], [MASK]) stays as it is. Its special ids are [CLS] as BOS, [SEP] as EOS and
separator, with add_bos, add_eos and add_sep set (gguf.SpecialVocab reading BERT's `[CLS] $A [SEP]` template).

llama.cpp's WPM splits the NFD-normalized, lower-cased text at whitespace, punctuation and CJK characters, drops
combining marks and control characters, and matches each word greedily longest-first from `▁word`: Hugging
Face's BertTokenizer for an uncased vocabulary (BertNormalizer with lowercase, accents stripped; BertPreTokenizer;
WordPiece with `##`), but for words over 100 characters (Hugging Face: [UNK]; llama.cpp: pieces). Reading builds
that `tokenizers` pipeline with the `##` spelling again. The file has no casing flag (llama.cpp lower-cases
always): a vocabulary whose pieces hold upper-case letters is a cased model's, read without lower-casing, as its
Hugging Face tokenizer does (bert-base-cased's); llama.cpp lower-cases it anyway."""
from __future__ import annotations

import re

from ..errors import LlmarchError
from .gguf import field
from .gguf_vocab import CONTROL, SPACE, UNKNOWN, UNUSED  # unused: the writer's [PAD{i}] rows


def from_phantom(tokens: list[str], types: list[int]) -> list[str]:
    """The file's pieces in WordPiece's spelling: `▁un` -> `un`, `able` -> `##able`, control tokens as they are."""
    return [t if k in (CONTROL, UNUSED) else t[1:] if t.startswith(SPACE) else "##" + t
            for t, k in zip(tokens, types)]


def to_phantom(pieces: list[str], types: list[int]) -> list[str]:
    return [p if k in (CONTROL, UNUSED) else p[2:] if p.startswith("##") else SPACE + p
            for p, k in zip(pieces, types)]


def cased(pieces: list[str], types: list[int]) -> bool:
    """Whether the vocabulary is a cased model's: a piece other than [UNK] and control tokens holds A-Z."""
    return any(re.search("[A-Z]", p) for p, k in zip(pieces, types) if k not in (UNKNOWN, CONTROL, UNUSED))


def wordpiece_tokenizer(reader, pieces: list[str], types: list[int], path):
    """The `tokenizers` Tokenizer of a bert vocabulary (pieces: from_phantom's) and its bos/eos/pad ids."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    unk = field(reader, "tokenizer.ggml.unknown_token_id", pieces.index("[UNK]") if "[UNK]" in pieces else None)
    if unk is None:
        raise LlmarchError(f"{path}: a bert vocabulary without an unknown token (tokenizer.ggml.unknown_token_id)")
    tk = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token=pieces[unk],
                                    continuing_subword_prefix="##", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                               lowercase=not cased(pieces, types))
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece(prefix="##")
    cls = field(reader, "tokenizer.ggml.bos_token_id")
    sep = field(reader, "tokenizer.ggml.seperator_token_id", field(reader, "tokenizer.ggml.eos_token_id"))
    if cls is not None and sep is not None and field(reader, "tokenizer.ggml.add_bos_token", True):
        c, s = pieces[cls], pieces[sep]  # [CLS] A [SEP] (B [SEP]), B of token type 1, as BERT's template
        tk.post_processor = processors.TemplateProcessing(single=f"{c} $A {s}", pair=f"{c} $A {s} $B:1 {s}:1",
                                                          special_tokens=[(c, cls), (s, sep)])
    ids = {"bos_token_id": cls, "eos_token_id": sep, "pad_token_id": field(reader, "tokenizer.ggml.padding_token_id")}
    return tk, {k: v for k, v in ids.items() if v is not None}


def _template_ends(spec: dict, ids: dict) -> tuple[int | None, int | None]:
    """The ids of the special tokens a BERT template puts first and last ([CLS], [SEP]), or None."""
    post = spec.get("post_processor") or {}
    if post.get("type") == "BertProcessing":
        return post["cls"][1], post["sep"][1]
    if post.get("type") == "TemplateProcessing" and len(post["single"]) == 3:
        first, _, last = (s.get("SpecialToken", {}).get("id") for s in post["single"])
        return ids.get(first), ids.get(last)
    return None, None


def write_wordpiece(w, tok, spec: dict, tokens: list[str], types: list[int]) -> None:
    """A `tokenizers` WordPiece tokenizer (BERT's: BertNormalizer, BertPreTokenizer, `##` continuations) as
    BertModel.set_vocab writes it. One whose casing the vocabulary does not show (see above), or another
    normalizer or split, is refused: llama.cpp's WPM could not tokenize as it does."""
    normalizer, pre = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}
    if normalizer.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer" or \
            spec["model"].get("continuing_subword_prefix") != "##":
        raise LlmarchError("GGUF export writes BERT's WordPiece (BertNormalizer, BertPreTokenizer, ## pieces); this "
                           "tokenizer differs")
    lower = normalizer.get("lowercase", True)
    if lower == cased(tokens, types) or normalizer.get("strip_accents") not in (None, lower):
        raise LlmarchError(f"GGUF bert vocabularies carry no casing flag, and this tokenizer's lowercase={lower} "
                           f"(strip_accents={normalizer.get('strip_accents')}) disagrees with its vocabulary, which "
                           f"is {'uncased' if not lower else 'cased'}")
    ids = tok.tk.get_vocab(with_added_tokens=True)
    cls, sep = _template_ends(spec, ids)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(to_phantom(tokens, types))
    w.add_token_types(types)
    unk = ids.get(spec["model"].get("unk_token"))
    for value, add in ((cls, w.add_bos_token_id), (sep, w.add_eos_token_id), (sep, w.add_sep_token_id),
                       (unk, w.add_unk_token_id), (ids.get("[PAD]"), w.add_pad_token_id),
                       (tok.mask_id, w.add_mask_token_id)):
        if value is not None:
            add(value)
    for add in (w.add_add_bos_token, w.add_add_eos_token, w.add_add_sep_token):
        add(cls is not None)
