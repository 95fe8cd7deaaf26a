"""`llmarch embed`: sentence embeddings of lines of text, written as a .npy array."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import LlmarchError
from .options import CHECKPOINT_HELP, at_least, check_out_dir, load_with_tokenizer


def add_parsers(sub) -> None:
    from ..embed import POOLINGS

    p = sub.add_parser("embed", help="sentence embeddings for lines of text, as .npy")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--input", required=True, help="text file, one text per line; - for stdin (required)")
    p.add_argument("--out", required=True, help="new .npy file: one row per input line (required)")
    p.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="mean over real tokens, or the first token's state (default: an embedding model's own, "
                        "a GGUF file's pooling_type, where it is one of these; else mean)")
    p.add_argument("--prompt-name", default=None,
                   help="the checkpoint's prompt of this name (config_sentence_transformers.json: EmbeddingGemma's "
                        "query, document ...) before each text (default: its default prompt, if it names one)")
    p.add_argument("--prompt", default=None,
                   help="this text before each text, in place of a named prompt (e.g. 'query: ') (default: none)")
    p.add_argument("--normalize", action="store_true", help="scale each row to unit length (default: %(default)s)")
    p.add_argument("--batch-size", type=at_least(1), default=32, help="texts per forward pass (default: %(default)s)")
    p.set_defaults(func=cmd_embed)


def cmd_embed(args) -> None:
    import numpy as np

    from ..embed import POOLINGS, embed, prompt_named

    if args.prompt is not None and args.prompt_name is not None:
        raise LlmarchError("--prompt and --prompt-name both name what goes before each text: pass one")
    out = Path(args.out)
    if out.suffix != ".npy":
        raise LlmarchError(f"--out must name a .npy file, got {out}")
    if out.exists():
        raise LlmarchError(f"{out} exists; choose a new --out")
    check_out_dir(out.parent)
    if args.input == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LlmarchError(f"cannot read {args.input}: {getattr(e, 'strerror', None) or e}") from None
    lines = text.splitlines()
    model, tok = load_with_tokenizer(args.checkpoint)
    cfg = model.config
    pooling = args.pooling or (cfg.pooling if cfg.head == "embed" and cfg.pooling in POOLINGS else "mean")
    prompt = args.prompt if args.prompt is not None else prompt_named(tok, args.prompt_name)
    vectors = embed(model, tok, lines, pooling, args.batch_size, args.normalize, prompt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, out)
    said = f", each after {prompt!r}" if prompt else ""
    print(f"wrote {out}: {vectors.shape[0]} x {vectors.shape[1]} float32 ({pooling} pooling{said})")
