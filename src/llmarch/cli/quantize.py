"""`llmarch quantize`: a checkpoint's weights to int8 or int4 (quant/), written as a quantized checkpoint that
generate, eval and bench load directly (llmarch.load)."""
from __future__ import annotations

from pathlib import Path

from ..errors import LlmarchError
from .options import CHECKPOINT_HELP

CALIBRATION_TOKENS = 128 * 512  # GPTQ's 128 sequences (of 2048 there); a few minutes for SmolLM2-135M on 2 cores


def add_parsers(sub) -> None:
    from ..quant.scheme import GROUP_SIZES, METHODS

    p = sub.add_parser("quantize", help="quantize a checkpoint's weights to int8 or int4")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--method", required=True, choices=METHODS,
                   help="int8 per output channel, round-to-nearest or fitted by GPTQ on calibration text; int4 in "
                        "groups, round-to-nearest, fitted by HQQ, or by GPTQ (required)")
    p.add_argument("--group-size", type=int, default=None,
                   help=f"int4: input columns per scale and zero, one of {', '.join(map(str, GROUP_SIZES))}; it "
                        "must divide every layer's input width (default: 64)")
    p.add_argument("--keep-head", action="store_true",
                   help="leave the LM head in full precision (default: quantize it too)")
    p.add_argument("--embeddings", action="store_true",
                   help="the token embedding table to int8 per row too (not with --keep-head) (default: kept)")
    p.add_argument("--calibration-tokens", type=int, default=None,
                   help=f"int4-gptq and int8-gptq: tokens of the embedded corpus's training split to calibrate "
                        f"on, in sequences of up to 512 (default: {CALIBRATION_TOKENS})")
    p.add_argument("--out", required=True, help="new output directory (required)")
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args) -> None:
    from ..quant import Scheme
    from ..quant.apply import check_widths, quantize, weight_bytes
    from ..quant.checkpoint import save_quantized
    from ..rundir import atomic_directory
    from .options import load_with_tokenizer

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise LlmarchError(f"{out} exists and is not empty; choose a new --out")
    scheme = Scheme(args.method, args.group_size or 64, head=not args.keep_head,
                    embeddings=args.embeddings)  # checked before loading anything
    if args.group_size is not None and not scheme.int4:
        raise LlmarchError(f"--group-size is for the int4 methods; {scheme.method} has one scale per output row")
    tokens = args.calibration_tokens
    if tokens is not None and not scheme.calibrated:
        raise LlmarchError(f"--calibration-tokens is for --method int4-gptq or int8-gptq, not {scheme.method}")
    if tokens is not None and tokens < 1:
        raise LlmarchError(f"--calibration-tokens must be at least 1, got {tokens}")
    model, tok = load_with_tokenizer(args.checkpoint)
    if getattr(model, "quantization", None) is not None:
        raise LlmarchError(f"{args.checkpoint} is already quantized ({model.quantization.method})")
    check_widths(model, scheme)
    before = weight_bytes(model)
    calibration = None
    if scheme.calibrated:
        from ..quant.gptq import calibration_ids

        calibration = calibration_ids(tok, tokens or CALIBRATION_TOKENS, model.config.context_length)
    quantize(model.eval(), scheme, calibration)

    def write(tmp: Path) -> None:
        save_quantized(model, scheme, tmp)
        tok.save(tmp)

    atomic_directory(out, write)
    print(f"wrote {out} ({scheme.method}{f', group size {scheme.group_size}' if scheme.int4 else ''}): "
          f"weights {before / 2**20:.1f} MiB -> {weight_bytes(model) / 2**20:.1f} MiB")
