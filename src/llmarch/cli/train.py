"""`llmarch train`: a model trained on text, in this process or (--nproc) in several started by torchrun."""
from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path

from ..config import ModelConfig
from ..errors import LlmarchError
from .generate import print_generation
from .options import add_fields, at_least, check_out_dir, collect, given, model_config, model_overrides


def add_parsers(sub) -> None:
    from ..train import TrainConfig

    p = sub.add_parser("train", help="pretrain a model on text: causal LM, masked LM, span corruption or "
                                     "text infilling")
    p.add_argument("--model",
        help="preset name or .json/.yaml config (not needed with --resume) (default: %(default)s)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.csv, loss.png (required)")
    p.add_argument("--resume", action="store_true",
        help="continue the run in --out from its latest checkpoint (default: %(default)s)")
    p.add_argument("--nproc", type=at_least(1), default=1, metavar="N",
        help="train in N processes on this machine, started through torchrun (one per GPU; on CPU, gloo); "
        "--batch-size stays the global batch; several machines: docs/distributed.md (default: %(default)s)")
    add_fields(p.add_argument_group("training"), TrainConfig)
    model_overrides(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    from ..train import TrainConfig, train
    from ..train.distributed import rank_and_world

    tc = TrainConfig(**collect(args, TrainConfig))
    tc.validate()
    check_out_dir(args.out)
    if args.resume:
        _check_resume(args)
    if args.nproc != 1:
        _launch_train(args, tc)
        return
    rank = rank_and_world()[0]
    cfg = None if args.resume else model_config(args) if args.model else None
    result = train(cfg, tc, args.out, resume=args.resume, given=given(args) & {f.name for f in fields(TrainConfig)})
    if rank != 0:  # the processes of a torchrun job: rank 0 reports
        return
    final = list(result.val_losses.items())[-1]
    print(f"final validation loss {final[1]:.4f} at step {final[0]} "
          f"(unigram entropy of the training data: {result.unigram_entropy:.4f})")
    print(f"checkpoint: {result.checkpoint}")
    print(f"metrics: {Path(args.out) / 'metrics.csv'}, plot: {Path(args.out) / 'loss.png'}")
    if tc.sample_prompt:
        print("sample:")
        print_generation(result.checkpoint, [tc.sample_prompt], tc.sample_tokens, 0.8, 50, None, tc.seed, True)


def _check_resume(args) -> None:
    """A resumed run keeps its model: the checkpoint's config is the model; --model and overrides may not differ."""
    from ..rundir import resolve_checkpoint

    overrides = collect(args, ModelConfig, only_set=True)
    if args.model or overrides:
        saved = ModelConfig.load(resolve_checkpoint(args.out) / "config.json")
        wanted = model_config(args) if args.model else saved.replace(**overrides)
        differ = sorted(k for k, v in wanted.to_dict().items() if k != "name" and saved.to_dict()[k] != v)
        if differ:
            raise LlmarchError(f"--resume keeps the run's model, but the given model has {differ[0]} "
                               f"{wanted.to_dict()[differ[0]]!r} where the run has {saved.to_dict()[differ[0]]!r}")


def _launch_train(args, tc) -> None:
    """--nproc N: the same command in N processes (train/launch.py), its options checked here first so that a
    mistake is reported once rather than by every process."""
    from ..data.corpus import check_source
    from ..train import TrainConfig
    from ..train.launch import launch
    from ..train.loop import check_out

    if "LOCAL_RANK" in os.environ:
        raise LlmarchError("--nproc starts torchrun; under torchrun, leave it out")
    if args.resume:  # checked once here; the processes then get the run's own settings spelled out
        from ..train.loop import saved_train_config

        tc = tc.resumed(saved_train_config(Path(args.out)), given(args) & {f.name for f in fields(TrainConfig)})
        vars(args).update(asdict(tc))
    tc.validate()
    tc.check_world(args.nproc)
    check_source(tc.data)
    check_out(Path(args.out), args.resume)
    if not args.resume:
        if not args.model:
            raise LlmarchError("a fresh run needs --model")
        model_config(args)  # an unknown preset or a bad override fails here
    launch(args.nproc, _train_argv(args), Path(args.out))


def _train_argv(args) -> list[str]:
    """The train command's options as parsed, spelled out for the processes --nproc starts (without --nproc)."""
    from ..train import TrainConfig

    def text(value) -> str:  # as the option parsers read it back
        if value is None or isinstance(value, bool):
            return str(value).lower()
        return repr(value) if isinstance(value, float) else str(value)

    argv = ["train", f"--out={args.out}", *(["--resume"] if args.resume else []),
            *([f"--model={args.model}"] if args.model else [])]
    for name, value in [*collect(args, TrainConfig).items(), *collect(args, ModelConfig, only_set=True).items()]:
        argv.append(f"--{name.replace('_', '-')}={text(value)}")  # --x=value: a value may begin with "-"
    return argv
