"""`llmarch convert`: a Hugging Face directory to an llmarch checkpoint (--from-hf), or back (--to-hf), or an
llmarch checkpoint to a GGUF file (--to-gguf, interop/gguf_writer.py). The
tokenizer travels both ways with the files it came with (tokenizer_config.json and its chat template,
generation_config.json, special-token ids): data/tokenizer.py keeps them, interop/hf.py's to_hf writes them."""
from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from pathlib import Path

from ..errors import LlmarchError

# interop.gguf_writer.TYPES, spelled out so that building the parser imports no torch (tests/test_cli.py checks)
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q6_k", "q4_k_m", "mxfp4")


def add_parsers(sub) -> None:
    p = sub.add_parser("convert", help="convert between Hugging Face and llmarch checkpoints")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--from-hf", metavar="DIR", help="a Hugging Face checkpoint directory to read "
                                                        "(this, --to-hf or --to-gguf is required)")
    which.add_argument("--to-hf", metavar="DIR", help="an llmarch checkpoint or run directory to export; a "
                                                      "quantized one (a QLoRA run's) as its float model, dequantized "
                                                      "with its adapters merged (this, --from-hf or --to-gguf is "
                                                      "required)")
    which.add_argument("--to-gguf", metavar="DIR",
                       help="an llmarch checkpoint (llama, qwen2, qwen3, gemma2, gemma3_text or phi3 family) to "
                            "write as the GGUF file --out (this, --from-hf or --to-hf is required)")
    p.add_argument("--gguf-type", default="f16", choices=GGUF_TYPES,
                   help="--to-gguf: the matrices' tensor type (q8_0 ... q5_1: llama.cpp's blocks of 32; a row "
                        "that is not a multiple of 32 stays F16; q4_k: blocks of 256, a row that is not a multiple "
                        "of 256 in q5_0; q4_0, q4_1 and q4_k load onto llmarch's int4 kernel exactly; mxfp4: a "
                        "mixture's expert matrices in MXFP4, the rest F16); norms stay F32 (default: %(default)s)")
    p.add_argument("--mmproj-out", default=None, metavar="FILE",
                   help="--to-gguf of a vision-language checkpoint (gemma3, idefics3, mistral3, internvl): its "
                        "tower and projector as llama.cpp's vision projector file FILE (mmproj, F32; "
                        "interop/gguf_mmproj_out.py), its text model as --out (default: %(default)s)")
    p.add_argument("--out", required=True, help="new output directory, or .gguf file for --to-gguf (required)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> None:
    """Hugging Face directory -> llmarch checkpoint (--from-hf), or llmarch checkpoint -> HF directory (--to-hf)."""
    from .. import from_hf, load
    from ..checkpoint import save_model
    from ..data.tokenizer import load_tokenizer
    from ..interop import is_hf_dir, to_hf
    from ..rundir import atomic_directory, resolve_checkpoint

    out = Path(args.out)
    if args.to_gguf:
        return write_gguf(args)
    if args.mmproj_out:
        raise LlmarchError("--mmproj-out writes a vision projector file beside --to-gguf's text model: give --to-gguf")
    if out.exists() and any(out.iterdir()):
        raise LlmarchError(f"{out} exists and is not empty; choose a new --out")
    if args.from_hf:
        src = Path(args.from_hf)
        if not is_hf_dir(src):
            raise LlmarchError(f"{src} is not a Hugging Face checkpoint (no config.json with a model_type)")
        model = from_hf(src)
        tok = load_tokenizer(src) if (src / "tokenizer.json").is_file() else None

        def write(tmp: Path) -> None:
            save_model(model, tmp)
            if tok is not None:
                tok.save(tmp)
    else:
        src = resolve_checkpoint(args.to_hf)
        model = load(src)
        labels = json.loads((src / "labels.json").read_text()) if (src / "labels.json").is_file() else None

        if src.suffix == ".gguf":  # its tokenizer and chat template are in its metadata
            from ..interop.gguf_tokenizer import checkpoint_tokenizer

            tokenizer_from = checkpoint_tokenizer(src)
        else:
            tokenizer_from = src

        def write(tmp: Path) -> None:
            to_hf(model, tmp, tokenizer_from=tokenizer_from, labels=labels)

    atomic_directory(out, write)
    print(f"wrote {out} ({written_parameters(model):,} parameters)")


def written_parameters(model) -> int:
    """The model's parameters as its config builds them, on the meta device: a quantized model's float weights
    (its own parameters are only its norms and embeddings), without dequantizing it a second time."""
    from ..models.build import empty_model

    return sum(p.numel() for p in empty_model(model.config).parameters())


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def write_gguf(args) -> None:
    """An llmarch checkpoint -> one GGUF file, written under a temporary name and renamed into place."""
    from .. import load
    from ..interop.gguf_tokenizer import checkpoint_tokenizer
    from ..interop.gguf_writer import to_gguf
    from ..rundir import resolve_checkpoint

    out, mmproj = Path(args.out), args.mmproj_out and Path(args.mmproj_out)
    for flag, path in (("--out", out), ("--mmproj-out", mmproj)):
        if path and (path.suffix != ".gguf" or path.exists()):
            raise LlmarchError(f"{flag} must be a new .gguf file for --to-gguf, got {path}")
    src = resolve_checkpoint(args.to_gguf)
    model = load(src)
    vision = model
    if mmproj:
        from ..interop.gguf_mmproj_out import text_model, to_mmproj

        model = text_model(vision)
    # the vocabulary goes in the file's metadata (a .gguf source has its own there): llama.cpp loads no file
    # without one, so a checkpoint without a tokenizer is refused rather than written half-usable
    if src.suffix != ".gguf" and not (src / "tokenizer.json").is_file():
        raise LlmarchError(f"{src} has no tokenizer.json; a GGUF file carries its vocabulary (llama.cpp loads none "
                           "without it): save the tokenizer with the checkpoint")
    tok = checkpoint_tokenizer(src)
    _write_new(out, lambda tmp: to_gguf(model, tmp, args.gguf_type, tok))
    if mmproj:
        _write_new(mmproj, lambda tmp: to_mmproj(vision, tmp, tok))
    print(f"wrote {out} ({args.gguf_type}, {written_parameters(model):,} parameters)"
          + (f" and {mmproj} (f32)" if mmproj else ""))


def _write_new(out: Path, write) -> None:
    """write(path) to a temporary name beside `out`, renamed into place when done, removed after any error."""
    # a fresh name of its own beside --out (a fixed one could be a file of the user's); SIGTERM ends the process
    # as an exception here, so the half-written file is removed as after any error
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    previous = signal.signal(signal.SIGTERM, _terminated) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
