"""What the commands share: the parser whose errors are one line, one option per dataclass field (a model's
overrides, a training config), reading those options back, and a checkpoint loaded with its tokenizer."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..config import ModelConfig
from ..presets import resolve

CHECKPOINT_HELP = "llmarch checkpoint or run directory, or a Hugging Face directory (required)"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parse_value(type_text: str, name: str):
    base = type_text.split("|")[0].strip()
    optional = "None" in type_text

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        if base == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise argparse.ArgumentTypeError(f"{name} must be true or false, got {text!r}")
        try:
            return {"int": int, "float": float, "str": str}[base](text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {base}, got {text!r}") from None

    parse.__name__ = base
    return parse


class _Given(argparse.Action):
    """Stores the value and remembers that the user gave the option (a resumed run tells given from default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        vars(namespace).setdefault("_given", set()).add(self.dest)


def given(args: argparse.Namespace, prefix: str = "") -> set[str]:
    """The fields whose options the user gave on the command line."""
    return {d.removeprefix(prefix) for d in getattr(args, "_given", set()) if d.startswith(prefix)}


def add_fields(group, cls, prefix: str = "", keep_defaults: bool = True, skip: tuple[str, ...] = ()) -> None:
    """One option per dataclass field: `--n-kv-heads 2`, `--tie-embeddings false`."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if keep_defaults else None
        shown = f.default if keep_defaults else "the model's"
        group.add_argument(flag, dest=prefix + f.name, action=_Given, type=_parse_value(str(f.type), f.name), default=default,
                           metavar=str(f.type).split("|")[0].strip().upper(), help=f"(default: {shown})")


def collect(args: argparse.Namespace, cls, prefix: str = "", only_set: bool = False) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, prefix + f.name):
            value = getattr(args, prefix + f.name)
            if not (only_set and value is None):
                out[f.name] = value
    return out


def model_overrides(parser: argparse.ArgumentParser) -> None:
    add_fields(parser.add_argument_group("model overrides (any ModelConfig field)"), ModelConfig,
               keep_defaults=False)


def model_config(args) -> ModelConfig:
    return resolve(args.model, **collect(args, ModelConfig, only_set=True))


def load_with_tokenizer(checkpoint):
    from .. import load
    from ..data.tokenizer import check_fits
    from ..interop.gguf_tokenizer import checkpoint_tokenizer  # a checkpoint directory's, or a .gguf file's
    from ..rundir import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model, tok = load(path), checkpoint_tokenizer(path)
    check_fits(tok, model.config.vocab_size)
    return model, tok
