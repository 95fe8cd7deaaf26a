"""generate(): prompts (or an encoder-decoder's sources) through the decoding engine (engine.py), then one
loop for greedy and sampled decoding, or beam search (beam.py), for every model kind."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch

from ..data.batching import pad
from ..errors import LlmarchError, warn
from ..models.stack import check_ids
from ..vision.inputs import check_image_arguments
from .beam import beam_search
from .engine import Engine
from .penalties import Penalties, Seen
from .rules import TokenRules
from .sampling import check_sampling, sample


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> ids (B, T) padded on the left, and mask (B, T) of real tokens."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise LlmarchError("every prompt needs at least one token")
    return pad(prompts, pad_id, left=True)


MAX_LENGTH_PENALTY = 100  # beyond it length ** penalty overflows a float within a few hundred tokens


def check_beam_args(num_beams: int, temperature: float, length_penalty: float, early_stopping) -> None:
    if num_beams < 1:
        raise LlmarchError(f"num_beams must be >= 1, got {num_beams}")
    if num_beams > 1 and temperature > 0:
        raise LlmarchError("beam search is deterministic: use num_beams > 1 with temperature 0")
    if not (math.isfinite(length_penalty) and abs(length_penalty) <= MAX_LENGTH_PENALTY):
        raise LlmarchError(f"length_penalty must be in [-{MAX_LENGTH_PENALTY}, {MAX_LENGTH_PENALTY}], got "
                           f"{length_penalty}")
    if early_stopping not in (True, False, "never"):
        raise LlmarchError(f"early_stopping must be true, false or never, got {early_stopping!r}")


@torch.inference_mode()
def generate(model, input_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, eos_id: int | None = None, attention_mask: torch.Tensor | None = None,
             seed: int | None = None, on_tokens: Callable[[torch.Tensor], None] | None = None,
             num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool | str = False,
             compile: bool = False, stop: Sequence[Sequence[int]] = (), prompt_lookup: int = 0, draft=None,
             num_draft: int = 4, stats: dict | None = None, penalties: Penalties | None = None,
             decoder_start_id: int | None = None, forced_bos_id: int | None = None,
             pixel_values: torch.Tensor | None = None, input_features: torch.Tensor | None = None,
             decoder_prompt: Sequence[int] | None = None, rules: TokenRules | None = None,
             generator: torch.Generator | None = None, image_grid_thw: torch.Tensor | None = None,
             pixel_attention_mask: torch.Tensor | None = None, image_sizes: torch.Tensor | None = None,
             pixel_values_videos: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
             second_per_grid_ts: torch.Tensor | None = None, feature_attention_mask: torch.Tensor | None = None,
             aspect_ratio_ids: torch.Tensor | None = None, aspect_ratio_mask: torch.Tensor | None = None):
    """Decode up to max_new_tokens after each prompt (fewer if a row emits eos_id or the context fills).
    compile: decode each new token with the engine's compiled step (one fixed-shape graph over a cache of
    `compiled_cache_len` slots; CUDA graphs on CUDA) instead of eagerly.
    num_beams > 1: beam search (beam.py) with length_penalty and early_stopping (True, False or "never"),
    returning each row's best hypothesis.

    Decoder-only models: input_ids is a (B, T) tensor (left-padded, with attention_mask) or a list of token-id
    lists of any lengths, and the result the same kind: a (B, T + n) tensor of prompt + new ids (rows finished
    early hold eos_id after their end), or a list of lists, each its prompt + new ids up to and including eos_id.
    Encoder-decoders: input_ids are the sources, (B, S) right-padded with attention_mask, or lists; the result is
    the (B, 1 + n) decoder sequences from decoder_start_id (ended rows hold pad_id after eos; eos_id defaults
    to the config's), or for lists each row's generated ids up to and including eos.
    on_tokens receives each step's new ids (B,) as they are produced (streaming). stop: token-id sequences
    that end a row as eos_id does, once its new tokens end with one of them (kept in the output).
    prompt_lookup > 0: greedy decoding with drafts of up to that many tokens looked up in the context
    (speculative.py; the same tokens, fewer forwards where the output repeats its context), prompts as lists.
    draft: a smaller model with the same vocabulary proposing num_draft tokens per target forward (speculative
    decoding, draft_model.py): greedy output the same as without it, sampled output from the same distribution;
    prompts as lists. stats (either kind of speculative decoding) receives drafted, accepted and steps.
    penalties (penalties.py): repetition, presence and frequency penalties on each step's logits, before the
    sampler (greedy and sampled decoding), or on each beam's log-probabilities (beam search, as transformers).
    rules (rules.py): token ids barred from each step, or from the first new token (suppress_tokens,
    begin_suppress_tokens), and rules that read the new tokens (Whisper's timestamps), applied before the penalties
    in greedy, sampled and beam decoding (generation_config.py builds them from a checkpoint's generation config).
    Encoder-decoders only: decoder_start_id, the decoder's first input in place of the config's (mBART-cc25 starts
    from the target language's code); forced_bos_id, the first new token whatever the model predicts, scored as
    log-probability 0 in beam search (mBART-50, NLLB: the target language's code; transformers' forced_bos_token_id);
    decoder_prompt, the decoder's first inputs for every row in place of the start token alone (Whisper's
    <|startoftranscript|>, a language, a task, <|notimestamps|>), the result's rows then starting with all of it.
    pixel_values (N, channels, H, W): preprocessed images for a model with a vision tower (config vision), their
    features in place of the prompts' image tokens (TransformerLM.embed_inputs); greedy, sampled or beam decoding;
    pixel_attention_mask (N, H, W): their real pixels (Idefics3's padded images).
    image_grid_thw (N, 3): Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's images, pixel_values then (patches, patch_dim)
    (vision/qwen_pixels.py): the prompt's M-RoPE positions come from them, and the new tokens' from its delta.
    image_sizes (N, 2): AnyRes images' (height, width) (LLaVA-NeXT), pixel_values then (N, tiles, channels, H, W).
    pixel_values_videos, video_grid_thw, second_per_grid_ts: Qwen-VL's videos (TransformerLM.forward's; a video
    processor's dict, vision/qwen_video.py), beside the images or alone.
    aspect_ratio_ids (B, N), aspect_ratio_mask (B, N, K): Llama 3.2 Vision's images, pixel_values then
    (B, N, K, channels, H, W), each row's own (MllamaImageProcessor's); the cross-attention layers keep their image
    keys from the prefill, and each new token sees the tiles its prompt's last token saw (as transformers).
    A prefix-LM (config prefix_lm: PaliGemma) reads each prompt bidirectionally, its new tokens causally.
    input_features (B, input_channels, frames): the sources of an encoder-decoder with an encoder front end (config
    encoder_input; Whisper's log-mel spectrograms; Moonshine's waveforms (B, 1, samples), right-padded with
    attention_mask), with input_ids None; the result as for a tensor of sources. For a decoder with an audio tower
    (config audio: Qwen2-Audio, Voxtral), input_features (N, n_mels, frames) are N audio clips beside input_ids, their
    features in place of the prompts' audio tokens, and feature_attention_mask (N, frames) their real frames (Qwen2-
    Audio's); greedy, sampled or beam decoding.
    generator: one torch.Generator that sampled decoding draws the whole batch from, in place of seed's
    generator per row: a caller that carries one stream of draws over several calls (long-form transcription's
    retries, drawn as transformers draws from torch's global generator)."""
    if model.config.codebooks:
        raise LlmarchError(f"{model.config.name} reads {model.config.codebooks} parallel token streams (config "
                           "codebooks): decode it with llmarch.generate.greedy_streams")
    videos = {k: torch.as_tensor(v, device=next(model.parameters()).device) for k, v in (
        ("pixel_values_videos", pixel_values_videos), ("video_grid_thw", video_grid_thw),
        ("second_per_grid_ts", second_per_grid_ts)) if v is not None}
    if (pixel_values is not None or videos) and (draft is not None or prompt_lookup or compile
                                                 or model.config.vision is None):
        raise LlmarchError("pixel_values (and videos) are for a model with a vision tower (config vision), in eager "
                           "greedy, sampled or beam decoding (no draft model, prompt lookup or compile)")
    check_image_arguments(pixel_values, image_grid_thw, pixel_attention_mask, image_sizes)
    audio = _audio_arguments(model.config, input_features, feature_attention_mask,
                             draft is not None or prompt_lookup or compile)
    if audio:  # the clips go into the prompt's embeddings, not to an encoder
        input_features = None
    _check_source(model.config, input_ids, input_features, draft is not None or prompt_lookup or compile)
    check_beam_args(num_beams, temperature, length_penalty, early_stopping)
    _check_start(model.config, decoder_start_id, forced_bos_id, draft is not None or prompt_lookup, decoder_prompt)
    check_sampling(temperature, top_k, top_p)
    if penalties is not None and not penalties.active:
        penalties = None
    if rules is not None and not rules.active:
        rules = None
    if rules is not None and (draft is not None or prompt_lookup):
        raise LlmarchError("suppressed tokens and other token rules are for greedy, sampled or beam decoding (no draft "
                           "model or prompt lookup)")
    if draft is not None:
        if prompt_lookup or num_beams > 1 or compile:
            raise LlmarchError("a draft model is for greedy or sampled decoding without prompt lookup, beams or "
                               "compile")
        from .draft_model import check_draft, draft_rows

        check_draft(model, draft, num_draft)
        device = next(model.parameters()).device
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
        return draft_rows(model, draft, input_ids, max_new_tokens, num_draft, temperature, top_k, top_p, eos_id,
                          stop, generator, on_tokens, stats, penalties)
    if prompt_lookup:
        if prompt_lookup < 0 or temperature > 0 or num_beams > 1 or compile:
            raise LlmarchError(f"prompt_lookup={prompt_lookup}: drafts of >= 1 tokens for greedy decoding "
                               "(temperature 0, no beams, not compiled)")
        from .speculative import prompt_lookup_rows

        return prompt_lookup_rows(model, input_ids, max_new_tokens, prompt_lookup, eos_id, stop, on_tokens, stats,
                                  penalties)
    if any(len(s) == 0 for s in stop) or (num_beams > 1 and any(len(s) > 1 for s in stop)):
        raise LlmarchError("stop sequences need at least one token each; beam search takes one-token ones only "
                           "(more end ids)")
    cfg = model.config
    if compile and (cfg.is_encoder_decoder or num_beams > 1):
        raise LlmarchError("compile is implemented for greedy and sampled decoding of decoder-only models")
    if not cfg.causal:
        raise LlmarchError(f"{cfg.name} is bidirectional (causal=False) and cannot generate left to right")
    if cfg.head != "lm":
        raise LlmarchError(f"{cfg.name} has a {cfg.head} head, no language-model head, and cannot generate")
    if max_new_tokens < 0:
        raise LlmarchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    as_lists = input_features is None and not isinstance(input_ids, torch.Tensor)
    if cfg.is_encoder_decoder:
        start = list(decoder_prompt or [cfg.decoder_start_id if decoder_start_id is None else decoder_start_id])
        request = _seq2seq_request(model, input_ids, attention_mask, eos_id, max_new_tokens, as_lists, start,
                                   input_features)
    else:
        request = _decoder_request(model, input_ids, attention_mask, eos_id, max_new_tokens, as_lists, compile)
    repeat = num_beams if num_beams > 1 else 1
    # eager decoding only moves forward: a sliding window's layers keep their last w keys (ring_cache.py); the
    # compiled step reads a static cache whole
    with Engine(model, request.prompt.shape[0] * repeat, request.cache_len, _rows(request.mask, repeat),
                _rows(request.source, repeat), _rows(request.source_mask, repeat), compile,
                bounded=not compile, features=_rows(request.features, repeat)) as engine:
        device = request.prompt.device
        if image_grid_thw is not None or videos:  # Qwen-VL: embeddings, M-RoPE positions, DeepStack, each beam its
            mask = None if request.mask is None else request.mask[:, :request.prompt.shape[1]]
            image = model.image_prompt(request.prompt, mask, None if pixel_values is None else pixel_values.to(device),
                                       None if image_grid_thw is None else image_grid_thw.to(device),
                                       **videos, **{k: v.to(device) for k, v in audio.items() if v is not None}
                                       ).rows(repeat)
            extra = dict(embeds=image.embeds, rope_pos=image.rope_pos, rope_delta=image.rope_delta,
                         deepstack=image.deepstack)
        elif getattr(getattr(model, "vision", None), "cross", False) and pixel_values is not None:  # Llama 3.2 Vision
            states, tiles = model.image_memory(request.prompt, pixel_values.to(device), _to(aspect_ratio_ids, device),
                                               _to(aspect_ratio_mask, device))
            extra = dict(memory=(_rows(states, repeat), _rows(tiles, repeat)))
        else:
            if aspect_ratio_ids is not None or aspect_ratio_mask is not None:
                raise LlmarchError("aspect_ratio_ids and aspect_ratio_mask describe Llama 3.2 Vision's pixel_values: "
                                   f"given without them, or to {cfg.name}, which has no such tower")
            media = {k: v.to(device) for k, v in (("pixel_values", pixel_values), ("pixel_attention_mask",
                     pixel_attention_mask), *audio.items()) if v is not None}
            if image_sizes is not None:
                media["image_sizes"] = image_sizes
            extra = dict(embeds=_rows(model.embed_inputs(request.prompt, **media), repeat) if media else None)
        # a prefix LM's prompt (config prefix_lm) is read both ways: the engine's first prefill
        first = engine.prefill(request.prompt.repeat_interleave(repeat, dim=0), **extra)
        seen = None  # what penalties read: each row's prompt (every beam its row's), then its new tokens
        if penalties is not None:
            prompt_mask = None if request.mask is None else request.mask[:, :request.prompt.shape[1]]
            seen = penalties.start(_rows(request.prompt, repeat), first.shape[-1], _rows(prompt_mask, repeat))
        if rules is not None:
            rules.check(first.shape[-1])
            if forced_bos_id is not None:  # transformers' begin index is after the forced token
                rules = dataclasses.replace(rules, begin=rules.begin + 1)
        if forced_bos_id is not None:  # every other token barred: log-probability 0 for the forced one
            first = torch.full_like(first, float("-inf")).index_fill_(
                -1, torch.tensor([forced_bos_id], device=first.device), 0.0)
        if num_beams > 1:
            more = [s[0] for s in stop]
            out = beam_search(first, engine.decode, engine.reorder, request.prompt, num_beams, request.max_new,
                              request.eos_id, request.fill_id, length_penalty, early_stopping, more_ends=more,
                              penalize=_beam_scoring(seen, rules, request.prompt.shape[1]))
            ended = _first_end(out, request.prompt.shape[1], [request.eos_id, *more]) if more else None
        else:
            # a generator per row, each from the seed: a row samples what it samples alone, whatever the batch
            if generator is None and seed is not None:
                generator = [torch.Generator(device=first.device).manual_seed(seed) for _ in range(first.shape[0])]
            out, ended = decode_loop(engine, first, request.prompt, request.max_new, temperature, top_k, top_p,
                                     request.eos_id, request.fill_id, generator, on_tokens, stop, seen, rules)
    return request.finish(out, ended) if as_lists else out


def _to(t: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if t is None else torch.as_tensor(t).to(device)


def _beam_scoring(seen: Seen | None, rules: TokenRules | None, P: int):
    """beam_search's penalize: the rules on each beam's log-probabilities given its new tokens, then the penalties
    (transformers' Whisper order: its suppression and timestamp processors first)."""
    if seen is None and rules is None:
        return None

    def penalize(logp: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        if rules is not None:
            logp = rules.apply(logp, sequences[:, P:])
        return logp if seen is None else seen.rescored(logp, sequences)

    return penalize


def decode_loop(engine: Engine, logits: torch.Tensor, prompt: torch.Tensor, max_new_tokens: int,
                temperature: float, top_k: int | None, top_p: float | None, eos_id: int | None, fill_id: int,
                generator: torch.Generator | list[torch.Generator] | None, on_tokens=None,
                stop: Sequence[Sequence[int]] = (), seen: Seen | None = None,
                rules: TokenRules | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy (temperature 0) or sampled decoding from the logits (B, V) after each row's prompt (B, P), its
    barred tokens at -inf where `rules` (rules.py) are given, then penalized where `seen` (penalties.py) is.
    Returns the ids (B, P + n) and each row's count of new tokens up to and including its end (B,). A row
    ends when it emits eos_id or its new tokens end with a stop sequence, and holds fill_id after that; the
    loop ends when every row has, or after max_new_tokens. Nothing is read back to the host but the
    all-rows-done flag, and only when rows can end early."""
    B, P = prompt.shape
    device = prompt.device
    out = torch.full((B, P + max_new_tokens), fill_id, dtype=torch.long, device=device)
    out[:, :P] = prompt
    stops = [torch.tensor(s, dtype=torch.long, device=device) for s in stop]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    ended = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
    can_end = eos_id is not None or bool(stops)
    n = 0
    for i in range(max_new_tokens):
        if rules is not None:
            logits = rules.apply(logits, out[:, P:P + i])
        if seen is not None:
            logits = seen.apply(logits)
        tok = sample(logits, temperature, top_k, top_p, generator)
        if can_end:
            tok = tok.masked_fill(done, fill_id)
        if seen is not None:
            seen.add(tok)
        out[:, P + i] = tok
        n = i + 1
        if can_end:
            now = torch.zeros_like(done) if eos_id is None else tok == eos_id
            for s in stops:
                if n >= len(s):
                    now |= (out[:, P + n - len(s):P + n] == s).all(dim=1)
            ended = torch.where(now & ~done, n, ended)
            done |= now
        if on_tokens is not None:
            on_tokens(tok)
        if i + 1 == max_new_tokens or (can_end and bool(done.all())):
            break
        logits = engine.decode(tok)
    return out[:, :P + n], ended.clamp(max=n)


def _first_end(out: torch.Tensor, P: int, ends: list[int | None]) -> torch.Tensor:
    """(B,) how many new tokens of each row of out (B, P + n) run up to and including its first end id."""
    new = out[:, P:]
    hit = torch.isin(new, torch.tensor([e for e in ends if e is not None], device=out.device))
    return torch.where(hit.any(1), hit.long().argmax(1) + 1, new.shape[1])


def _cut(out: torch.Tensor, P: int, ended: torch.Tensor | None, eos_id: int | None) -> list[list[int]]:
    """Rows of out (B, P + n) as lists, each cut after its end: `ended` new tokens, or the first new eos_id."""
    rows = out.tolist()
    if ended is not None:
        return [row[:P + e] for row, e in zip(rows, ended.tolist())]
    return [row[:row.index(eos_id, P) + 1] if eos_id is not None and eos_id in row[P:] else row for row in rows]


def _rows(t: torch.Tensor | None, repeat: int) -> torch.Tensor | None:
    return t if t is None or repeat == 1 else t.repeat_interleave(repeat, dim=0)


def _say_capped(max_new: int, asked: int, ctx: int, after: str) -> None:
    if max_new < asked:
        warn(f"generating at most {max_new} new tokens, not {asked}: the model's context_length {ctx} ends "
             f"{max_new} tokens {after}")


class _Request:
    """What generate hands the engine: the prompt (B, P), the cache length, masks, and how to finish a row."""

    def __init__(self, prompt, cache_len, max_new, eos_id, fill_id, finish, mask=None, source=None,
                 source_mask=None, features=None):
        self.prompt, self.cache_len, self.max_new = prompt, cache_len, max_new
        self.eos_id, self.fill_id, self.finish = eos_id, fill_id, finish
        self.mask, self.source, self.source_mask, self.features = mask, source, source_mask, features


MIN_COMPILED_CACHE = 256


def compiled_cache_len(total: int, ctx: int) -> int:
    """The cache a compiled step decodes `total` slots in: the next power of two from 256, at most the context.
    A compiled step attends over its whole cache (one fixed-shape graph), so a cache of the whole context made
    every token of a long-context model read all of it (SmolLM2, 8192 slots: 12 tokens/s compiled against 29
    eager); power-of-two lengths keep the graphs to a handful per model (log2(ctx / 256) + 1) and each cache
    under twice what the call needs."""
    return min(ctx, max(MIN_COMPILED_CACHE, 1 << (total - 1).bit_length()))


def _decoder_request(model, input_ids, attention_mask, eos_id, max_new_tokens, as_lists, compile) -> _Request:
    pad_id = eos_id if eos_id is not None else 0
    if as_lists:
        input_ids, attention_mask = left_pad(input_ids, pad_id)
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    B, T = input_ids.shape
    ctx = model.config.context_length
    if T > ctx:
        raise LlmarchError(f"prompt of {T} tokens is longer than the model's context_length {ctx}")
    # an image token past the vocabulary (PaliGemma's may be) is looked up as 0: TransformerLM.embed_inputs
    check_ids(input_ids if model.config.vision is None else model.vision.text_ids(input_ids), model.config, None)
    max_new = min(max_new_tokens, ctx - T)
    _say_capped(max_new, max_new_tokens, ctx, f"after the {T}-token prompt")
    total = T + max_new
    cache_len = compiled_cache_len(total, ctx) if compile else total
    mask = None  # (B, cache_len) real-slot mask, needed only when some prompt is left-padded
    if attention_mask is not None and not bool(attention_mask.all()):
        mask = torch.ones(B, cache_len, dtype=torch.long, device=device)
        mask[:, :T] = attention_mask.to(device)

    def finish(out: torch.Tensor, ended: torch.Tensor | None) -> list[list[int]]:
        """Each row without its left padding, cut after its end (its first new eos, without `ended`)."""
        rows = []
        for b, row in enumerate(_cut(out, T, ended, eos_id)):
            start = 0 if mask is None else int((mask[b, :T] == 0).sum())
            rows.append(row[start:])
        return rows

    return _Request(input_ids, cache_len, max_new, eos_id, eos_id if eos_id is not None else pad_id, finish, mask)


def _audio_arguments(cfg, input_features: torch.Tensor | None, feature_attention_mask: torch.Tensor | None,
                     speculative: bool) -> dict:
    """An audio-language model's clips (config audio) as embed_inputs' arguments; {} for any other model, whose
    input_features (an encoder's) _check_source judges."""
    if cfg.audio is None or input_features is None:
        if feature_attention_mask is not None:
            raise LlmarchError("feature_attention_mask describes the audio clips (input_features) of a model with an "
                               "audio tower (config audio)")
        return {}
    if speculative:
        raise LlmarchError("input_features (audio clips) are for eager greedy, sampled or beam decoding (no draft "
                           "model, prompt lookup or compile)")
    return dict(input_features=input_features, feature_attention_mask=feature_attention_mask)


def _check_source(cfg, input_ids, input_features: torch.Tensor | None, speculative: bool) -> None:
    """input_ids, or an encoder front end's input_features (config encoder_input) without them: one of the two."""
    front = cfg.encoder_input != "tokens"
    if (input_features is not None) != front or (input_ids is not None) == front or (front and speculative):
        raise LlmarchError(f"{cfg.name} reads " + (f"input_features (encoder_input={cfg.encoder_input!r}) and no "
                                                   "input_ids, without draft models, prompt lookup or compile"
                                                   if front else "input_ids, not input_features"))


def _check_start(cfg, decoder_start_id: int | None, forced_bos_id: int | None, speculative: bool,
                 decoder_prompt: Sequence[int] | None = None) -> None:
    pairs = (("decoder_start_id", decoder_start_id), ("forced_bos_id", forced_bos_id))
    given = {name: value for name, value in pairs if value is not None}
    given.update((f"decoder_prompt[{i}]", int(t)) for i, t in enumerate(decoder_prompt or ()))
    if decoder_prompt is not None and (not len(decoder_prompt) or decoder_start_id is not None):
        raise LlmarchError("decoder_prompt: at least one token, in place of decoder_start_id (not beside it)")
    if not given:
        return
    if not cfg.is_encoder_decoder or speculative:
        names = ", ".join(dict.fromkeys(name.split("[")[0] for name in given))
        raise LlmarchError(f"{names} is for encoder-decoders, without draft models or prompt lookup")
    for name, value in given.items():
        if not 0 <= value < cfg.vocab_size:
            raise LlmarchError(f"{name}={value} is out of range for vocab_size {cfg.vocab_size}")


def _seq2seq_request(model, input_ids, attention_mask, eos_id, max_new_tokens, as_lists,
                     start_ids: list[int], features: torch.Tensor | None = None) -> _Request:
    """start_ids: the decoder's first inputs, the same for every row (the start token, or a decoder prompt)."""
    cfg = model.config
    eos_id = cfg.eos_id if eos_id is None else eos_id
    if as_lists:
        if not input_ids or any(len(p) == 0 for p in input_ids):
            raise LlmarchError("every source needs at least one token")
        input_ids, attention_mask = pad(input_ids, cfg.pad_id, left=False)
    device = next(model.parameters()).device
    if features is not None:  # an encoder front end's (EncoderDecoderLM.encode), masked where it reads a mask
        features = features.to(device)
    else:
        input_ids = input_ids.to(device)
    source_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.to(device)
    rows, P = (input_ids if features is None else features).shape[0], len(start_ids)
    start = torch.tensor([start_ids], dtype=torch.long, device=device).repeat(rows, 1)
    ctx = cfg.decoder_context_length or cfg.context_length
    if P >= ctx:
        raise LlmarchError(f"a decoder prompt of {P} tokens leaves no room in the decoder's {ctx} positions")
    max_new = min(max_new_tokens, ctx - P)  # the start tokens take decoder positions
    _say_capped(max_new, max_new_tokens, ctx, "after the decoder's start token" + ("s" if P > 1 else ""))

    def finish(out: torch.Tensor, ended: torch.Tensor | None) -> list[list[int]]:
        return [row[P:] for row in _cut(out, P, ended, eos_id)]

    return _Request(start, P + max_new, max_new, eos_id, cfg.pad_id, finish, source=input_ids,
                    source_mask=source_mask, features=features)
