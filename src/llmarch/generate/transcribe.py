"""Short-form transcription: one window of up to 30 s of speech features through an encoder-decoder whose encoder
reads them (Whisper), decoded as transformers' WhisperForConditionalGeneration.generate decodes one window: the
decoder prompt and token rules from the checkpoint's generation config (generation_config.py), the language
detected first where a multilingual checkpoint is given none. Longer audio: long-form transcription (longform.py)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import LlmarchError
from ..layers.encoder_inputs import ENCODER_INPUTS
from .decode import generate
from .generation_config import decoder_prompt, language_ids, needs_language, token_rules

TIME_PRECISION = 0.02  # seconds per timestamp step (Whisper's 20 ms; transformers' time_precision)
STRIDE = 2  # feature frames per encoder position (the stride-2 convolution stem)


@torch.inference_mode()
def transcribe(model, input_features: torch.Tensor, max_new_tokens: int, gen: dict, language: str | None = None,
               task: str | None = None, timestamps: bool = False, num_beams: int = 1,
               suppress: Sequence[int] | None = None, begin_suppress: Sequence[int] | None = None,
               with_prompt: bool = True, **options) -> list[list[int]]:
    """input_features (B, channels, frames), gen a generation config (read_generation_config) -> each row's
    decoder prompt and new tokens, up to and including the end of text, as transformers' generate returns them
    (with_prompt=False: the new tokens alone).
    suppress / begin_suppress replace gen's suppress_tokens / begin_suppress_tokens where given; options go to
    generate (temperature, top_k, top_p, seed, length_penalty, early_stopping, penalties)."""
    cfg = model.config
    frames = window_frames(cfg)
    if input_features.shape[-1] > frames:
        raise LlmarchError(f"{input_features.shape[-1]} feature frames are more than one window of {frames} (30 s for "
                           "Whisper): transcribe them with generate.longform.transcribe_long")
    rules = token_rules(gen, suppress, begin_suppress, timestamps)
    eos = end_of_text(gen, cfg)
    detected = detect_language(model, input_features, gen) if needs_language(gen, language, task) else \
        [None] * len(input_features)
    prompts = [decoder_prompt(gen, cfg.decoder_start_id, language, task, timestamps, d) for d in detected]
    rows: list[list[int]] = [[] for _ in prompts]
    for prompt in dict.fromkeys(map(tuple, prompts)):  # rows of one detected language decoded together
        which = [i for i, p in enumerate(prompts) if tuple(p) == prompt]
        out = generate(model, None, max_new_tokens, eos_id=eos, input_features=input_features[which],
                       decoder_prompt=list(prompt), rules=rules, num_beams=num_beams, **options)
        for i, row in zip(which, out.tolist()):
            new = row[len(prompt):]
            rows[i] = list(prompt) * with_prompt + (new[:new.index(eos) + 1] if eos in new else new)
    return rows


def window_frames(cfg) -> int:
    """Feature frames one encoder window reads (3,000 for Whisper: 30 s; Moonshine's samples, 480,000)."""
    return ENCODER_INPUTS[cfg.encoder_input].frames_per_position * cfg.context_length


def end_of_text(gen: dict, cfg) -> int:
    """The token that ends a transcription: the generation config's eos_token_id (its first, where a list), else the
    model's."""
    eos = gen.get("eos_token_id", cfg.eos_id)
    return eos[0] if isinstance(eos, list) else eos


def detect_language(model, features: torch.Tensor, gen: dict) -> list[int]:
    """Each row's most likely language token after the start token alone (transformers' detect_language)."""
    start = gen.get("decoder_start_token_id", model.config.decoder_start_id)
    device = next(model.parameters()).device
    features = features.to(device)
    logits = model(decoder_input_ids=torch.full((len(features), 1), start, device=device),
                   input_features=features).logits[:, -1]
    ids = torch.tensor(language_ids(gen), device=device)
    return ids[logits[:, ids].argmax(-1)].tolist()


def transcription_text(tokenizer, row: Sequence[int], gen: dict, timestamps: bool = False) -> str:
    """A row's text as transformers' tokenizer decodes it with skip_special_tokens: special tokens and timestamps
    left out; timestamps: each timestamp token written in place as <|seconds|> (its decode_with_timestamps)."""
    begin = gen["no_timestamps_token_id"] + 1 if "no_timestamps_token_id" in gen else None
    pieces, text = [], []
    for t in row:
        if begin is not None and t >= begin:
            pieces.append(tokenizer.decode(text))
            text = []
            if timestamps:
                pieces.append(f"<|{(t - begin) * TIME_PRECISION:.2f}|>")
        else:
            text.append(t)
    pieces.append(tokenizer.decode(text))
    return "".join(pieces)
