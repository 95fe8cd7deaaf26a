"""RWKV World vocabularies in GGUF files (tokenizer.ggml.model "rwkv", llama.cpp's LLAMA_VOCAB_TYPE_RWKV), read as
data/rwkv_tokenizer.py's RwkvWorldTokenizer and written from one, as convert_hf_to_gguf.py's _set_vocab_rwkv_world
writes them: the escaped spellings as the token list, their types, token 0 as bos and eos, and `\\n\\n` (261 in
the World vocabulary) as eot, which llama.cpp also ends a generation at. llama.cpp adds neither bos nor eos to a
prompt of this vocabulary, whatever add_bos_token and add_eos_token say (llama_vocab's tokenize_impl: its rwkv
branch reads neither), and neither does llmarch."""
from __future__ import annotations

import json

from ..data.rwkv_tokenizer import RwkvWorldTokenizer
from .gguf import field
from .gguf_vocab import UNUSED


def rwkv_tokenizer(reader, tokens: list[str], types: list[int], path) -> RwkvWorldTokenizer:
    ends = [field(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot")]
    ends = [i for i in dict.fromkeys(ends) if i is not None] or [0]  # without one, the converter's <s>
    template = field(reader, "tokenizer.chat_template")
    side = {"tokenizer_config.json": (json.dumps({"chat_template": template}, indent=2) + "\n").encode()} \
        if template is not None else {}
    return RwkvWorldTokenizer(tokens, types, ends, side)


def write_rwkv(w, tok: RwkvWorldTokenizer, vocab_size: int) -> None:
    """The vocabulary, padded to the model's rows with unused [PAD{i}] tokens as the converter pads it."""
    pad = range(tok.vocab_size, vocab_size)
    w.add_tokenizer_model("rwkv")
    w.add_token_list(tok.tokens + [f"[PAD{i}]" for i in pad])
    w.add_token_types(tok.types + [UNUSED] * len(pad))
    w.add_bos_token_id(tok.eos_id)
    w.add_eos_token_id(tok.eos_id)
    if len(tok.eos_ids) > 1:
        w.add_eot_token_id(tok.eos_ids[1])
    template = json.loads(tok.side_files.get("tokenizer_config.json", b"{}")).get("chat_template")
    if template:
        w.add_chat_template(template)
