"""A GGUF file's tokenizer as a `tokenizers` Tokenizer: llama.cpp stores the vocabulary (`tokenizer.ggml.tokens`,
in GPT-2's byte-to-unicode spelling for byte-level BPE), the merges ("Ġ t"), each token's type (3: control,
4: user-defined, both matched whole before BPE), the special ids, the pre-tokenizer by name
(`tokenizer.ggml.pre`, llama.cpp's llama-vocab.cpp names the regexes) and the chat template. Byte-level BPE
(`tokenizer.ggml.model` gpt2) only; SentencePiece vocabularies (llama) are not read yet."""
from __future__ import annotations

import json

from pathlib import Path

from ..data.tokenizer import HF_TOKEN_IDS, BPETokenizer, Tokenizer, load_tokenizer
from ..errors import LlmarchError
from .gguf import field, is_gguf, open_gguf

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# LLaMA 3's split (llama-bpe); Qwen2's is the same with single digits
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
CONTROL, USER_DEFINED = 3, 4


def _pre_tokenizer(name: str, path):
    from tokenizers import Regex, pre_tokenizers as pt

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=False)
    split = {"llama-bpe": LLAMA3, "llama3": LLAMA3, "qwen2": QWEN2}
    if name in ("gpt2", "default"):
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "smollm":  # SmolLM's tokenizer.json: digits one by one, then GPT-2's split
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if name in split:
        return pt.Sequence([pt.Split(Regex(split[name]), behavior="isolated"), byte_level])
    raise LlmarchError(f"{path}: GGUF pre-tokenizer {name!r} is not supported; supported: default, gpt2, smollm, "
                       f"{', '.join(split)}")


def gguf_tokenizer(reader, path) -> BPETokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    kind = field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise LlmarchError(f"{path}: GGUF tokenizer model {kind!r} is not supported (byte-level BPE, gpt2, only)")
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges", [])]
    types = field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tk.pre_tokenizer = _pre_tokenizer(field(reader, "tokenizer.ggml.pre", "default"), path)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, kind in zip(tokens, types) if kind == CONTROL])
    tk.add_tokens([AddedToken(t, normalized=False) for t, kind in zip(tokens, types) if kind == USER_DEFINED])
    ids = {f"{k}_token_id": field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "pad")}
    ids = {k: v for k, v in ids.items() if v is not None}
    if field(reader, "tokenizer.ggml.add_bos_token", False) and "bos_token_id" in ids:
        bos = tokens[ids["bos_token_id"]]
        tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                          special_tokens=[(bos, ids["bos_token_id"])])
    config = {f"{k}_token": tokens[ids[f"{k}_token_id"]] for k in ("bos", "eos", "pad") if f"{k}_token_id" in ids}
    template = field(reader, "tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template
    side_files = {"tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode(),
                  HF_TOKEN_IDS: (json.dumps(ids, indent=2) + "\n").encode()}
    return BPETokenizer(tk, eos_id=ids.get("eos_token_id"), side_files=side_files)


def checkpoint_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint directory (data/tokenizer.py's load_tokenizer) or of a .gguf file."""
    return gguf_tokenizer(open_gguf(path), path) if is_gguf(path) else load_tokenizer(path)
