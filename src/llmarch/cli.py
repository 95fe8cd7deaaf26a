"""The `llmarch` command: train, finetune, generate, eval, embed, convert, info. Bad input is one line on stderr
and exit code 2."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .errors import LlmarchError
from .presets import resolve


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


def _add_fields(group, cls, prefix: str = "", keep_defaults: bool = True, skip: tuple[str, ...] = ()) -> None:
    """One option per dataclass field: `--n-kv-heads 2`, `--tie-embeddings false`."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        default = f.default if keep_defaults else None
        shown = f.default if keep_defaults else "the model's"
        group.add_argument(flag, dest=prefix + f.name, type=_parse_value(str(f.type), f.name), default=default,
                           metavar=str(f.type).split("|")[0].strip().upper(), help=f"(default: {shown})")


def _collect(args: argparse.Namespace, cls, prefix: str = "", only_set: bool = False) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, prefix + f.name):
            value = getattr(args, prefix + f.name)
            if not (only_set and value is None):
                out[f.name] = value
    return out


def _model_overrides(parser: argparse.ArgumentParser) -> None:
    _add_fields(parser.add_argument_group("model overrides (any ModelConfig field)"), ModelConfig,
                keep_defaults=False)


def _model_config(args) -> ModelConfig:
    return resolve(args.model, **_collect(args, ModelConfig, only_set=True))


# ---- commands ---------------------------------------------------------------------------------------
def cmd_train(args) -> None:
    from .train import TrainConfig, train
    from .train.distributed import rank_and_world

    tc = TrainConfig(**_collect(args, TrainConfig))
    if args.nproc != 1:
        _launch_train(args, tc)
        return
    rank = rank_and_world()[0]
    if args.resume and args.model and rank == 0:
        print(f"llmarch train: resuming {args.out}; its checkpoint's model config is used, --model is ignored",
              file=sys.stderr)
    cfg = None if args.resume else _model_config(args) if args.model else None
    result = train(cfg, tc, args.out, resume=args.resume)
    if rank != 0:  # the processes of a torchrun job: rank 0 reports
        return
    final = list(result.val_losses.items())[-1]
    print(f"final validation loss {final[1]:.4f} at step {final[0]} "
          f"(unigram entropy of the training data: {result.unigram_entropy:.4f})")
    print(f"checkpoint: {result.checkpoint}")
    print(f"metrics: {Path(args.out) / 'metrics.csv'}, plot: {Path(args.out) / 'loss.png'}")
    if tc.sample_prompt:
        print("sample:")
        _generate_text(result.checkpoint, [tc.sample_prompt], tc.sample_tokens, 0.8, 50, None, tc.seed, True)


def _launch_train(args, tc) -> None:
    """--nproc N: the same command in N processes (train/launch.py), its options checked here first so that a
    mistake is reported once rather than by every process."""
    from .data.corpus import check_source
    from .train.launch import launch
    from .train.loop import check_out

    if args.nproc < 1:
        raise LlmarchError(f"--nproc must be positive, got {args.nproc}")
    if "LOCAL_RANK" in os.environ:
        raise LlmarchError("--nproc starts torchrun; under torchrun, leave it out")
    tc.validate()
    tc.check_world(args.nproc)
    check_source(tc.data)
    check_out(Path(args.out), args.resume)
    if not args.resume:
        if not args.model:
            raise LlmarchError("a fresh run needs --model")
        _model_config(args)  # an unknown preset or a bad override fails here
    launch(args.nproc, _train_argv(args), Path(args.out))


def _train_argv(args) -> list[str]:
    """The train command's options as parsed, spelled out for the processes --nproc starts (without --nproc)."""
    from .train import TrainConfig

    def text(value) -> str:  # as the option parsers read it back
        if value is None or isinstance(value, bool):
            return str(value).lower()
        return repr(value) if isinstance(value, float) else str(value)

    argv = ["train", f"--out={args.out}", *(["--resume"] if args.resume else []),
            *([f"--model={args.model}"] if args.model else [])]
    for name, value in [*_collect(args, TrainConfig).items(), *_collect(args, ModelConfig, only_set=True).items()]:
        argv.append(f"--{name.replace('_', '-')}={text(value)}")  # --x=value: a value may begin with "-"
    return argv


