"""The `llmarch` command: build_parser asks each command module (one per command or group) to add its
subparser, in the order --help lists them; main runs the chosen one. options.py holds what they share."""
from __future__ import annotations

import os
import sys
import warnings

from ..errors import LlmarchError, LlmarchWarning
from . import analyze, bench, compare, convert, embed, finetune, generate, info, quantize, scaling, serve, synthetic, train
from .options import Parser

COMMANDS = (train, finetune, embed, generate, serve, convert, quantize, bench, compare, synthetic, info, analyze, scaling)


def build_parser() -> Parser:
    parser = Parser(prog="llmarch")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parsers(sub)
    parser.description = (f"The `llmarch` command: {', '.join(sub.choices)} (each described below; `llmarch "
                          "COMMAND --help` lists its options). Bad input is one line on stderr and exit code 2; "
                          "a warning is a line on stderr.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    shown = warnings.showwarning

    def show(message, category, *rest, **kw) -> None:  # llmarch's own warnings: one line, no source location
        if issubclass(category, LlmarchWarning):
            print(f"llmarch {args.command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, *rest, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("always", LlmarchWarning)
        warnings.showwarning = show
        try:
            args.func(args)
        except LlmarchError as e:
            code = getattr(e, "exit_code", 2)  # training stopped by a signal reports it (130, 143), as a shell does
            if code != 2 and os.environ.get("RANK", "0") != "0":  # every process stopped alike: rank 0 says so
                return code
            print(f"llmarch {args.command}: {'error: ' if code == 2 else ''}{e}", file=sys.stderr)
            return code
        except BrokenPipeError:  # the reader went away (`llmarch info ... | head`): stop quietly, as cat does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush fails no more
            return 141  # 128 + SIGPIPE, what a shell reports for a tool the signal stopped
        except OSError as e:  # the machine said no: a read-only or full disk, a path that is a file
            where = f"{e.filename}: " if e.filename else ""
            print(f"llmarch {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
            return 2
        except (MemoryError, RuntimeError) as e:  # torch's CPU allocator raises a RuntimeError
            if not _out_of_memory(e):
                raise
            detail = str(e).split("DefaultCPUAllocator: ")[-1].splitlines()[0]
            print(f"llmarch {args.command}: error: out of memory: {detail}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"llmarch {args.command}: interrupted", file=sys.stderr)
            return 130
    return 0


def _out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(e)
