"""`llmarch generate` (text from a checkpoint, token by token) and `llmarch eval` (its perplexity)."""
from __future__ import annotations

import json

from .options import CHECKPOINT_HELP, load_with_tokenizer


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a checkpoint")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
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
    p.add_argument("--prompt-lookup", type=int, default=0, metavar="N",
                   help="speculative decoding with drafts of up to N tokens looked up in the context; greedy, the "
                   "same output in fewer steps where it repeats its context (0: off) (default: %(default)s)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="perplexity of a checkpoint on held-out data")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--data", default=None, help="text file, directory, glob or .jsonl (default: the stdlib corpus)")
    p.add_argument("--val-fraction", type=float, default=0.05,
        help="validation split, as in training (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per batch (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=None,
        help="evaluate at most this many tokens (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.set_defaults(func=cmd_eval)


def print_generation(checkpoint, prompts, max_new, temperature, top_k, top_p, seed, stream, num_beams=1,
                     length_penalty=1.0, early_stopping=False, compile=False, prompt_lookup=0) -> None:
    """Decoder-only models continue each prompt; encoder-decoders answer it (the prompt is the source). One
    prompt without beams is printed token by token where `stream` is set, else each output when done."""
    from ..generate import generate_text

    model, tok = load_with_tokenizer(checkpoint)  # generate lays it out for CPU decoding (generate/engine.py)
    options = dict(seed=seed, num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
                   compile=compile, prompt_lookup=prompt_lookup)
    if stream and len(prompts) == 1 and num_beams == 1:
        if not model.config.is_encoder_decoder:
            print(prompts[0], end="", flush=True)
        generate_text(model, tok, prompts, max_new, temperature, top_k, top_p, **options,
                      stream=lambda piece: print(piece, end="", flush=True))
        print()
        return
    for i, text in enumerate(generate_text(model, tok, prompts, max_new, temperature, top_k, top_p, **options)):
        if len(prompts) > 1:
            print(f"--- [{i}]")
        print(text)


def cmd_generate(args) -> None:
    from ..generate.decode import check_beam_args

    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    check_beam_args(args.num_beams, 0.0, args.length_penalty, early)  # before loading the checkpoint
    print_generation(args.checkpoint, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                     args.seed, not args.no_stream, args.num_beams, args.length_penalty, early, args.compile,
                     args.prompt_lookup)


def cmd_eval(args) -> None:
    from ..data.dataset import load_data
    from ..train.evaluate import evaluate
    from ..train.objectives import objective_for

    model, tok = load_with_tokenizer(args.checkpoint)
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

