"""`llmarch generate`'s inputs beside text: images (vision/image_files.py, vision/prompts.py), and audio or an encoder
front end's features, transcribed (generate/transcribe.py, generate/longform.py) and printed."""
from __future__ import annotations

import io
from contextlib import contextmanager, redirect_stdout
from dataclasses import astuple
from pathlib import Path

from ..errors import LlmarchError
from ..audio.transcript_files import OUTPUT_FORMATS
from .options import finite


def input_options(p) -> None:
    """generate's --image, --input-features, --audio and the transcription options."""
    p.add_argument("--image", action="append", default=None, metavar="FILE",
                   help="an image file (PNG, JPEG, ...) for a vision-language checkpoint (LLaVA, LLaVA-NeXT, "
                   "LLaVA-OneVision, PaliGemma, Gemma 3, SmolVLM, Idefics3, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, "
                   "Aya Vision, Cohere2 Vision, LFM2-VL), preprocessed as its preprocessor_config.json says; repeat "
                   "for several images, each read at one image token of --prompt (<image>, <|image_pad|>), or at its "
                   "start where it has none (default: %(default)s)")
    p.add_argument("--video", action="append", default=None, metavar="PATH",
                   help="a video for a Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint: a directory of frame images (in "
                   "the order of their names, at --video-fps), or a video file where PyAV is installed; sampled and "
                   "preprocessed as its video processor config says; repeat for several, each read at one "
                   "<|video_pad|> of --prompt, or at its start (after any --image) where it has none "
                   "(default: %(default)s)")
    p.add_argument("--video-fps", type=finite, default=2.0, metavar="FPS",
                   help="--video directories: the frames' rate, frames a second, which the video processor's "
                   "sampling and timestamps read (default: %(default)s)")
    p.add_argument("--input-features", default=None, metavar="FILE",
                   help="a .npy or .pt file of float features, (batch, channels, frames) or one (channels, frames), "
                   "that the model's encoder front end reads in place of --prompt (Whisper: log-mel spectrograms as "
                   "WhisperFeatureExtractor makes them, or --audio) (default: %(default)s)")
    p.add_argument("--audio", action="append", default=None, metavar="FILE.wav",
                   help="a 16 kHz mono PCM WAV file, transcribed: the features its model's encoder front end reads "
                   "(Whisper: log-mel, data/log_mel.py, of any length, past one 30 s window in windows one after "
                   "another, long-form with timestamps: generate/longform.py; Moonshine: the waveform, up to 30 s) "
                   "in place of --prompt, decoded as --input-features. With --prompt, a clip that an audio-language "
                   "checkpoint (Qwen2-Audio, Voxtral) hears before answering: repeat for several clips, each read at "
                   "one audio token of --prompt (<|AUDIO|>), or at its start where it has none (default: %(default)s)")
    p.add_argument("--language", default=None,
                   help="--audio / --input-features: the spoken language's code or English name (en, fr, French, "
                   "...: the generation config's lang_to_id), the decoder prompt's language token (default: "
                   "%(default)s, detected)")
    p.add_argument("--task", choices=["transcribe", "translate"], default=None,
                   help="--audio / --input-features: the decoder prompt's task token (choices: %(choices)s) "
                   "(default: %(default)s: transcribe where --language is given, else none)")
    p.add_argument("--timestamps", action="store_true",
                   help="--audio / --input-features: predict segment timestamps under Whisper's timestamp rules and "
                   "print them in place as <|seconds|>; in windows (long-form), each segment on a line after its "
                   "[start -> end] seconds (default: %(default)s)")
    p.add_argument("--word-timestamps", action="store_true",
                   help="--audio / --input-features: each word on a line after its [start -> end] seconds, timed by "
                   "the cross-attention of the generation config's alignment_heads (generate/whisper_alignment.py); "
                   "decoded with timestamps in windows, as transformers' speech-recognition pipeline does for "
                   "return_timestamps='word' (default: %(default)s)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default="text",
                   help="--audio / --input-features: the transcription as text (as printed without it), or as "
                   "openai-whisper's srt, vtt and json writers lay it out (audio/transcript_files.py): cues of "
                   "segments, or with --word-timestamps of their words; srt, vtt and json turn on --timestamps "
                   "(choices: %(choices)s) (default: %(default)s)")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="--audio / --input-features: write the transcription to FILE in place of printing it, in "
                   "whole (a temporary file renamed), so a run that fails leaves an existing FILE as it was "
                   "(default: %(default)s, print it)")
    p.add_argument("--condition-on-prev-tokens", action="store_true",
                   help="--audio / --input-features, in windows: each window's decoder input starts with the text "
                   "so far, while the last window was decoded at a temperature < 0.5 (default: %(default)s)")
    p.add_argument("--compression-ratio-threshold", type=finite, default=None,
                   help="--audio / --input-features, in windows: decode a window again at the next --temperature "
                   "where its tokens' zlib compression ratio is above this (> 0; Whisper uses 2.4) "
                   "(default: %(default)s, never)")
    p.add_argument("--logprob-threshold", type=finite, default=None,
                   help="--audio / --input-features, in windows: decode a window again at the next --temperature "
                   "where its tokens' average log-probability is below this (<= 0; Whisper uses -1.0) "
                   "(default: %(default)s, never)")
    p.add_argument("--no-speech-threshold", type=finite, default=None,
                   help="--audio / --input-features, in windows: skip a window whose <|nospeech|> probability is "
                   "above this (in [0, 1]; Whisper uses 0.6) while its log-probability is below "
                   "--logprob-threshold (default: %(default)s, never)")


