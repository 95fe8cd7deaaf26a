"""What the commands share: the parser whose errors are one line, one option per dataclass field (a model's
overrides, a training config), reading those options back, and a checkpoint loaded with its tokenizer."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import math
import re
import sys
from typing import Any, Callable

from ..config import ModelConfig
from ..presets import resolve

CHECKPOINT_HELP = "llmarch checkpoint or run directory, a Hugging Face directory or a .gguf file (required)"


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
        if base in ("list", "dict"):  # --layer-types '["local", "global"]', --layer-overrides '{"local": {...}}'
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = None
            if base == "list" and value is None and text:
                value = [t.strip() for t in text.split(",")]  # --layer-types local,local,global
            if not isinstance(value, list if base == "list" else dict):
                kind = "a JSON list or comma-separated names" if base == "list" else "a JSON object"
                raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {text!r}")
            return value
        if base == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise argparse.ArgumentTypeError(f"{name} must be true or false, got {text!r}")
        try:
            value = {"int": int, "float": float, "str": str}[base](text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {base}, got {text!r}") from None
        if base == "float" and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number, got {text!r}")
        return value

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


def finite(text: str) -> float:
    """A float option's type: NaN and infinity are refused where they are typed, not found later as NaN."""
    return _parse_value("float", "the value")(text)


def at_least(low: int, below: int = 2**63) -> Callable[[str], int]:
    """An int option's type that refuses values below `low` (and from `below` on: past a C long, torch and
    numpy overflow)."""
    def parse(text: str) -> int:
        value = _parse_value("int", "the value")(text)
        if not low <= value < below:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}" if value < low else
                                             f"must be below {below}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """Each dataclass field's comment in its class' source, the help of its option: the comment after the
    field, else the comment lines right above it."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):  # no source (a frozen build): options without descriptions
        return {}
    docs, block = {}, []
    for line in lines:
        if line.strip().startswith("#"):
            block.append(line.strip().lstrip("#").strip())
            continue
        m = re.match(r"\s+(\w+): [^#]*?(?:#\s*(.*))?$", line)
        if m and m[1] not in docs:
            docs[m[1]] = (m[2] or " ".join(block)).strip()
        block = []
    return docs


@functools.cache
def field_choices() -> dict[str, tuple[str, ...]]:
    """The values a string field of a config may take, from the registries and constants that check them,
    listed in its option's help (fields checked against an inline tuple list theirs in their comment)."""
    from ..config import HEADS, POOLINGS, QK_NORMS
    from ..layers import ATTENTION, FFNS, NORMS, POSITIONS
    from ..layers.attention_kinds import ATTENTION_KINDS
    from ..layers.mixer import MIXERS
    from ..train.objectives import OBJECTIVES
    from ..train.pretrain import PARALLEL

    return {"ffn": tuple(FFNS), "norm": tuple(NORMS), "positions": tuple(POSITIONS), "attn_impl": tuple(ATTENTION),
            "attention": tuple(ATTENTION_KINDS), "mixer": tuple(MIXERS), "head": HEADS, "pooling": POOLINGS,
            "qk_norm": QK_NORMS, "objective": tuple(OBJECTIVES), "parallel": PARALLEL}  # tokenizer: also a checkpoint's


def add_fields(group, cls, prefix: str = "", keep_defaults: bool = True, skip: tuple[str, ...] = (),
               unset: str = "the model's") -> None:
    """One option per dataclass field: `--n-kv-heads 2`, `--tie-embeddings false`, described by the field's
    comment (field_docs) and the values it may take (field_choices). keep_defaults False: an option left out
    is None (collect's only_set leaves it out) and its help names `unset` as the default (or, where `unset`
    is empty, the field's)."""
    docs, choices = field_docs(cls), field_choices()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if keep_defaults else None
        shown = f.default if keep_defaults or not unset else unset
        listed = f" (choices: {', '.join(choices[f.name])})" if f.name in choices and "str" in str(f.type) else ""
        listed += {"list": " (a JSON list, or names separated by commas)", "dict": " (a JSON object)"}.get(
            str(f.type).split("|")[0].strip(), "")
        text = f"{docs.get(f.name, '')}{listed} (default: {shown})".replace("%", "%%")
        group.add_argument(flag, dest=prefix + f.name, action=_Given, type=_parse_value(str(f.type), f.name),
                           default=default, metavar=str(f.type).split("|")[0].strip().upper(), help=text)


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


