"""`llmarch finetune`: a checkpoint fine-tuned as a text classifier, a sequence-to-sequence model, on
conversations (sft) or on preferences (dpo), all weights, LoRA adapters, or LoRA adapters over int4 weights (qlora)."""
from __future__ import annotations

from .options import add_fields, check_out_dir, collect


def add_parsers(sub) -> None:
    from ..train.finetune import FinetuneConfig

    p = sub.add_parser("finetune", help="fine-tune a checkpoint: text classifier, sequence-to-sequence, "
                       "conversations (sft) or preferences (dpo); all weights, LoRA or QLoRA adapters")
    p.add_argument("--checkpoint", required=True,
                   help="pretrained llmarch checkpoint or run directory, or a Hugging Face directory; with --task "
                   "seq2seq also a preset or config file, to train from scratch (required)")
    p.add_argument("--out", required=True, help="run directory for the fine-tuned checkpoint (required)")
    add_fields(p.add_argument_group("fine-tuning"), FinetuneConfig)
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args) -> None:
    from ..train.finetune import FinetuneConfig, finetune

    check_out_dir(args.out)
    result = finetune(args.checkpoint, FinetuneConfig(**collect(args, FinetuneConfig)), args.out)
    if args.task in ("sft", "dpo"):
        print(result.summary())
        if result.adapter:
            where = f" (PEFT adapter: {result.adapter})"
        elif args.method != "full":  # said, not left to be noticed: phi3's fused layers, a model of no HF family
            kept = ("kept over its quantized weights" if args.method == "qlora" else "folded into its weights")
            where = (f" (no PEFT adapter: PEFT has no names for this model's adapted layers; the checkpoint holds the "
                     f"adapters {kept})")
        else:
            where = ""
        print(f"checkpoint: {result.checkpoint}{where}")
        return
    if args.task == "seq2seq":
        print(f"validation exact match {result.exact_match:.4f} (trivial baseline: always the most common "
              f"target, {result.trivial_baseline:.4f}); validation loss {list(result.val_losses.values())[-1]:.4f}")
        print(f"checkpoint: {result.checkpoint}")
        return
    print(f"validation accuracy {result.accuracy:.4f} over {len(result.labels)} labels "
          f"(majority-class baseline {result.majority_baseline:.4f})")
    print(f"checkpoint: {result.checkpoint}")