def _load_with_tokenizer(checkpoint):
    from . import load
    from .rundir import resolve_checkpoint
    from .data.tokenizer import check_fits, load_tokenizer

    path = resolve_checkpoint(checkpoint)
    model, tok = load(path), load_tokenizer(path)
    check_fits(tok, model.config.vocab_size)
    return model, tok


def _generate_text(checkpoint, prompts, max_new, temperature, top_k, top_p, seed, stream, num_beams=1,
                   length_penalty=1.0, early_stopping=False, compile=False) -> None:
    """Decoder-only models continue each prompt; encoder-decoders answer it (the prompt is the source)."""
    from .generate import generate
    from .transforms import for_cpu_decoding

    model, tok = _load_with_tokenizer(checkpoint)
    for_cpu_decoding(model)  # faster one-token matmuls on CPU (docs/benchmarks.md)
    encoded = [tok.encode(p) for p in prompts]
    if model.config.is_encoder_decoder:
        encoded = [ids + [tok.eos_id] for ids in encoded]  # sources end in eos, as in training
    if num_beams > 1:
        temperature, stream = 0.0, False
    if stream and len(prompts) == 1:
        if not model.config.is_encoder_decoder:
            print(prompts[0], end="", flush=True)
        new: list[int] = []
        shown = ""

        def show(ids):
            nonlocal shown
            new.append(int(ids[0]))
            text = tok.decode(new)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                print(text[len(shown):], end="", flush=True)
                shown = text

        generate(model, encoded, max_new, temperature, top_k, top_p, eos_id=tok.eos_id, seed=seed, on_tokens=show,
                 compile=compile)
        print()
        return
    rows = generate(model, encoded, max_new, temperature, top_k, top_p, eos_id=tok.eos_id, seed=seed,
                    num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
                    compile=compile)
    for i, row in enumerate(rows):
        if len(prompts) > 1:
            print(f"--- [{i}]")
        print(tok.decode(t for t in row if t != tok.eos_id))


def cmd_generate(args) -> None:
    from .generate.seq2seq import check_beam_args

    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    check_beam_args(args.num_beams, 0.0, args.length_penalty, early)  # before loading the checkpoint
    _generate_text(args.checkpoint, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                   args.seed, not args.no_stream, args.num_beams, args.length_penalty, early, args.compile)


def cmd_eval(args) -> None:
    from .data.dataset import load_data
    from .train.evaluate import evaluate
    from .train.objectives import objective_for

    model, tok = _load_with_tokenizer(args.checkpoint)
    data = load_data(args.data, tok, args.val_fraction)
    data.check_vocab(model.config.vocab_size)
    cfg = model.config  # masks and noise drawn from seed 0: the same figure on every run
    name = ("span" if tok.sentinel_ids else "infill") if cfg.is_encoder_decoder else "clm" if cfg.causal else "mlm"
    objective = objective_for(name, tok, context=cfg.context_length)
    result = evaluate(model, data, args.batch_size, args.max_tokens, objective)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.3f} "
              f"on {result['tokens']:,} validation tokens")


def cmd_finetune(args) -> None:
    from .train.finetune import FinetuneConfig, finetune

    result = finetune(args.checkpoint, FinetuneConfig(**_collect(args, FinetuneConfig)), args.out)
    if args.task == "seq2seq":
        print(f"validation exact match {result.exact_match:.4f} (trivial baseline: always the most common "
              f"target, {result.trivial_baseline:.4f}); validation loss {list(result.val_losses.values())[-1]:.4f}")
        print(f"checkpoint: {result.checkpoint}")
        return
    print(f"validation accuracy {result.accuracy:.4f} over {len(result.labels)} labels "
          f"(majority-class baseline {result.majority_baseline:.4f})")
    print(f"checkpoint: {result.checkpoint}")


