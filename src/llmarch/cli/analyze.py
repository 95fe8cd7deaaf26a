"""`llmarch analyze`: attention maps, logit lens and activation patching of one prompt (analysis/plots.py)."""
from __future__ import annotations

from pathlib import Path

from .options import CHECKPOINT_HELP, check_out_dir, load_with_tokenizer


def add_parsers(sub) -> None:
    p = sub.add_parser("analyze", help="attention maps, logit lens and activation patching of one prompt, as PNGs")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--prompt", required=True, help="the text to analyse (required)")
    p.add_argument("--corrupted", default=None,
        help="a prompt of the same length in tokens: patch its residual stream towards --prompt's prediction "
             "(default: %(default)s)")
    p.add_argument("--out", required=True, help="directory for the PNGs and summary.json (required)")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> None:
    from ..analysis.plots import analyze
    from ..progress import Bar

    check_out_dir(args.out)
    model, tok = load_with_tokenizer(args.checkpoint)
    with Bar(0, "analyze", "steps") as bar:
        summary = analyze(model.eval(), tok, args.prompt, Path(args.out), args.corrupted, progress=bar)
    said = f"output {summary['output']!r}" if "output" in summary else f"prediction {summary['prediction']!r}"
    print(f"{said}; wrote {', '.join(summary['files'])} and summary.json to {args.out}")
