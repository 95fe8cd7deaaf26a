"""`llmarch generate` (text from a checkpoint, token by token) and `llmarch eval` (its perplexity)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..errors import LlmarchError, warn
from .generate_inputs import (audio_features, audio_prompts, fallback_of, image_prompts, input_options, print_answers,
                              printed_to, read_features, temperatures)
from .options import (CHECKPOINT_HELP, at_least, check_out_file, device_options, finite, load_for, load_with_tokenizer,
                      mmproj_option, penalties_of, penalty_options, rule_options, speculation_options)


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a checkpoint")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--prompt", action="append",
                   help="prompt text; repeat for a batch (required, unless --input-features or --audio)")
    input_options(p)
    mmproj_option(p)
    p.add_argument("--max-new-tokens", type=at_least(0), default=100,
        help="tokens to generate after each prompt, fewer where the context ends (default: %(default)s)")
    p.add_argument("--temperature", type=temperatures, default=(0.8,),
                   help=">= 0: logits are divided by it before sampling; 0 is greedy. --audio / --input-features: "
                   "a comma-separated list (e.g. 0,0.2,0.4,0.6,0.8,1) transcribes in windows, each decoded again at "
                   "the next temperature while it misses a threshold (temperature fallback) (default: 0.8)")
    p.add_argument("--top-k", type=at_least(0), default=50,
                   help="sample from the k most likely tokens; 0: no top-k cut (default: %(default)s)")
    p.add_argument("--top-p", type=finite, default=None,
                   help="nucleus sampling: the fewest tokens whose probability reaches p, in (0, 1] "
                   "(default: %(default)s, no cut)")
    p.add_argument("--seed", type=at_least(0), default=None, help="sampling seed (default: %(default)s, a fresh draw)")
    p.add_argument("--no-stream", action="store_true",
        help="print when done instead of token by token (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="decode with one compiled fixed-shape step (CUDA graphs "
                   "on CUDA); compiling takes a while, so it pays off for long outputs (default: %(default)s)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams; greedy, no "
                   "sampling (default: %(default)s)")
    p.add_argument("--length-penalty", type=finite, default=1.0,
                   help="beam scores are log-probability / length^this, in [-100, 100] (default: %(default)s)")
    p.add_argument("--early-stopping", choices=["true", "false", "never"], default="false",
                   help="beam search: stop a row once it has num-beams finished hypotheses (true), when none "
                   "can improve at the current length (false) or at the longest (never) (choices: %(choices)s) "
                   "(default: %(default)s)")
    penalty_options(p)
    rule_options(p)
    speculation_options(p, "; the share of proposals kept goes to stderr")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="loss and perplexity of a language-model checkpoint on held-out text")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--data", default=None, help="text file, directory, glob or .jsonl (default: the stdlib corpus)")
    p.add_argument("--val-fraction", type=finite, default=0.05,
        help="the held-out share, split as in training, in (0, 1]; 1: all of --data, for text the model was not "
             "trained on (default: %(default)s)")
    p.add_argument("--batch-size", type=at_least(1), default=8, help="windows per batch (default: %(default)s)")
    p.add_argument("--max-tokens", type=at_least(1), default=None,
        help="evaluate at most this many tokens, in whole windows (default: %(default)s, all: every token, those "
             "after the last whole window in one more window that ends at the split's end)")
    p.add_argument("--context", type=at_least(1), default=None,
        help="tokens per window, at most the model's context_length; a split shorter than one window is "
             "evaluated as one shorter window (default: the model's context_length)")
    device_options(p, "evaluate")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.set_defaults(func=cmd_eval)


def print_generation(checkpoint, prompts, max_new, temperature, top_k, top_p, seed, stream, num_beams=1,
                     length_penalty=1.0, early_stopping=False, compile=False, prompt_lookup=0, draft=None,
                     num_draft=4, penalties=None, features=None, suppress=None, begin_suppress=None,
                     speech: dict | None = None, images: list | None = None, videos: list | None = None,
                     clips: list | None = None, mmproj=None) -> None:
    """Decoder-only models continue each prompt; encoder-decoders answer it (the prompt is the source). One
    prompt without beams is printed token by token where `stream` is set, else each output when done. With
    speculative decoding (prompt_lookup, or a draft checkpoint), the share of drafted tokens kept goes to
    stderr. suppress / begin_suppress: token ids in place of the generation config's (generate/rules.py).
    features: a file of an encoder front end's input_features (read_features), or 16 kHz samples (--audio's, made
    the features the model's front end reads: audio_features), the sources in place of prompts, transcribed
    (generate/transcribe.py) with `speech`'s language, task and timestamps; each answer printed when done.
    images: PIL images (vision/image_files.py) that each prompt asks about (vision/prompts.py image_request);
    videos: vision/video_files.py's Videos, alike (vision/qwen_video.py video_request); clips: 16 kHz audio
    clips that each prompt asks about (audio/prompts.py audio_request). mmproj: a .gguf checkpoint's vision
    projector file (--mmproj)."""
    from ..generate.generation_config import read_generation_config, token_rules

    # generate lays it out for CPU decoding (generate/engine.py)
    model, tok = load_with_tokenizer(checkpoint, gguf_kernels=True, mmproj=mmproj)
    gen = read_generation_config(tok)
    stats: dict = {}
    options = dict(seed=seed, num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
                   penalties=penalties)
    if features is not None:
        if isinstance(features, (str, Path)):
            features = read_features(features)
        else:  # --audio's samples, as the checkpoint's encoder front end reads them (log-mel, or the waveform)
            from ..data.log_mel import HOP, SAMPLE_RATE, SECONDS

            if speech and speech.get("word_timestamps") and len(features) <= SAMPLE_RATE * SECONDS:
                speech = dict(speech, audio_frames=[-(-len(features) // HOP)])  # the frames of audio, not of padding
            features = audio_features(model.config, features, checkpoint, getattr(tok, "side_files", {}))
        print_answers(model, tok, gen, features, max_new, temperature, top_k, top_p,
                       dict(options, suppress=suppress, begin_suppress=begin_suppress, **(speech or {})))
    else:
        if images or videos:
            prompts, arguments = image_prompts(model, tok, prompts, images, videos or ())
            options.update(images=arguments)
        if clips:  # generate_text hands its `images` arguments to generate whole: the audio arguments alike
            prompts, arguments = audio_prompts(model, tok, prompts, clips)
            options.update(images=arguments)
        options.update(compile=compile, prompt_lookup=prompt_lookup, num_draft=num_draft, stats=stats,
                       draft=None if draft is None else load_draft(draft, model, tok),
                       rules=token_rules(gen, suppress, begin_suppress))
        _print_outputs(model, tok, prompts, max_new, temperature, top_k, top_p, stream, options)
    if stats:
        rate = f" ({stats['accepted'] / stats['drafted']:.1%})" if stats["drafted"] else ""
        print(f"llmarch generate: speculative decoding: {stats['accepted']} of {stats['drafted']} drafted tokens "
              f"accepted{rate}, in {stats['steps']} forwards of the checkpoint", file=sys.stderr)


def load_draft(path, model, tok):
    """The --draft checkpoint, whose tokenizer must be the target's (the same ids for the same text). A drafter that
    reads the target's states (Gemma 4's assistants: generate/assistant.py) may come without one: it reads the
    target's embeddings of the target's ids."""
    from ..data.tokenizer import check_fits
    from ..generate.draft_model import check_draft
    from ..interop.gguf_tokenizer import checkpoint_tokenizer
    from ..rundir import resolve_checkpoint

    draft, source = load_for(path, gguf_kernels=True), resolve_checkpoint(path)
    if draft.config.draft_target_width and not (Path(source) / "tokenizer.json").is_file():
        draft_tok = tok
    else:
        draft_tok = checkpoint_tokenizer(source)
        check_fits(draft_tok, draft.config.vocab_size)
    if draft_tok.fingerprint() != tok.fingerprint():
        raise LlmarchError(f"--draft {path}'s tokenizer is not --checkpoint's ({draft_tok.fingerprint()[:40]} "
                           f"against {tok.fingerprint()[:40]}): a draft must share the target's tokenizer")
    check_draft(model, draft, 1)
    return draft.to(next(model.parameters()).device)


def _print_outputs(model, tok, prompts, max_new, temperature, top_k, top_p, stream, options) -> None:
    from ..generate import generate_text
    from ..generate.text import prompt_ids

    if stream and len(prompts) == 1 and options["num_beams"] == 1:
        # the prompt is printed with the first new text, after any warning or error about the request; as the
        # tokenizer decodes it, as --no-stream prints it (a chat prompt's special tokens not spelled out)
        head = [] if model.config.is_encoder_decoder else [tok.decode(prompt_ids(tok, prompts[0]))]

        def show(piece: str) -> None:
            print(*head, piece, sep="", end="", flush=True)
            head.clear()

        generate_text(model, tok, prompts, max_new, temperature, top_k, top_p, **options, stream=show)
        print(*head)
        return
    for i, text in enumerate(generate_text(model, tok, prompts, max_new, temperature, top_k, top_p, **options)):
        if len(prompts) > 1:
            print(f"--- [{i}]")
        print(text)


def cmd_generate(args) -> None:
    from ..data.wav import read_wav
    from ..generate.decode import check_beam_args
    from ..generate.sampling import check_sampling
    from ..vision.image_files import read_image
    from ..vision.video_files import read_video

    clips = [read_wav(path) for path in args.audio] if args.prompt is not None and args.audio else None
    audio = None if clips is not None or not args.audio else args.audio
    if (args.prompt is not None) + (args.input_features is not None) + (audio is not None) != 1:
        raise LlmarchError("give --prompt (text, with --audio for an audio-language checkpoint), --input-features (a "
                           "features file for a model whose encoder reads them) or --audio (a WAV file to "
                           "transcribe), one of the three")
    if audio is not None and len(audio) > 1:
        raise LlmarchError("--audio without --prompt transcribes one WAV file; several are clips of a --prompt")
    if clips and (args.image or args.video):
        raise LlmarchError("--image/--video and --audio clips go to different checkpoints (vision- or "
                           "audio-language): give one kind")
    temperature, fallback = fallback_of(args)
    speech = dict(language=args.language, task=args.task, timestamps=args.timestamps, fallback=fallback,
                  condition_on_prev_tokens=args.condition_on_prev_tokens, word_timestamps=args.word_timestamps,
                  output_format=args.output_format)
    if args.prompt is not None and (args.language or args.task or args.timestamps or fallback is not None
                                    or args.condition_on_prev_tokens or args.word_timestamps
                                    or args.output_format != "text" or args.output is not None):
        raise LlmarchError("--language, --task, --timestamps, --word-timestamps, --condition-on-prev-tokens, the "
                           "thresholds, more than one --temperature, --output-format and --output are for "
                           "transcription: --audio or --input-features")
    if args.output is not None:
        check_out_file(args.output, "--output")  # before the work, which a bad path would lose
    for flag, given in (("--image", args.image), ("--video", args.video)):
        if given and args.prompt is None:
            raise LlmarchError(f"{flag} goes with --prompt (the text asking about the {flag[2:]})")
    images = [read_image(path) for path in args.image or ()]
    videos = [read_video(path, args.video_fps) for path in args.video or ()]
    if args.prompt is None and (args.draft is not None or args.prompt_lookup or args.compile):
        raise LlmarchError("--audio and --input-features decode without --draft, --prompt-lookup or --compile")
    early = {"true": True, "false": False, "never": "never"}[args.early_stopping]
    check_beam_args(args.num_beams, 0.0, args.length_penalty, early)  # before loading the checkpoint
    check_sampling(temperature, args.top_k, args.top_p)
    penalties = penalties_of(args)
    if args.draft is not None and (args.prompt_lookup or args.num_beams > 1 or args.compile):
        raise LlmarchError("--draft is for greedy or sampled decoding without --prompt-lookup, --num-beams or "
                           "--compile")
    if args.num_draft is not None and args.draft is None:
        raise LlmarchError("--num-draft sets how many tokens a --draft checkpoint proposes: give --draft too")
    if args.prompt_lookup and (temperature != 0 or args.num_beams > 1 or args.compile):
        raise LlmarchError(f"--prompt-lookup drafts for greedy decoding: pass --temperature 0 (it is "
                           f"{temperature:g}; the default is 0.8), without --num-beams or --compile")
    with printed_to(args.output):
        print_generation(args.checkpoint, args.prompt, args.max_new_tokens, temperature, args.top_k, args.top_p,
                         args.seed, not args.no_stream, args.num_beams, args.length_penalty, early, args.compile,
                         args.prompt_lookup, args.draft, args.num_draft or 4, penalties,
                         read_wav(audio[0]) if audio else args.input_features, args.suppress_tokens,
                         args.begin_suppress_tokens, speech, images, videos, clips, args.mmproj)


def cmd_eval(args) -> None:
    from ..data.dataset import load_data
    from ..device import parse_device
    from ..progress import Bar
    from ..train.evaluate import evaluate
    from ..train.objectives import objective_for

    if not 0 < args.val_fraction <= 1:
        raise LlmarchError(f"--val-fraction must be in (0, 1], got {args.val_fraction}")
    model, tok = load_with_tokenizer(args.checkpoint, parse_device(args.device), args.dtype, gguf_kernels=True)
    cfg = model.config
    if cfg.head != "lm":
        raise LlmarchError(f"eval scores language models; {args.checkpoint} has a {cfg.head} head (a fine-tuned "
                           "classifier: `llmarch finetune` reports its validation accuracy)")
    if args.context is not None and args.context > cfg.context_length:
        raise LlmarchError(f"--context {args.context} is longer than the model's context_length "
                           f"{cfg.context_length}")
    data = load_data(args.data, tok, args.val_fraction)
    data.check_vocab(cfg.vocab_size)
    context = _window(args, len(data.val), args.context or cfg.context_length)
    windows = (len(data.val) - 1) // context
    if args.max_tokens is not None:
        if args.max_tokens > windows * context:
            warn(f"--max-tokens {args.max_tokens} is more than the held-out split's {windows * context} tokens "
                 f"(in {context}-token windows): evaluating all of them")
        elif args.max_tokens < context:
            warn(f"--max-tokens {args.max_tokens} is less than one window: evaluating one of {context} tokens")
        windows = max(1, min(windows, args.max_tokens // context))
    # masks and noise drawn from seed 0: the same figure on every run
    name = ("span" if tok.sentinel_ids else "infill") if cfg.is_encoder_decoder else "clm" if cfg.causal else "mlm"
    objective = objective_for(name, tok, context=context)
    with Bar(windows * context, "eval", "tok") as bar:
        result = evaluate(model, data, args.batch_size, args.max_tokens, objective, context=context,
                          progress=bar.advance)
    if not math.isfinite(result["loss"]):
        raise LlmarchError(f"the loss is {result['loss']}: the model's logits are NaN or infinite (weights out of "
                           "range?)")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.3f} "
              f"on {result['tokens']:,} validation tokens")


def _window(args, held_out: int, context: int) -> int:
    """The window length: `context`, or the whole held-out split where it is shorter than one window."""
    if held_out < 2:
        raise LlmarchError(f"the held-out split of {args.data or 'the stdlib corpus'} has {held_out} token(s), "
                           "too few to score; raise --val-fraction (1: all of it)")
    if held_out < context + 1:
        warn(f"the held-out split has {held_out} tokens, fewer than one {context}-token window: evaluating one "
             f"window of {held_out - 1}")
        return held_out - 1
    return context