def cmd_embed(args) -> None:
    import os

    import numpy as np

    from .embed import embed

    out = Path(args.out)
    if out.suffix != ".npy":
        raise LlmarchError(f"--out must name a .npy file, got {out}")
    if out.exists():
        raise LlmarchError(f"{out} exists; choose a new --out")
    if args.input == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LlmarchError(f"cannot read {args.input}: {getattr(e, 'strerror', None) or e}") from None
    lines = text.splitlines()
    model, tok = _load_with_tokenizer(args.checkpoint)
    vectors = embed(model, tok, lines, args.pooling, args.batch_size, args.normalize)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, out)
    print(f"wrote {out}: {vectors.shape[0]} x {vectors.shape[1]} float32 ({args.pooling} pooling)")


def cmd_convert(args) -> None:
    """Hugging Face directory -> llmarch checkpoint (--from-hf), or llmarch checkpoint -> HF directory (--to-hf)."""
    from . import from_hf, load
    from .checkpoint import save_model
    from .rundir import atomic_directory, resolve_checkpoint
    from .data.tokenizer import load_tokenizer
    from .interop import is_hf_dir, to_hf

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise LlmarchError(f"{out} exists and is not empty; choose a new --out")
    if args.from_hf:
        src = Path(args.from_hf)
        if not is_hf_dir(src):
            raise LlmarchError(f"{src} is not a Hugging Face checkpoint (no config.json with a model_type)")
        model = from_hf(src)

        def write(tmp: Path) -> None:
            save_model(model, tmp)
            if (src / "tokenizer.json").is_file():
                load_tokenizer(src).save(tmp)
    else:
        src = resolve_checkpoint(args.to_hf)
        model = load(src)

        labels = json.loads((src / "labels.json").read_text()) if (src / "labels.json").is_file() else None

        def write(tmp: Path) -> None:
            to_hf(model, tmp, tokenizer_from=src, labels=labels)
            if (src / "tokenizer.json").is_file():  # let transformers' generate stop where llmarch's does
                hf_cfg = json.loads((tmp / "config.json").read_text())
                hf_cfg["eos_token_id"] = load_tokenizer(src).eos_id
                (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")

    atomic_directory(out, write)
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters()):,} parameters)")


def cmd_bench(args) -> None:
    import torch

    from . import bench_attention, bench_context
    from .bench import BenchConfig, run_bench, to_markdown
    from .rundir import write_text_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    # the sub-benchmarks: (module, its config class, the prefix of its flags, its run function)
    subs = {"attention": (bench_attention, bench_attention.AttentionBenchConfig, "attn_",
                          bench_attention.run_attention_bench),
            "decode-context": (bench_context, bench_context.ContextBenchConfig, "ctx_", bench_context.run_context_bench)}
    if args.what in subs:
        module, config_cls, prefix, run = subs[args.what]
        result = run(config_cls(**_collect(args, config_cls, prefix)))
        table = module.to_markdown(result)
        if args.plot:
            module.plot(result, Path(args.plot))
    else:
        result = run_bench(_model_config(args), BenchConfig(**_collect(args, BenchConfig)))
        table = to_markdown(result)
    print(table)
    if args.out:
        write_text_atomic(Path(args.out), json.dumps(result, indent=2) + "\n")
    if args.markdown:
        write_text_atomic(Path(args.markdown), table + "\n")


def cmd_synthetic(args) -> None:
    from .data.synthetic import SyntheticTask
    from .train.synthetic import SyntheticConfig, train_synthetic

    task = SyntheticTask(name=args.task, **_collect(args, SyntheticTask, "task_"))
    result = train_synthetic(_model_config(args), task, SyntheticConfig(**_collect(args, SyntheticConfig)))
    if args.json:
        print(json.dumps(result))
    else:
        mixer = result["mixer"] if result["mixer"] != "attention" else f"attention {result['attention']}"
        print(f"{result['task']}: {result['model']} ({mixer}), {result['steps']} steps: "
              f"answer accuracy {result['accuracy']:.3f}, final training loss {result['final_train_loss']:.4f}")