def device_options(parser, what: str) -> None:
    """--device and --dtype of a command that runs a checkpoint."""
    from ..device import DTYPES

    parser.add_argument("--device", default=None,
                        help=f"{what} on cpu, cuda, cuda:N or mps (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None,
                        help="cast the weights to this dtype (choices: %(choices)s) (default: as stored)")


def speculation_options(parser, applies: str) -> None:
    """--prompt-lookup, --draft and --num-draft (generate/speculative.py, generate/draft_model.py); `applies`
    says to what, where the command's help says it."""
    parser.add_argument("--prompt-lookup", type=at_least(0), default=0, metavar="N",
                        help="speculative decoding with drafts of up to N tokens looked up in the context; greedy, "
                        f"the same output in fewer steps where it repeats its context{applies} (0: off) "
                        "(default: %(default)s)")
    parser.add_argument("--draft", default=None, metavar="CKPT",
                        help="speculative decoding: this smaller checkpoint, with the same tokenizer, proposes "
                        "tokens that --checkpoint checks K at a time (or a Gemma 4 assistant drafter, which reads "
                        "--checkpoint's states); greedy output unchanged, sampled output from "
                        f"the same distribution{applies} (default: %(default)s, off)")
    parser.add_argument("--num-draft", type=at_least(1), default=None, metavar="K",
                        help="tokens the --draft proposes per forward of --checkpoint (default: 4)")


def penalty_options(parser) -> None:
    """--repetition-penalty, --presence-penalty and --frequency-penalty (generate/penalties.py)."""
    parser.add_argument("--repetition-penalty", type=finite, default=1.0, metavar="THETA",
                        help="> 0: the logits of tokens already in the prompt or output are divided by THETA "
                        "(multiplied where negative; CTRL's penalty, as transformers' and llama.cpp's); 1: off "
                        "(default: %(default)s)")
    parser.add_argument("--presence-penalty", type=finite, default=0.0,
                        help="subtracted from the logit of every token generated at least once (OpenAI's "
                        "presence_penalty); 0: off (default: %(default)s)")
    parser.add_argument("--frequency-penalty", type=finite, default=0.0,
                        help="times how often a token was generated, subtracted from its logit (OpenAI's "
                        "frequency_penalty); 0: off (default: %(default)s)")


def token_ids(text: str) -> tuple[int, ...]:
    """A comma-separated list of token ids (argparse type); "" is none."""
    try:
        ids = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"token ids separated by commas, got {text!r}") from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"token ids are >= 0, got {text!r}")
    return ids


def rule_options(parser) -> None:
    """--suppress-tokens and --begin-suppress-tokens (generate/rules.py), in place of the generation config's."""
    parser.add_argument("--suppress-tokens", type=token_ids, default=None, metavar="IDS",
                        help="token ids never generated, separated by commas (transformers' suppress_tokens); \"\": "
                        "none (default: the checkpoint's generation_config.json's suppress_tokens)")
    parser.add_argument("--begin-suppress-tokens", type=token_ids, default=None, metavar="IDS",
                        help="token ids not generated as the first new token, separated by commas; \"\": none "
                        "(default: the checkpoint's generation_config.json's begin_suppress_tokens)")


def penalties_of(args):
    """The Penalties the penalty_options ask for (checked), or None where none is on."""
    from ..generate.penalties import Penalties

    p = Penalties(args.repetition_penalty, args.presence_penalty, args.frequency_penalty)
    return p if p.active else None