@contextmanager
def printed_to(path):
    """What is printed inside, written to `path` in whole once all is done (a temporary file renamed: rundir.py's
    write_text_atomic, so that a run that fails leaves a file already there as it was), where a path is given."""
    from ..rundir import write_text_atomic

    if path is None:
        yield
        return
    with redirect_stdout(io.StringIO()) as buffer:
        yield
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(path), buffer.getvalue())


def temperatures(text: str) -> tuple[float, ...]:
    """--temperature's type: one value, or a comma-separated list of them (the temperature fallback's)."""
    return tuple(finite(t) for t in text.split(","))


def fallback_of(args):
    """--temperature's first value, and the temperature fallback that --temperature's list and the thresholds ask
    for (checked before the checkpoint is read), or None where they ask for none."""
    from ..generate.whisper_fallback import Fallback

    temps = args.temperature
    thresholds = (args.compression_ratio_threshold, args.logprob_threshold, args.no_speech_threshold)
    fallback = Fallback(temps, *thresholds)
    return temps[0], fallback if len(temps) > 1 or any(t is not None for t in thresholds) else None


def image_prompts(model, tok, prompts, images, videos=()):
    """Each prompt as ids with the images' and videos' tokens, and the model's image arguments (vision/preprocess.py;
    vision/qwen_video.py: the videos') for them once per prompt, in the prompts' order (each argument's tensors
    concatenated)."""
    import torch

    from ..vision.prompts import image_request
    from ..vision.qwen_video import video_request

    requests = [video_request(model, tok, p, images, videos) if videos else image_request(model, tok, p, images)
                for p in prompts]
    return [ids for ids, _ in requests], {k: torch.cat([a[k] for _, a in requests]) for k in requests[0][1]}


def audio_prompts(model, tok, prompts, clips):
    """Each prompt as ids with the clips' audio tokens, and the model's audio arguments (audio/prompts.py) for the
    clips once per prompt, in the prompts' order (each argument's tensors concatenated)."""
    import torch

    from ..audio.prompts import audio_request

    requests = [audio_request(model, tok, p, clips) for p in prompts]
    return [ids for ids, _ in requests], {k: torch.cat([a[k] for _, a in requests]) for k in requests[0][1]}


def audio_features(cfg, samples, checkpoint, side_files: dict):
    """16 kHz samples -> the input_features of the model's encoder front end (config encoder_input: Whisper's log-mel
    spectrogram, Moonshine's waveform), by the checkpoint's preprocessor_config.json where it has one (among its
    tokenizer's side files, which conversion keeps: not only beside an HF directory's config.json)."""
    from ..layers.encoder_inputs import ENCODER_INPUTS
    from ..vision.preprocess import PREPROCESSOR_FILE, side_config

    if cfg.audio is not None:
        raise LlmarchError(f"{checkpoint} is an audio-language checkpoint: it hears --audio clips beside a --prompt "
                           "(the question about them), and transcribes nothing alone")
    if cfg.encoder_input == "tokens":
        raise LlmarchError(f"--audio is for a model whose encoder reads audio (config encoder_input); {checkpoint} "
                           "reads tokens")
    preprocessor = side_config(side_files, PREPROCESSOR_FILE)
    return ENCODER_INPUTS[cfg.encoder_input].audio_features(samples, cfg, preprocessor)


