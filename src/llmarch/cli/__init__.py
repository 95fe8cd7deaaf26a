"""The `llmarch` command: build_parser asks each command module (one per command or group) to add its
subparser, in the order --help lists them; main runs the chosen one. options.py holds what they share."""
from __future__ import annotations

import sys

from ..errors import LlmarchError
from . import analyze, bench, convert, embed, finetune, generate, info, quantize, scaling, synthetic, train
from .options import Parser

DESCRIPTION = ("The `llmarch` command: train, finetune, generate, eval, embed, convert, info. Bad input is one line "
               "on stderr\nand exit code 2.")
COMMANDS = (train, finetune, embed, generate, convert, quantize, bench, synthetic, info, analyze, scaling)


def build_parser() -> Parser:
    parser = Parser(prog="llmarch", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LlmarchError as e:
        code = getattr(e, "exit_code", 2)  # training stopped by a signal reports it (130, 143), as a shell does
        print(f"llmarch {args.command}: {'error: ' if code == 2 else ''}{e}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"llmarch {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
