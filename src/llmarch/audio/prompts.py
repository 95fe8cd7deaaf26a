"""A text prompt about audio clips as the input_ids and audio arguments the family's processor builds. PROMPTS is
keyed by the checkpoint's HF model type (config hf_model_type), as interop's families are; an entry maps (audio
config, tokenizer, prompt, 16 kHz clips, the preprocessor config) to (ids, generate's audio keyword arguments:
input_features, and feature_attention_mask where the model reads one). The features are WhisperFeatureExtractor's
(data/log_mel.py computes them bit for bit), or Gemma 4's (data/usm_log_mel.py, bit for bit too). `audio_request`
is the one call a command makes."""
from __future__ import annotations

import numpy as np
import torch

from ..data.log_mel import HOP, SAMPLE_RATE, SECONDS, log_mel_spectrogram
from ..data.usm_log_mel import usm_features
from ..errors import LlmarchError
from ..registry import Registry
from ..vision.preprocess import PREPROCESSOR_FILE, PROCESSOR_FILE, side_config
from ..vision.prompt_parts import bos_text, count, expand, named_token
from .config import AudioConfig, audio_config

PROMPTS: Registry = Registry("audio prompt layout")
WINDOW = SAMPLE_RATE * SECONDS  # samples in one 30 s clip


def audio_request(model, tok, prompt: str, clips: list) -> tuple[list[int], dict]:
    """(ids, audio arguments) for one prompt about `clips` (16 kHz samples, data/wav.read_wav's), with the
    checkpoint's preprocessor config (from the tokenizer's side files) and prompt layout."""
    cfg = model.config
    if cfg.audio is None:
        raise LlmarchError(f"{cfg.name} reads no audio clips beside its prompt (it has no audio tower: config audio)")
    if cfg.hf_model_type not in PROMPTS:
        raise LlmarchError(f"audio for a {cfg.hf_model_type!r} checkpoint is not supported; supported: "
                           f"{', '.join(PROMPTS.names())}")
    a = audio_config(cfg.audio)
    preprocessor = feature_extractor_config(getattr(tok, "side_files", {}))
    mels = preprocessor.get("feature_size", a.n_mels)
    if mels != a.n_mels or preprocessor.get("do_normalize", False):
        raise LlmarchError(f"the checkpoint's {PREPROCESSOR_FILE} asks for {mels} mel bins"
                           + (" normalised" if preprocessor.get("do_normalize") else "")
                           + f"; its audio tower reads {a.n_mels}, as WhisperFeatureExtractor makes them")
    return PROMPTS[cfg.hf_model_type](a, tok, prompt, [np.asarray(c, dtype=np.float32) for c in clips], preprocessor)


def feature_extractor_config(side_files: dict) -> dict:
    """The feature extractor's config: processor_config.json's feature_extractor (transformers 5 nests it there
    beside an image processor: Gemma 4), else preprocessor_config.json."""
    nested = side_config(side_files, PROCESSOR_FILE).get("feature_extractor")
    return nested if isinstance(nested, dict) else side_config(side_files, PREPROCESSOR_FILE)


def chat_audio_request(model, tok, text: str, clips: list) -> tuple[list[int], dict]:
    """audio_request for a conversation its chat template rendered to `text`, which holds the audio token once per
    clip (Qwen2-Audio's template writes <|audio_bos|><|AUDIO|><|audio_eos|> for each {"type": "audio"} part), as
    transformers' processor reads the rendered text. Voxtral's chat is mistral-common's own, not a template: refused."""
    if model.config.hf_model_type == "voxtral":
        raise LlmarchError("chat with audio for voxtral is mistral-common's chat layout, not a chat template: use "
                           "generate --audio")
    token = _audio_token(audio_config(model.config.audio), tok) if model.config.audio is not None else ""
    if token and text.count(token) != len(clips):
        raise LlmarchError(f"the chat template wrote {text.count(token)} {token} token(s) for {len(clips)} clip(s): "
                           "it does not place audio")
    return audio_request(model, tok, text, clips)


def _token_id(tok, text: str) -> int:
    """The id of the special token spelled `text`."""
    ids = [i for i, _ in tok.encode_offsets(text)] if hasattr(tok, "encode_offsets") else []
    if len(ids) != 1:
        raise LlmarchError(f"the tokenizer has no {text} token, which the audio prompt needs")
    return ids[0]


def _audio_token(a: AudioConfig, tok) -> str:
    text = tok.token_text(a.audio_token_id) if a.audio_token_id < tok.vocab_size else ""
    if not text:
        raise LlmarchError(f"the tokenizer has no text for the audio token (id {a.audio_token_id})")
    return text


