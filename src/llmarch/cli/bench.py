"""`llmarch bench` (bench/): a model against transformers; `bench attention`, each attention kind or mixer over
sequence lengths; `bench decode-context`, decode speed at long contexts per mixer."""
from __future__ import annotations

import json
from pathlib import Path

from .options import add_fields, at_least, check_out_file, collect, model_config, model_overrides


def add_parsers(sub) -> None:
    from ..bench.attention import AttentionBenchConfig
    from ..bench.context import ContextBenchConfig
    from ..bench.model import BenchConfig

    p = sub.add_parser("bench", help="training, decoding and prefill speed against transformers, in one run; "
                                     "`bench attention`: each attention kind (or mixer) against full over sequence "
                                     "lengths; `bench decode-context`: decode speed at long contexts per mixer")
    p.add_argument("what", nargs="?", choices=["model", "attention", "decode-context"], default="model",
                   help="model: a model against transformers; attention: one layer of each attention kind or "
                   "mixer; decode-context: tokens/s per mixer at each context length (default: %(default)s)")
    p.add_argument("--model", default="gpt-tiny", help="preset name or .json/.yaml config (default: %(default)s)")
    p.add_argument("--checkpoint", help="instead of --model's random weights: an llmarch checkpoint (a quantized one "
                   "too), a Hugging Face directory or a .gguf file, measured as the decoding commands load it "
                   "(a GGUF file's matrices on the int4/int8 kernels); decoding and prefill, no training "
                   "(default: %(default)s)")
    p.add_argument("--plot", help="bench attention, decode-context: write the plot (PNG) here (default: %(default)s)")
    p.add_argument("--out", help="write the results as JSON here (default: %(default)s)")
    p.add_argument("--markdown", help="write the markdown table here (default: %(default)s)")
    p.add_argument("--threads", type=at_least(1), help="torch CPU threads for both libraries (default: torch's)")
    add_fields(p.add_argument_group("benchmark"), BenchConfig)
    add_fields(p.add_argument_group("bench attention (--attn-...)"), AttentionBenchConfig, prefix="attn_")
    add_fields(p.add_argument_group("bench decode-context (--ctx-...)"), ContextBenchConfig, prefix="ctx_")
    model_overrides(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> None:
    import torch

    from ..bench import attention, context
    from ..bench.model import BenchConfig, run_bench, to_markdown
    from ..rundir import write_text_atomic

    for flag in ("out", "markdown", "plot"):  # before the benchmark, whose results a bad path would lose
        if getattr(args, flag, None):
            check_out_file(getattr(args, flag), f"--{flag}")
    if args.threads:
        torch.set_num_threads(args.threads)
    # the sub-benchmarks: (module, its config class, the prefix of its flags, its run function)
    subs = {"attention": (attention, attention.AttentionBenchConfig, "attn_", attention.run_attention_bench),
            "decode-context": (context, context.ContextBenchConfig, "ctx_", context.run_context_bench)}
    if args.checkpoint and (args.what != "model" or args.vs_dense):
        from ..errors import LlmarchError

        raise LlmarchError(f"--checkpoint measures a checkpoint's decoding; bench {args.what}"
                           f"{' --vs-dense' if args.vs_dense else ''} builds its own random models")
    if args.what in subs:
        module, config_cls, prefix, run = subs[args.what]
        result = run(config_cls(**collect(args, config_cls, prefix)))
        table = module.to_markdown(result)
        if args.plot:
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            module.plot(result, Path(args.plot))
    elif args.checkpoint:
        from .options import load_for

        bc = BenchConfig(**collect(args, BenchConfig))
        model = load_for(args.checkpoint, bc.device, bc.dtype, gguf_kernels=True)
        result = run_bench(model.config, bc, model)
        table = to_markdown(result)
    else:
        result = run_bench(model_config(args), BenchConfig(**collect(args, BenchConfig)))
        table = to_markdown(result)
    print(table)
    for path, text in ((args.out, json.dumps(result, indent=2) + "\n"), (args.markdown, table + "\n")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(Path(path), text)
