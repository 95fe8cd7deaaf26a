"""`llmarch finetune`: a checkpoint fine-tuned as a text classifier, a sequence-to-sequence model, on
conversations (sft) or on preferences (dpo), all weights, LoRA adapters, or LoRA adapters over int4 weights (qlora)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .options import add_fields, check_out_dir, collect, given


def add_parsers(sub) -> None:
    from ..train.finetune import FinetuneConfig

    p = sub.add_parser("finetune", help="fine-tune a checkpoint: text classifier, sequence-to-sequence, "
                       "conversations (sft) or preferences (dpo); all weights, LoRA or QLoRA adapters")
    p.add_argument("--checkpoint",
                   help="pretrained llmarch checkpoint or run directory, or a Hugging Face directory; with --task "
                   "seq2seq also a preset or config file, to train from scratch (required, but with --resume)")
    p.add_argument("--out", required=True, help="run directory for the fine-tuned checkpoint (required)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint, with its settings and starting "
                   "checkpoint; --steps may extend it (default: %(default)s)")
    add_fields(p.add_argument_group("fine-tuning"), FinetuneConfig)
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args) -> None:
    from ..train.finetune import FinetuneConfig, finetune

    check_out_dir(args.out)
    fc = FinetuneConfig(**collect(args, FinetuneConfig))
    result = finetune(args.checkpoint, fc, args.out, resume=args.resume,
                      given=given(args) & {f.name for f in fields(FinetuneConfig)})
    if args.resume:  # the run's own settings, which the command line may have left out
        from ..train.loop import saved_train_config

        fc = FinetuneConfig(**{k: v for k, v in saved_train_config(Path(args.out)).items() if k in vars(fc)})
    task, method = fc.task, fc.method
    if task in ("sft", "dpo"):
        print(result.summary())
        if result.adapter:
            where = f" (PEFT adapter: {result.adapter})"
        elif method != "full":  # said, not left to be noticed: phi3's fused layers, a model of no HF family
            kept = ("kept over its quantized weights" if method == "qlora" else "folded into its weights")
            where = (f" (no PEFT adapter: PEFT has no names for this model's adapted layers; the checkpoint holds the "
                     f"adapters {kept})")
        else:
            where = ""
        print(f"checkpoint: {result.checkpoint}{where}")
        return
    if task == "seq2seq":
        print(f"validation exact match {result.exact_match:.4f} (trivial baseline: always the most common "
              f"target, {result.trivial_baseline:.4f}); validation loss {list(result.val_losses.values())[-1]:.4f}")
        print(f"checkpoint: {result.checkpoint}")
        return
    print(f"validation accuracy {result.accuracy:.4f} over {len(result.labels)} labels "
          f"(majority-class baseline {result.majority_baseline:.4f})")
    print(f"checkpoint: {result.checkpoint}")