# Qwen2AudioProcessor's audio markers, which its chat template writes around each clip's <|AUDIO|>
AUDIO_BOS, AUDIO_EOS = "<|audio_bos|>", "<|audio_eos|>"


@PROMPTS.register("qwen2_5_omni_thinker")  # Qwen2_5OmniProcessor's audio: the same features, counts and markers
@PROMPTS.register("qwen2_audio")
def qwen2_audio(a: AudioConfig, tok, prompt: str, clips: list, preprocessor: dict) -> tuple[list[int], dict]:
    """Qwen2AudioProcessor: each clip's features over its first 30 s, zero-padded to 30 s (padding max_length), and
    its real frames (feature_attention_mask, the samples' mask taken every 160th); the k-th <|AUDIO|> becomes clip
    k's count of them (a.clip_tokens), the text tokenized as usual. A prompt without one gets each clip at its start
    as Qwen2-Audio's documented prompts write it, <|audio_bos|><|AUDIO|><|audio_eos|> (the processor itself refuses
    a prompt without audio tokens)."""
    token = _audio_token(a, tok)
    features = torch.cat([log_mel_spectrogram(c, a.n_mels) for c in clips])  # (N, M, 3000)
    real = [-(-min(len(c), WINDOW) // HOP) for c in clips]  # frames whose first sample is audio, not padding
    mask = (torch.arange(features.shape[-1])[None] < torch.tensor(real)[:, None]).long()
    if not count(prompt, token, len(clips), "clip"):
        prompt = (AUDIO_BOS + token + AUDIO_EOS) * len(clips) + prompt
    ids = tok.encode(expand(prompt, token, [a.clip_tokens(r) for r in real]))
    return ids, dict(input_features=features, feature_attention_mask=mask)


@PROMPTS.register("voxtral")
def voxtral(a: AudioConfig, tok, prompt: str, clips: list, preprocessor: dict) -> tuple[list[int], dict]:
    """VoxtralProcessor's apply_chat_template for one user turn of the clips, then the text: each clip zero-padded
    to a multiple of 30 s, its features computed whole (one maximum for its floor) and cut into 30 s chunks, each a
    row of input_features; the ids as mistral-common's instruct tokenizer lays them (its AudioEncoder and
    InstructTokenizerV7, read from its source; mistral-common is not a dependency, so not run against it):
    <s>[INST], per clip [BEGIN_AUDIO] then [AUDIO] 375 times per chunk, the prompt's text, [/INST]."""
    if _audio_token(a, tok) in prompt:  # VoxtralProcessor refuses it too: the clips place their own
        raise LlmarchError(f"a Voxtral prompt holds no {_audio_token(a, tok)} tokens: each clip goes before its text")
    chunks = []
    for c in clips:
        padded = np.pad(c, (0, -len(c) % WINDOW)) if len(c) else np.zeros(WINDOW, dtype=np.float32)
        whole = log_mel_spectrogram(padded, a.n_mels, whole=True)[0]  # (M, 3000 k)
        chunks += list(whole.reshape(a.n_mels, -1, a.frames).transpose(0, 1))
    audio = [i for c in clips for i in [_token_id(tok, "[BEGIN_AUDIO]")]
             + [a.audio_token_id] * (a.tokens_per_clip * max(1, -(-len(c) // WINDOW)))]
    text = [i for i, _ in tok.encode_offsets(prompt)]
    ids = [_token_id(tok, bos_text(tok)), _token_id(tok, "[INST]"), *audio, *text, _token_id(tok, "[/INST]")]
    return ids, dict(input_features=torch.stack(chunks))


@PROMPTS.register("gemma4")
def gemma4(a: AudioConfig, tok, prompt: str, clips: list, preprocessor: dict) -> tuple[list[int], dict]:
    """Gemma4Processor: the clips' features and mask from its feature extractor (data/usm_log_mel.py, padded to the
    longest clip), each <|audio|> (the tokenizer's audio_token) of the text becoming <boa> (boa_token), the audio
    token once per encoder frame of clip k's real ones (a.clip_tokens), <eoa> (eoa_token); then the text tokenized
    as usual (BOS first). A prompt without audio tokens gets one per clip at its start."""
    token = _audio_token(a, tok)
    features, mask = usm_features(clips, preprocessor)
    if not count(prompt, token, len(clips), "clip"):
        prompt = token * len(clips) + prompt
    marked = prompt.replace(token, named_token(tok, "boa_token") + token + named_token(tok, "eoa_token"))
    ids = tok.encode(expand(marked, token, [a.clip_tokens(int(m.sum())) for m in mask]))
    return ids, dict(input_features=features, feature_attention_mask=mask)