def read_features(path):
    """(B, channels, frames) float32 features from a .npy file (numpy.save) or a .pt file (torch.save of a tensor);
    a (channels, frames) array is one row."""
    import pickle

    import numpy as np
    import torch

    path = Path(path)
    if path.suffix not in (".npy", ".pt"):
        raise LlmarchError(f"--input-features {path}: a .npy or .pt file of features, (batch, channels, frames)")
    try:
        t = torch.from_numpy(np.load(path)) if path.suffix == ".npy" else torch.load(path, weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LlmarchError(f"cannot read --input-features {path}: {reason}") from None
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() not in (2, 3):
        raise LlmarchError(f"--input-features {path} holds no float array of (batch, channels, frames) or "
                           "(channels, frames)")
    return (t[None] if t.dim() == 2 else t).float()


def print_answers(model, tok, gen, features, max_new, temperature, top_k, top_p, options) -> None:
    """Each row's transcription (generate/transcribe.py): its new tokens up to its end as text, without special
    tokens, timestamps in place where asked for. Features past one window, or a fallback asked for (options'
    fallback), are transcribed in windows (print_segments)."""
    from ..generate.transcribe import transcribe, transcription_text, window_frames

    if options["num_beams"] > 1:  # beam search is greedy, as for text
        temperature = 0.0
    fallback, condition = options.pop("fallback", None), options.pop("condition_on_prev_tokens", False)
    words, form = options.pop("word_timestamps", False), options.pop("output_format", "text")
    if form != "text" and len(features) > 1:
        raise LlmarchError(f"--output-format {form} writes one transcription; the features hold {len(features)} rows")
    if form != "text" or features.shape[-1] > window_frames(model.config) or fallback is not None or condition \
            or words:
        from ..generate.whisper_fallback import Fallback

        fallback = fallback or Fallback((temperature,))
        if options["num_beams"] > 1 and len(fallback.temperatures) == 1:
            fallback = Fallback((0.0,), *astuple(fallback)[1:])
        return print_segments(model, tok, gen, features, max_new, fallback, condition, top_k, top_p, options, words,
                              form)
    rows = transcribe(model, features, max_new, gen, temperature=temperature, top_k=top_k, top_p=top_p,
                      with_prompt=False, **options)
    ends = {model.config.eos_id, *tok.eos_ids}
    for i, row in enumerate(rows):
        if len(rows) > 1:
            print(f"--- [{i}]")
        row = row[:next((j for j, t in enumerate(row) if t in ends), len(row))]
        print(transcription_text(tok, row, gen, options.get("timestamps", False)))


def print_segments(model, tok, gen, features, max_new, fallback, condition, top_k, top_p, options,
                    words: bool = False, form: str = "text") -> None:
    """Each row's long-form transcription (generate/longform.py): its text, or with timestamps its segments, one a
    line after their times, or with words each word so (generate/whisper_words.py: split at whole characters for
    --language zh, ja, th, lo, my or yue, else at spaces, as the pipeline splits a detected language); or in a
    subtitle or JSON form (audio/transcript_files.py), whose segments are timed as whisper's are, always."""
    from ..audio.transcript_files import WRITERS, transcript_result
    from ..generate.longform import segment_tokens, transcribe_long
    from ..generate.transcribe import transcription_text, window_frames
    from ..generate.whisper_words import segment_words

    if options.pop("penalties") is not None:
        raise LlmarchError("transcription in windows takes no repetition, presence or frequency penalties")
    timestamps = options["timestamps"] or words or form != "text" or features.shape[-1] > window_frames(model.config)
    rows = transcribe_long(model, features, max_new, gen, fallback=fallback, condition_on_prev_tokens=condition,
                           top_k=top_k, top_p=top_p, word_timestamps=words, **dict(options, timestamps=timestamps))

    def words_of(segments):
        return segment_words(tok, segments, gen, model.config.context_length, options.get("language"))

    for i, segments in enumerate(rows):
        if len(rows) > 1:
            print(f"--- [{i}]")
        if form != "text":
            result = transcript_result(segments, lambda ids: transcription_text(tok, ids, gen),
                                       (lambda s: words_of([s])) if words else None)
            print(WRITERS[form](result), end="")
        elif words:
            for w in words_of(segments):
                print(f"[{w.start:.2f} -> {w.end:.2f}]{w.text}")
        elif options["timestamps"]:
            for s in segments:
                print(f"[{s.start:.2f} -> {s.end:.2f}]{transcription_text(tok, s.tokens, gen)}")
        else:
            print(transcription_text(tok, segment_tokens(segments), gen))
