"""A GGUF file's tokenizer as a `tokenizers` Tokenizer. llama.cpp stores the vocabulary
(`tokenizer.ggml.tokens`), each token's type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte;
control and user-defined tokens are matched whole before the model sees the text), the special ids, add_bos /
add_eos and the chat template, and one of two models (`tokenizer.ggml.model`):
- gpt2: byte-level BPE, tokens in GPT-2's byte-to-unicode spelling, the merges ("Ġ t"), and the pre-tokenizer
  by name (`tokenizer.ggml.pre`; llama.cpp's llama-vocab.cpp names the regexes, gguf_splits.py holds them: gpt-2
  is GPT-2's, default is llama.cpp's own);
- llama: SentencePiece (Llama 2, Mistral, Gemma, Phi-3), tokens spelled with ▁ for a space, a score each, no
  merges. llama.cpp's llm_tokenizer_spm escapes spaces as ▁ (after a leading ▁ when add_space_prefix, the
  default, at the start and after every special token), splits the text into characters and merges the
  adjacent pair whose concatenation is the best-scoring token (leftmost on ties) until none is a token; a
  character left outside the vocabulary becomes its UTF-8 bytes' <0xNN> tokens (byte fallback). That is BPE
  whose merges are every split of every token into two tokens, ranked by the token's score: a `tokenizers`
  BPE model with byte_fallback;
- bert: BERT's WordPiece, spelled with a phantom space (gguf_wordpiece.py);
- t5: SentencePiece unigram (T5, flan-t5), tokens with scores segmented by Viterbi after llama.cpp's own
  normalization (gguf_unigram.py);
- rwkv: the RWKV World vocabulary, escaped byte strings matched greedily longest-first (gguf_rwkv.py; not a
  `tokenizers` Tokenizer but llmarch's RwkvWorldTokenizer, data/rwkv_tokenizer.py).
write_tokenizer does the reverse for GGUF out: a byte-level BPE as gpt2 (the split's llama.cpp name), a
SentencePiece-style one (byte fallback, ▁ spaces) as llama, each token scored by the first merge that makes it,
BERT's WordPiece as bert, a unigram one as t5, an RWKV World one as rwkv.
llmarch's byte tokenizer (token i is byte i) is a gpt2 vocabulary too: its 256 bytes in GPT-2's byte-to-unicode
spelling at ids 0-255, its special tokens after, and no merges, so that every piece of any split falls apart into
its bytes (ByteTokenizer.hf_tokenizer; the split named gpt-2, which changes nothing without merges)."""
from __future__ import annotations

import json
import re

from pathlib import Path

from ..data.rwkv_tokenizer import RwkvWorldTokenizer
from ..data.tokenizer import HF_TOKEN_IDS, BPETokenizer, ByteTokenizer, Tokenizer, check_fits, load_tokenizer
from ..errors import LlmarchError
from .gguf import field, is_gguf, open_gguf
from .gguf_rwkv import rwkv_tokenizer, write_rwkv
from .gguf_splits import DIGITS_NAMES, GPT2_NAMES, IGNORE_MERGES, NAMES, SPLITS
from .gguf_wordpiece import from_phantom, wordpiece_tokenizer, write_wordpiece
from .gguf_vocab import BYTE, CONTROL, NORMAL, SPACE, UNKNOWN, UNUSED, USER_DEFINED
from .gguf_unigram import DEFAULT_IDS as UNIGRAM_IDS, unigram_tokenizer, write_unigram