def cmd_info(args) -> None:
    from .analysis import model_facts

    cfg = _model_config(args)
    facts = model_facts(cfg, args.dtype)
    if args.json:
        print(json.dumps(facts))
        return
    layers = f"{cfg.n_layers}+{cfg.n_decoder_layers} (encoder+decoder)" if cfg.is_encoder_decoder else cfg.n_layers
    heads = f", {cfg.n_heads} heads ({cfg.n_kv_heads} kv)" if cfg.attention_layers else ""
    ffn = f"ffn {cfg.ffn} {cfg.ffn_hidden}" if cfg.ffn != "none" else "no ffn"
    print(f"{cfg.name}: {layers} layers, d_model {cfg.d_model}{heads}, {ffn}, {cfg.norm} ({cfg.norm_placement}), "
          f"positions {cfg.positions}, vocab {cfg.vocab_size}, context {cfg.context_length}"
          + (f", block {cfg.block}" if cfg.block != "sequential" else "")
          + (f", mixer {_mixers(cfg)}" if cfg.mixer != "attention" else "")
          + (f", {cfg.n_experts} experts (top-{cfg.experts_per_token})" if cfg.n_experts else ""))
    print(f"parameters:               {facts['parameters']:,}")
    if facts["active_parameters"] != facts["parameters"]:
        print(f"active parameters:        {facts['active_parameters']:,} "
              f"({cfg.experts_per_token} of {cfg.n_experts} experts per token)")
    print(f"non-embedding parameters: {facts['non_embedding_parameters']:,}")
    print(f"training FLOPs per token: {facts['flops_per_token']:,}")
    if facts["kv_cache_bytes_per_token"]:
        print(f"KV-cache bytes per token: {facts['kv_cache_bytes_per_token']:,} ({args.dtype})")
    if facts["state_bytes_per_sequence"]:
        kind = ("constant in the context; SSM states in fp32" if cfg.mixer != "hyena"
                else f"{args.dtype}, a history of context_length {cfg.context_length} tokens")
        print(f"state bytes per sequence: {facts['state_bytes_per_sequence']:,} ({kind})")


def _mixers(cfg) -> str:
    attn = cfg.attention_layers
    if not attn:
        return cfg.mixer
    return f"{cfg.mixer} (attention in layers {', '.join(map(str, attn))})"


def cmd_analyze(args) -> None:
    from .analysis.plots import analyze

    model, tok = _load_with_tokenizer(args.checkpoint)
    summary = analyze(model.eval(), tok, args.prompt, Path(args.out), args.corrupted)
    said = f"output {summary['output']!r}" if "output" in summary else f"prediction {summary['prediction']!r}"
    print(f"{said}; wrote {', '.join(summary['files'])} and summary.json to {args.out}")