def mmproj_option(p) -> None:
    """--mmproj: llama.cpp's vision projector file beside a .gguf --checkpoint (interop/gguf_mmproj.py)."""
    p.add_argument("--mmproj", default=None, metavar="FILE",
                   help="llama.cpp's vision projector file (mmproj-*.gguf) for a .gguf --checkpoint: its tower and "
                   "projector read as the family's (gemma3, idefics3), so the model reads --image / image parts; the "
                   "text model is then read dequantized (default: %(default)s)")


def load_with_tokenizer(checkpoint, device=None, dtype: str | None = None, gguf_kernels: bool = False,
                        mmproj=None):
    """A checkpoint's model (on `device`, cast to `dtype` if given; both checked before anything is read) and
    its tokenizer, which must fit the model's vocabulary. gguf_kernels: a .gguf file's Q4_0/Q4_1/Q8_0 matrices
    stay quantized on llmarch's kernels (interop/gguf_kernels.py) unless a dtype is asked for or the device is
    not the CPU (whose int4 tiles the kernels are); commands that decode ask for it, those that train or
    re-quantize do not. mmproj: a .gguf checkpoint's vision projector file (--mmproj), read with it."""
    from ..data.tokenizer import check_fits
    from ..interop.gguf_tokenizer import checkpoint_tokenizer  # a checkpoint directory's, or a .gguf file's
    from ..rundir import resolve_checkpoint

    model = load_for(checkpoint, device, dtype, gguf_kernels, mmproj)
    tok = checkpoint_tokenizer(resolve_checkpoint(checkpoint), mmproj)
    check_fits(tok, model.config.vocab_size)
    return model, tok


def load_for(checkpoint, device=None, dtype: str | None = None, gguf_kernels: bool = False, mmproj=None):
    """load_with_tokenizer's model alone (`llmarch bench --checkpoint` needs no tokenizer)."""
    from .. import from_gguf, load
    from ..device import DTYPES, parse_device
    from ..errors import LlmarchError
    from ..interop.gguf import is_gguf
    from ..interop.gguf_kernels import from_gguf_kernels
    from ..rundir import resolve_checkpoint

    device = parse_device(device) if device is not None else None
    path = resolve_checkpoint(checkpoint)
    if mmproj is not None:
        if not is_gguf(path):
            raise LlmarchError(f"--mmproj is a .gguf text model's vision projector; --checkpoint {checkpoint} is "
                               "not a .gguf file")
        kernels = gguf_kernels and dtype is None and (device is None or device.type == "cpu")
        model = from_gguf(path, device=device, mmproj=mmproj, kernels=kernels)
    elif gguf_kernels and dtype is None and (device is None or device.type == "cpu") and is_gguf(path):
        model = from_gguf_kernels(path, device)
    else:
        model = load(path, device)
    return model.to(DTYPES[dtype]) if dtype is not None else model


def check_out_dir(out, flag: str = "--out") -> None:
    """An output directory that can be made and written: not a file, under a writable parent (checked before
    any work, rather than found at the first checkpoint)."""
    import os
    from pathlib import Path

    from ..errors import LlmarchError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LlmarchError(f"{flag} {out} is a file; it names a directory")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise LlmarchError(f"{flag} {out}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise LlmarchError(f"{flag} {out}: {ancestor} is not writable")


def check_out_file(path, flag: str) -> None:
    """An output file that can be written once the work is done: not a directory, its directory makeable and
    writable (checked before the work, whose results a bad path would lose)."""
    from pathlib import Path

    from ..errors import LlmarchError

    path = Path(path)
    if path.is_dir():
        raise LlmarchError(f"{flag} {path} is a directory; it names a file")
    if path.parent.exists() and not path.parent.is_dir():
        raise LlmarchError(f"{flag} {path}: {path.parent} is a file, not a directory")
    check_out_dir(path.parent, flag)
