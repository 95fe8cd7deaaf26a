"""`llmarch compare` (compare/): every architecture trained at the same compute on the same corpus, measured in
one run, and the "choosing an architecture" table generated from the numbers."""
from __future__ import annotations

import shlex
import sys

from pathlib import Path

from ..errors import LlmarchError
from .options import add_fields, check_out_dir, collect, given


def add_parsers(sub) -> None:
    from ..compare.entries import BY_KEY
    from ..compare.run import CompareConfig

    p = sub.add_parser("compare", help="train each architecture at the same compute and measure loss, speed, "
                                       "memory, decode state vs context and synthetic recall; writes the "
                                       "'choosing an architecture' table, CSV, JSON and plots")
    p.add_argument("--families", help=f"comma-separated, in table order (choices: {', '.join(BY_KEY)}) "
                                      "(default: all of them)")
    p.add_argument("--out", required=True, help="directory for results/, runs/, speed.json, compare.csv, "
                                                "compare.json, the plots and the table; a stopped run resumes "
                                                "from it (required)")
    p.add_argument("--doc", help="also write the page here (e.g. docs/choosing-an-architecture.md), its plots "
                                 "under figures/ beside it and its CSV and JSON next to it (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="each training run's progress (default: %(default)s)")
    add_fields(p.add_argument_group("comparison"), CompareConfig)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> None:
    from ..compare.entries import select
    from ..compare.run import CompareConfig, compare

    entries = select(args.families)
    cc = CompareConfig(**collect(args, CompareConfig))
    cc.validate()
    check_out_dir(args.out)
    if args.doc and (not args.doc.endswith(".md") or Path(args.doc).is_dir()):
        raise LlmarchError(f"--doc {args.doc}: the page is a markdown file (ending .md)")
    # the command as given, so the page names what regenerates it
    options = [("--families", args.families)] + [(f"--{n.replace('_', '-')}", getattr(args, n))
                                                  for n in sorted(given(args))]
    command = shlex.join(["llmarch", "compare", *(_text(v) for o in options if o[1] is not None for v in o),
                          "--out", args.out] + (["--doc", args.doc] if args.doc else []))
    done = compare(entries, cc, args.out, args.doc, command=command, verbose=args.verbose,
                   log=lambda m: print(m, file=sys.stderr, flush=True))
    for name, path in done["files"].items():
        print(f"{name}: {path}")


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
