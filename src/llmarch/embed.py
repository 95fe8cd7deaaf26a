"""Sentence embeddings from any model's final hidden states: the mean over a text's real tokens (padding
excluded), or the first token's state (BERT's [CLS], Devlin et al. 2019, §3), which only a bidirectional
model fills with the whole text. An embedding model (head embed) that pools so gives its own output: the pooled state
through its sentence-transformers Dense projections and Normalize where it has them (EmbeddingGemma).

Embedding models trained with instructions expect a text's task before it (EmbeddingGemma's "task: search result |
query: ", E5's "query: "): a sentence-transformers folder names them in config_sentence_transformers.json, which
travels with the tokenizer (data/tokenizer.py HF_SIDE_FILES); `prompts` reads them and `embed(prompt=)` puts one
before every text."""
from __future__ import annotations

import json

import numpy as np
import torch

from .data.batching import encode, pad
from .errors import LlmarchError, warn
from .layers.heads import pool

POOLINGS = ("cls", "mean")
PROMPTS_FILE = "config_sentence_transformers.json"


def prompts(tok) -> tuple[dict[str, str], str | None]:
    """(prompt name -> the text put before each input, the default prompt's name or None) of the sentence-
    transformers config that came with the tokenizer; ({}, None) where none did."""
    raw = getattr(tok, "side_files", {}).get(PROMPTS_FILE)
    try:
        conf = json.loads(raw) if raw is not None else {}
    except ValueError:
        raise LlmarchError(f"the tokenizer's {PROMPTS_FILE} is not valid JSON") from None
    named = conf.get("prompts") if isinstance(conf, dict) else None
    if not isinstance(named, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in named.items()):
        return {}, None
    default = conf.get("default_prompt_name")
    return named, default if default in named else None


def prompt_named(tok, name: str | None) -> str:
    """The text of the prompt `name`; None: the default prompt's, or none ("")."""
    named, default = prompts(tok)
    if name is None:
        return named[default] if default is not None else ""
    if name not in named:
        raise LlmarchError(f"no prompt named {name!r} in the checkpoint's {PROMPTS_FILE}; it names: "
                           f"{', '.join(named) or 'none'}")
    return named[name]


@torch.inference_mode()
def embed(model, tok, texts: list[str], pooling: str = "mean", batch_size: int = 32,
          normalize: bool = False, prompt: str = "") -> np.ndarray:
    """(len(texts), width) float32 (d_model, or the model's last Dense width) of `prompt` + each text (prompt_named
    gives a checkpoint's); texts longer than the model's context are cut to it, with a warning."""
    if pooling not in POOLINGS:
        raise LlmarchError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
    if pooling == "cls" and model.config.causal:
        raise LlmarchError(f"{model.config.name} is causal: its first token sees nothing after it; use mean pooling")
    cfg = model.config
    own = cfg.head == "embed" and cfg.pooling == pooling
    if cfg.embed_dense and not own:
        raise LlmarchError(f"{cfg.name}'s Dense projections follow its own {cfg.pooling} pooling, not {pooling}")
    if not texts:
        raise LlmarchError("no text to embed")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    context = model.config.context_length
    seqs = encode(tok, [prompt + text for text in texts], 2**62)
    cut = sum(len(s) > context for s in seqs)
    if cut:  # said, as a vector of a text's beginning only may not be what was asked for
        warn(f"{cut} of {len(texts)} texts are longer than the model's context of {context} tokens: each is "
             f"embedded from its first {context} tokens")
    seqs = [s[:context] for s in seqs]
    out = []
    try:
        for i in range(0, len(seqs), batch_size):
            ids, mask = pad(seqs[i:i + batch_size], tok.eos_id, left=False)
            ids, mask = ids.to(device), mask.to(device)
            result = model(ids, attention_mask=mask)
            v = result.logits.float() if own else pool(result.hidden_states.float(), mask.bool(), pooling)  # (B, C)
            if normalize:
                v = torch.nn.functional.normalize(v, dim=-1)
            out.append(v.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)