def _pre_tokenizer(name: str, path):
    """The split llama.cpp names `name` (gguf_splits.py), then GPT-2's byte-to-unicode mapping."""
    from tokenizers import Regex, pre_tokenizers as pt

    if name in GPT2_NAMES:
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if name in DIGITS_NAMES:  # single digits, then GPT-2's split (SmolLM's tokenizer.json spells it so)
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if name in SPLITS:
        return pt.Sequence([*(pt.Split(Regex(r), behavior="isolated") for r in SPLITS[name]),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise LlmarchError(f"{path}: GGUF pre-tokenizer {name!r} is not supported; supported: {', '.join(NAMES)}")


def _byte_level(reader, tokens: list[str], path):
    from tokenizers import Tokenizer, decoders, models

    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges", [])]
    pre = field(reader, "tokenizer.ggml.pre", "default")
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                              ignore_merges=pre in IGNORE_MERGES))
    tk.pre_tokenizer = _pre_tokenizer(pre, path)
    tk.decoder = decoders.ByteLevel()
    return tk


def spm_merges(tokens: list[str], scores: list[float]) -> list[tuple[str, str]]:
    """Every split of a token into two tokens, best-scoring token first (llm_tokenizer_spm's merge order)."""
    ids = {t: i for i, t in enumerate(tokens)}
    ranked = [(-scores[i], i, t[:k], t[k:]) for i, t in enumerate(tokens) for k in range(1, len(t))
              if t[:k] in ids and t[k:] in ids]
    ranked.sort()
    return [(a, b) for *_, a, b in ranked]


def _sentencepiece(reader, tokens: list[str], types: list[int]):
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores = field(reader, "tokenizer.ggml.scores", [0.0] * len(tokens))
    unk_id = field(reader, "tokenizer.ggml.unknown_token_id", next((i for i, k in enumerate(types) if k == UNKNOWN),
                                                                   None))
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=spm_merges(tokens, scores),
                              unk_token=tokens[unk_id] if unk_id is not None else None, byte_fallback=True))
    prefix = field(reader, "tokenizer.ggml.add_space_prefix", True)
    escape = normalizers.Replace(" ", SPACE)
    tk.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), escape]) if prefix else escape
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    tk.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    return tk