def _fit_and_plot(pts, out: Path | None):
    from .scaling import fit_chinchilla
    from .scaling.plots import isoflop, loss_vs_compute

    fit = fit_chinchilla(pts["params"], pts["tokens"], pts["loss"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        loss_vs_compute(pts, fit, out / "loss-vs-compute.png")
        isoflop(pts, fit, out / "isoflop.png")
        (out / "fit.json").write_text(json.dumps(fit.to_dict(), indent=2) + "\n")
    return fit


def _print_fit(fit, pts) -> None:
    from .scaling import fit_power_law

    print("L(N, D) = {E:.4g} + {A:.4g} / N^{alpha:.4f} + {B:.4g} / D^{beta:.4f}".format(**fit.to_dict()))
    varies = {var: len(set(pts[var].tolist())) > 1 for var in ("params", "tokens")}
    for var, other in (("params", "tokens"), ("tokens", "params")):
        if varies[var] and not varies[other]:  # a one-variable sweep: Kaplan's power law in that variable
            k = fit_power_law(pts[var], pts["loss"], var)
            print(f"L({var}) = ({k.x_c:.4g} / {var})^{k.alpha:.4f}, alpha 95% CI "
                  f"[{k.alpha_ci[0]:.4f}, {k.alpha_ci[1]:.4f}]")


def cmd_scaling_fit(args) -> None:
    from .scaling import read_points

    pts = read_points(args.file, args.params_column)
    fit = _fit_and_plot(pts, Path(args.plots) if args.plots else None)
    if args.json:
        print(json.dumps(fit.to_dict()))
    else:
        _print_fit(fit, pts)
        if args.plots:
            print(f"plots: {Path(args.plots) / 'loss-vs-compute.png'}, {Path(args.plots) / 'isoflop.png'}")


def cmd_scaling_optimal(args) -> None:
    from .scaling import compute_optimal, fit_chinchilla, read_points

    pts = read_points(args.fit, args.params_column)
    best = compute_optimal(fit_chinchilla(pts["params"], pts["tokens"], pts["loss"]), args.flops)
    if args.json:
        print(json.dumps(best))
    else:
        print(f"compute-optimal for {args.flops:.3g} FLOPs: {best['params']:.4g} parameters, "
              f"{best['tokens']:.4g} tokens")


def cmd_scaling_sweep(args) -> None:
    from .scaling import read_points
    from .scaling.sweep import CSV_NAME, parse_budgets, parse_sizes, sweep
    from .train import TrainConfig
    from .train.distributed import rank_and_world

    sizes, budgets = parse_sizes(args.sizes), parse_budgets(args.tokens)
    tc = TrainConfig(**_collect(args, TrainConfig))
    lead = rank_and_world()[0] == 0  # under torchrun every process trains, the first one reports
    rows = sweep(_model_config(args), sizes, budgets, tc, args.out, verbose=not args.quiet,
                 log=lambda m: print(m, file=sys.stderr) if lead else None)
    out = Path(args.out)
    if not lead:
        return
    print(f"{len(rows)} runs in {out / CSV_NAME}")
    if len(rows) >= 5:
        pts = read_points(out / CSV_NAME)
        _print_fit(_fit_and_plot(pts, out), pts)
        print(f"fit: {out / 'fit.json'}; plots: {out / 'loss-vs-compute.png'}, {out / 'isoflop.png'}")


def build_parser() -> argparse.ArgumentParser:
    from .embed import POOLINGS
    from .train import TrainConfig
    from .train.finetune import FinetuneConfig

    parser = Parser(prog="llmarch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a model (causal LM) on text")
    p.add_argument("--model",
        help="preset name or .json/.yaml config (not needed with --resume) (default: %(default)s)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.csv, loss.png (required)")
    p.add_argument("--resume", action="store_true",
        help="continue the run in --out from its latest checkpoint (default: %(default)s)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
        help="train in N processes on this machine, started through torchrun (one per GPU; on CPU, gloo); "
        "--batch-size stays the global batch; several machines: docs/distributed.md (default: %(default)s)")
    _add_fields(p.add_argument_group("training"), TrainConfig)
    _model_overrides(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="fine-tune a checkpoint as a text classifier or sequence-to-sequence model")
    p.add_argument("--checkpoint", required=True,
                   help="pretrained llmarch checkpoint or run directory, or a Hugging Face directory; with --task "
                   "seq2seq also a preset or config file, to train from scratch (required)")
    p.add_argument("--out", required=True, help="run directory for the fine-tuned checkpoint (required)")
    _add_fields(p.add_argument_group("fine-tuning"), FinetuneConfig)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("embed", help="sentence embeddings for lines of text, as .npy")
    p.add_argument("--checkpoint", required=True,
                   help="llmarch checkpoint or run directory, or a Hugging Face directory (required)")
    p.add_argument("--input", required=True, help="text file, one text per line; - for stdin (required)")
    p.add_argument("--out", required=True, help="new .npy file: one row per input line (required)")
    p.add_argument("--pooling", choices=POOLINGS, default="mean",
                   help="mean over real tokens, or the first token's state (default: %(default)s)")
    p.add_argument("--normalize", action="store_true", help="scale each row to unit length (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default: %(default)s)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("generate", help="generate text from a checkpoint")
    p.add_argument("--checkpoint", required=True,
                   help="llmarch checkpoint or run directory, or a Hugging Face directory (required)")
    p.add_argument("--prompt", required=True, action="append", help="prompt text; repeat for a batch (required)")
    p.add_argument("--max-new-tokens", type=int, default=100,
        help="tokens to generate after each prompt (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=50, help="sample from the k most likely tokens (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: %(default)s)")
    p.add_argument("--no-stream", action="store_true",
        help="print when done instead of token by token (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="decode with one compiled fixed-shape step (CUDA graphs "
                   "on CUDA); compiling takes a while, so it pays off for long outputs (default: %(default)s)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams; greedy, no "
                   "sampling (default: %(default)s)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam scores are log-probability / length^this (default: %(default)s)")
    p.add_argument("--early-stopping", choices=["true", "false", "never"], default="false",
                   help="beam search: stop a row once it has num-beams finished hypotheses (true), when none "
                   "can improve at the current length (false) or at the longest (never) (default: %(default)s)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="perplexity of a checkpoint on held-out data")
    p.add_argument("--checkpoint", required=True,
                   help="llmarch checkpoint or run directory, or a Hugging Face directory (required)")
    p.add_argument("--data", default=None, help="text file, directory, glob or .jsonl (default: the stdlib corpus)")
    p.add_argument("--val-fraction", type=float, default=0.05,
        help="validation split, as in training (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per batch (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=None,
        help="evaluate at most this many tokens (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("convert", help="convert between Hugging Face and llmarch checkpoints")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--from-hf", metavar="DIR",
                       help="a Hugging Face checkpoint directory to read (this or --to-hf is required)")
    which.add_argument("--to-hf", metavar="DIR",
                       help="an llmarch checkpoint or run directory to export (this or --from-hf is required)")
    p.add_argument("--out", required=True, help="new output directory (required)")
    p.set_defaults(func=cmd_convert)

    from .bench import BenchConfig

    from .bench_attention import AttentionBenchConfig
    from .bench_context import ContextBenchConfig

    p = sub.add_parser("bench", help="training, decoding and prefill speed against transformers, in one run; "
                                     "`bench attention`: each attention kind (or mixer) against full over sequence "
                                     "lengths; `bench decode-context`: decode speed at long contexts per mixer")
    p.add_argument("what", nargs="?", choices=["model", "attention", "decode-context"], default="model",
                   help="model: a model against transformers; attention: one layer of each attention kind or "
                   "mixer; decode-context: tokens/s per mixer at each context length (default: %(default)s)")
    p.add_argument("--model", default="gpt-tiny", help="preset name or .json/.yaml config (default: %(default)s)")
    p.add_argument("--plot", help="bench attention, decode-context: write the plot (PNG) here (default: %(default)s)")
    p.add_argument("--out", help="write the results as JSON here (default: %(default)s)")
    p.add_argument("--markdown", help="write the markdown table here (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch CPU threads for both libraries (default: torch's)")
    _add_fields(p.add_argument_group("benchmark"), BenchConfig)
    _add_fields(p.add_argument_group("bench attention (--attn-...)"), AttentionBenchConfig, prefix="attn_")
    _add_fields(p.add_argument_group("bench decode-context (--ctx-...)"), ContextBenchConfig, prefix="ctx_")
    _model_overrides(p)
    p.set_defaults(func=cmd_bench)

    from .data.synthetic import TASKS, SyntheticTask
    from .train.synthetic import SyntheticConfig

    p = sub.add_parser("synthetic", help="train a model on a synthetic long-range task (associative recall, "
                                         "selective copying) and report its answer accuracy")
    p.add_argument("task", choices=TASKS, help="recall: associative recall; copy: selective copying")
    p.add_argument("--model", default="gpt-tiny", help="preset name or .json/.yaml config (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    _add_fields(p.add_argument_group("task (--task-...)"), SyntheticTask, prefix="task_", skip=("name",))
    _add_fields(p.add_argument_group("training"), SyntheticConfig)
    _model_overrides(p)
    p.set_defaults(func=cmd_synthetic)

    p = sub.add_parser("info", help="parameter count, FLOPs and KV-cache size of a model")
    p.add_argument("model", help="preset name or .json/.yaml config")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.add_argument("--dtype", default="bf16", help="element type for KV-cache bytes (default: %(default)s)")
    _model_overrides(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("analyze", help="attention maps, logit lens and activation patching of one prompt, as PNGs")
    p.add_argument("--checkpoint", required=True,
                   help="llmarch checkpoint or run directory, or a Hugging Face directory (required)")
    p.add_argument("--prompt", required=True, help="the text to analyse (required)")
    p.add_argument("--corrupted", default=None,
        help="a prompt of the same length in tokens: patch its residual stream towards --prompt's prediction "
             "(default: %(default)s)")
    p.add_argument("--out", required=True, help="directory for the PNGs and summary.json (required)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("scaling", help="scaling laws: train a sweep, fit Chinchilla and Kaplan laws, compute-optimal "
                                       "sizes")
    scaling = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = scaling.add_parser("fit", help="fit L(N, D) = E + A/N^alpha + B/D^beta to a sweep CSV (params,tokens,loss); "
                                       "Kaplan's L(N) or L(D) too for one-variable sweeps")
    q.add_argument("file", help="the sweep CSV (required)")
    q.add_argument("--json", action="store_true", help="print one JSON object: E, A, B, alpha, beta "
                                                       "(default: %(default)s)")
    q.add_argument("--plots", default=None, help="directory for loss-vs-compute.png, isoflop.png and fit.json "
                                                 "(default: %(default)s)")
    q.add_argument("--params-column", default="params", help="the column read as N: a sweep's params is "
                   "non-embedding (Kaplan), total_params counts the embeddings too (Chinchilla) (default: %(default)s)")
    q.set_defaults(func=cmd_scaling_fit)
    q = scaling.add_parser("optimal", help="the parameters and tokens that minimise the fitted loss for --flops")
    q.add_argument("--flops", type=float, required=True, help="the budget C = 6ND (required)")
    q.add_argument("--fit", required=True, help="the sweep CSV to fit (required)")
    q.add_argument("--json", action="store_true", help='print {"params": N, "tokens": D} (default: %(default)s)')
    q.add_argument("--params-column", default="params", help="the column read as N (default: %(default)s)")
    q.set_defaults(func=cmd_scaling_optimal)
    q = scaling.add_parser("sweep", help="train every size at every token budget from a base config; a CSV row "
                                         "per run, then the fit and its plots")
    q.add_argument("--model", required=True, help="base preset name or .json/.yaml config (required)")
    q.add_argument("--sizes", required=True, help="d_model x n_layers, comma-separated, e.g. 64x2,128x4 (required)")
    q.add_argument("--tokens", required=True, help="training tokens per run, comma-separated, e.g. 2e5,8e5 "
                                                   "(required)")
    q.add_argument("--out", required=True, help="directory for sweep.csv, runs/, fit.json and plots (required)")
    q.add_argument("--quiet", action="store_true", help="no per-run progress (default: %(default)s)")
    _add_fields(q.add_argument_group("training (shared by every run)"), TrainConfig,
                skip=("steps", "eval_every", "sample_prompt", "sample_tokens", "keep_checkpoints"))
    _model_overrides(q)
    q.set_defaults(func=cmd_scaling_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LlmarchError as e:
        print(f"llmarch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmarch {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