def gguf_tokenizer(reader, path) -> BPETokenizer | RwkvWorldTokenizer:
    from tokenizers import AddedToken, processors

    kind = field(reader, "tokenizer.ggml.model")
    if kind is None:
        raise LlmarchError(f"{path}: the GGUF file holds no tokenizer (no tokenizer.ggml.model in its metadata)")
    if kind not in ("gpt2", "llama", "bert", "t5", "rwkv"):
        raise LlmarchError(f"{path}: GGUF tokenizer model {kind!r} is not supported (gpt2: byte-level BPE, "
                           "llama: SentencePiece, bert: WordPiece, t5: SentencePiece unigram, rwkv: RWKV World)")
    tokens = field(reader, "tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise LlmarchError(f"{path}: GGUF tokenizer.ggml.tokens is missing or not a list of strings")
    types = field(reader, "tokenizer.ggml.token_type", [NORMAL] * len(tokens))
    if not isinstance(types, list) or len(types) != len(tokens):
        raise LlmarchError(f"{path}: GGUF tokenizer.ggml.token_type does not give one type per token")
    if kind == "rwkv":
        return rwkv_tokenizer(reader, tokens, types, path)
    try:
        if kind == "bert":  # its own template ([CLS] A [SEP] B [SEP]) and special ids
            tokens = from_phantom(tokens, types)
            tk, ids = wordpiece_tokenizer(reader, tokens, types, path)
        else:
            build = {"gpt2": lambda: _byte_level(reader, tokens, path),
                     "llama": lambda: _sentencepiece(reader, tokens, types),
                     "t5": lambda: unigram_tokenizer(reader, tokens, types, path)}
            tk = build[kind]()
            defaults = UNIGRAM_IDS if kind == "t5" else {}
            ids = {f"{k}_token_id": field(reader, f"tokenizer.ggml.{g}_token_id", defaults.get(g))
                   for k, g in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"))}
            ids = {k: v for k, v in ids.items() if v is not None}
    except LlmarchError:
        raise
    except Exception as e:  # the tokenizers library's own refusal (a merge of unknown tokens ...), one line
        raise LlmarchError(f"{path}: GGUF tokenizer metadata is inconsistent: {str(e).splitlines()[0]}") from None
    bad = {k: v for k, v in ids.items() if not isinstance(v, int) or not 0 <= v < len(tokens)}
    if bad:
        name, value = next(iter(bad.items()))
        raise LlmarchError(f"{path}: GGUF tokenizer {name.removesuffix('_token_id')} id {value!r} is not one of its "
                           f"{len(tokens)} tokens")
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, k in zip(tokens, types) if k == CONTROL])
    tk.add_tokens([AddedToken(t, normalized=False) for t, k in zip(tokens, types) if k == USER_DEFINED])
    # without add_bos_token / add_eos_token, llama.cpp's defaults: BOS for SentencePiece, EOS for unigram (T5's
    # </s> after the text), neither for gpt2 vocabularies
    ends = [(end, tokens[ids[f"{end}_token_id"]], ids[f"{end}_token_id"]) for end, default in
            (("bos", kind == "llama"), ("eos", kind == "t5"))
            if field(reader, f"tokenizer.ggml.add_{end}_token", default) and f"{end}_token_id" in ids]
    if ends and kind != "bert":
        first = next((t for end, t, _ in ends if end == "bos"), None)
        last = next((t for end, t, _ in ends if end == "eos"), None)
        single = " ".join([*([first] if first else []), "$A", *([last] if last else [])])
        tk.post_processor = processors.TemplateProcessing(single=single, pair=single.replace("$A", "$A $B"),
                                                          special_tokens=[(t, i) for _, t, i in ends])
    # the generic fast class: with none named, transformers picks one by the model's type, and some (Qwen2's)
    # rebuild the split their own way
    config = {"tokenizer_class": "PreTrainedTokenizerFast",
              **{f"{k}_token": tokens[ids[f"{k}_token_id"]] for k in ("bos", "eos", "pad") if f"{k}_token_id" in ids}}
    template = field(reader, "tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template
    side_files = {"tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode(),
                  HF_TOKEN_IDS: (json.dumps(ids, indent=2) + "\n").encode()}
    return BPETokenizer(tk, eos_id=ids.get("eos_token_id"), side_files=side_files)


def _pre_name(spec: dict) -> str:
    """The name llama.cpp knows this byte-level split by (tokenizer.ggml.pre), as _pre_tokenizer reads it."""
    if not spec["model"]["merges"]:  # every piece becomes its bytes, however the text was split
        return "gpt-2"
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    splits = tuple(s.get("pattern", {}).get("Regex") for s in steps[:-1] if s.get("type") == "Split")
    names = {}
    for name, regexes in SPLITS.items():  # each split's first name
        names.setdefault(regexes, name)
    if kinds == ["Split"] * len(splits) + ["ByteLevel"] and splits in names:
        return names[splits]
    raise LlmarchError("GGUF export: this tokenizer's pre-tokenizer has no llama.cpp name (supported: GPT-2's "
                       "byte-level split, SmolLM's, and the regex splits llama.cpp names: "
                       f"{', '.join(dict.fromkeys(names.values()))})")


def _types(tokens: list[str], spec: dict) -> list[int]:
    added = {a["content"]: a.get("special", False) for a in spec.get("added_tokens", [])}
    unk = spec["model"].get("unk_token")

    def kind(t: str) -> int:
        if t in added:
            return CONTROL if added[t] else USER_DEFINED
        if re.fullmatch(r"\[PAD\d+\]", t):
            return UNUSED
        if spec["model"].get("byte_fallback") and re.fullmatch(r"<0x[0-9A-F]{2}>", t):
            return BYTE
        return UNKNOWN if t == unk else NORMAL

    return [kind(t) for t in tokens]


def write_tokenizer(w, tok: Tokenizer, vocab_size: int) -> None:
    """`tok` (BPETokenizer, ByteTokenizer or RwkvWorldTokenizer) into a gguf.GGUFWriter's tokenizer.ggml.* keys; the
    vocabulary padded to the model's rows with unused [PAD{i}] entries, as llama.cpp's converter pads it. A merge-less
    vocabulary needs gguf_writer.py's writer (the `gguf` package's refuses an empty array)."""
    import gguf

    if isinstance(tok, ByteTokenizer):
        tok = BPETokenizer(tok.hf_tokenizer(), eos_id=tok.eos_id)
    if isinstance(tok, RwkvWorldTokenizer):
        check_fits(tok, vocab_size)
        return write_rwkv(w, tok, vocab_size)
    if not isinstance(tok, BPETokenizer):
        raise LlmarchError(f"GGUF export writes `tokenizers` or byte tokenizers; this one is a {type(tok).__name__}")
    check_fits(tok, vocab_size)
    spec = json.loads(tok.tk.to_str())
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    for text, i in tok.tk.get_vocab(with_added_tokens=True).items():
        tokens[i] = text
    if spec["model"]["type"] == "WordPiece":
        return write_wordpiece(w, tok, spec, tokens, _types(tokens, spec))
    if spec["model"]["type"] not in ("BPE", "Unigram"):
        raise LlmarchError(f"GGUF export writes BPE tokenizers (byte-level or SentencePiece-style), unigram ones "
                           f"(T5's) and BERT's WordPiece; this one is {spec['model']['type']}")
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["model"].get("merges", [])]
    if spec["model"]["type"] == "Unigram":
        write_unigram(w, tok, tokens)
    elif spec["model"].get("byte_fallback"):  # SentencePiece: a token's score is minus its first merge's rank
        if spec.get("pre_tokenizer"):
            raise LlmarchError("GGUF export: a SentencePiece-style tokenizer with a pre-tokenizer (Metaspace) has no "
                               "llama.cpp equivalent; the ▁ escape and prefix must be its normalizer's")
        ids, scores = {t: i for i, t in enumerate(tokens)}, [-float(len(merges))] * len(tokens)
        for rank, (a, b) in reversed(list(enumerate(merges))):
            scores[ids[a + b]] = -float(rank)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_scores(scores)
        w.add_add_space_prefix("Prepend" in json.dumps(spec.get("normalizer")))
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(_pre_name(spec))
        w.add_key_value(gguf.Keys.Tokenizer.MERGES, [" ".join(m) for m in merges], gguf.GGUFValueType.ARRAY,
                        sub_type=gguf.GGUFValueType.STRING)  # llama.cpp refuses a gpt2 vocabulary without the key
    if spec["model"]["type"] == "BPE":
        w.add_token_list(tokens)
        w.add_token_types(_types(tokens, spec))
    ids = tok.hf_token_ids()
    eos = ids.get("eos_token_id", tok.eos_id)
    w.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    for key, add in (("bos_token_id", w.add_bos_token_id), ("pad_token_id", w.add_pad_token_id)):
        if isinstance(ids.get(key), int):
            add(ids[key])
    template = (spec.get("post_processor") or {}).get("single") or []
    w.add_add_bos_token(bool(template) and "SpecialToken" in template[0])
    w.add_add_eos_token(bool(template) and "SpecialToken" in template[-1] and len(template) > 1)
    config = json.loads(tok.side_files.get("tokenizer_config.json", b"{}"))
    if config.get("chat_template"):
        w.add_chat_template(config["chat_template"])


def checkpoint_tokenizer(path: str | Path, mmproj: str | Path | None = None) -> Tokenizer:
    """The tokenizer of a checkpoint directory (data/tokenizer.py's load_tokenizer) or of a .gguf file; mmproj:
    the vision projector file read with it (gguf_mmproj.py), whose image processor and image tokens it carries."""
    tok = gguf_tokenizer(open_gguf(path), path) if is_gguf(path) else load_tokenizer(path)
    if mmproj is not None:
        from .gguf_mmproj import mmproj_side_files

        tok.side_files = mmproj_side_files(mmproj, tok.side_files)
    return tok
