"""What an encoder-decoder's encoder reads in place of source token ids (config encoder_input): a front end maps float
features to the stream that enters the encoder's first block (Whisper's adds its own positions: the encoder stack
then adds none, positions 'none' with the decoder's in decoder_overrides). 'tokens', the default, is no part of this
registry: the source ids through the token embedding (models/encoder_decoder.py). Each front end also says what it
needs of the config (check), whether it reads a padded batch's mask (reads_mask, frame_mask: the mask over its
output frames), how many input frames make one encoder position (frames_per_position: one transcription window is
context_length positions) and what it reads of 16 kHz audio (audio_features: `llmarch generate --audio`).

'conv_stem' (Whisper; Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision", §2.2): a
log-mel spectrogram of M channels (80 or 128) and 2S frames, through "a small stem consisting of two convolution
layers with a filter width of 3 and the GELU activation function where the second convolution layer has a stride of
two", after which "sinusoidal position embeddings are added":
    x = GELU(conv2(GELU(conv1(f)))) + PE,    conv1: M -> C, conv2: C -> C stride 2,    f (B, M, 2S) -> x (B, S, C)
PE is the timing signal of positions.fairseq_sinusoids, fixed (a buffer, never trained) yet stored, as Whisper's
checkpoints hold it. The encoder reads exactly 2 * context_length frames (30 s at 100 frames a second: 3000 frames,
1500 positions), as Whisper's does; frames are never masked (silence is padding in the features). The features
themselves: data/log_mel.py.

'waveform_stem' (Moonshine; Jeffries et al. 2024, "Moonshine: Speech Recognition for Live Transcription and Voice
Commands"): the raw 16 kHz waveform (input_channels 1), of any length, through three convolutions,
    x = GELU(conv3(GELU(conv2(GroupNorm(tanh(conv1(w))))))),
    conv1: 1 -> C, width 127 stride 64, no bias;  GroupNorm: one group;  conv2: C -> 2C, width 7 stride 3;
    conv3: 2C -> C, width 3 stride 2,    w (B, 1, N) -> x (B, S, C),  unpadded (S frames of the three widths),
with no positions added (the encoder's blocks rotate theirs: RoPE). A padded batch's attention_mask over the samples
becomes one over the frames as transformers' MoonshineEncoder makes it: the sample at each frame's start (every 384th,
the product of the strides) tells whether the frame is read."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LlmarchError
from ..registry import Registry
from .positions import fairseq_sinusoids

ENCODER_INPUTS: Registry = Registry("encoder input")


def check_encoder_input(cfg) -> None:
    if cfg.encoder_input == "tokens":
        if cfg.input_channels:
            raise LlmarchError(f"input_channels={cfg.input_channels} sizes an encoder front end's features: it needs "
                               "an encoder_input other than 'tokens'")
        return
    if cfg.encoder_input not in ENCODER_INPUTS:
        raise LlmarchError(f"unknown encoder_input {cfg.encoder_input!r}; choose one of: tokens, "
                           + ", ".join(ENCODER_INPUTS.names()))
    if not cfg.n_decoder_layers or cfg.encoder_embed or cfg.input_channels < 1:
        raise LlmarchError(f"encoder_input={cfg.encoder_input!r} is an encoder-decoder's (n_decoder_layers > 0) "
                           "front end over input_channels >= 1 features, without encoder_embed")
    ENCODER_INPUTS[cfg.encoder_input].check(cfg)


@ENCODER_INPUTS.register("conv_stem")
class ConvStem(nn.Module):
    reads_mask = False  # every frame is read: no attention_mask over the features
    frames_per_position = 2  # feature frames per encoder position (the stride-2 convolution)

    @staticmethod
    def audio_features(samples, cfg, preprocessor: dict) -> torch.Tensor:
        """(N,) 16 kHz samples -> (1, input_channels, frames): the log-mel spectrogram (data/log_mel.py), one 30 s
        window, or all of it where longer (long-form transcription)."""
        from ..data.log_mel import SAMPLE_RATE, SECONDS, log_mel_spectrogram

        return log_mel_spectrogram(samples, cfg.input_channels, len(samples) > SAMPLE_RATE * SECONDS)

    @staticmethod
    def check(cfg) -> None:
        if cfg.positions != "none":
            raise LlmarchError("encoder_input='conv_stem' adds its own positions: the encoder stack's positions must "
                               "be 'none' (the decoder's in decoder_overrides)")

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.input_channels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", fairseq_sinusoids(cfg.context_length, d))  # (S, C), stored, not trained
        self.frames = 2 * cfg.context_length

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, M, 2S) -> (B, S, C)
        M = self.conv1.in_channels
        if features.dim() != 3 or features.shape[1] != M or features.shape[2] != self.frames:
            raise LlmarchError(f"input_features must have shape (batch, {M}, {self.frames}): {M} feature channels "
                               f"and exactly {self.frames} frames (pad the log-mel features to it), got "
                               f"{tuple(features.shape)}")
        x = F.gelu(self.conv1(features.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, C)
        return x + self.positions.to(x.dtype)


@ENCODER_INPUTS.register("waveform_stem")
class WaveformStem(nn.Module):
    reads_mask = True  # a padded batch's samples are masked (frame_mask)
    strides = (64, 3, 2)
    frames_per_position = 64 * 3 * 2  # samples per encoder position

    @staticmethod
    def audio_features(samples, cfg, preprocessor: dict) -> torch.Tensor:
        """(N,) 16 kHz samples -> (1, 1, N): the waveform itself, as the checkpoint's feature extractor
        (Wav2Vec2FeatureExtractor) gives it, normalised to zero mean and unit variance where its preprocessor config
        asks (do_normalize: (x - mean) / sqrt(var + 1e-7), its zero_mean_unit_var_norm). One pass over at most
        context_length positions (30 s at 384 samples a position): longer audio is refused, not windowed."""
        x = torch.as_tensor(samples, dtype=torch.float32)
        if len(x) > cfg.context_length * WaveformStem.frames_per_position:
            raise LlmarchError(f"{len(x) / 16000:.1f} s of audio: a waveform_stem model transcribes at most "
                               f"{cfg.context_length * WaveformStem.frames_per_position / 16000:g} s in one pass "
                               "(cut the audio into pieces)")
        if preprocessor.get("do_normalize", False):
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        return x[None, None]

    @staticmethod
    def check(cfg) -> None:
        if cfg.input_channels != 1:
            raise LlmarchError(f"encoder_input='waveform_stem' reads one channel of samples (input_channels=1), not "
                               f"{cfg.input_channels}")

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.conv1 = nn.Conv1d(1, d, kernel_size=127, stride=64, bias=False)
        self.groupnorm = nn.GroupNorm(num_groups=1, num_channels=d, eps=1e-5)
        self.conv2 = nn.Conv1d(d, 2 * d, kernel_size=7, stride=3)
        self.conv3 = nn.Conv1d(2 * d, d, kernel_size=3, stride=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, 1, N) -> (B, S, C)
        if features.dim() != 3 or features.shape[1] != 1 or features.shape[2] < 127 + 64 * 12:
            raise LlmarchError(f"input_features must be a waveform of shape (batch, 1, samples), at least 895 samples "
                               f"(one encoder frame), got {tuple(features.shape)}")
        x = self.groupnorm(torch.tanh(self.conv1(features.to(self.conv1.weight.dtype))))
        x = F.gelu(self.conv2(x))
        return F.gelu(self.conv3(x)).transpose(1, 2)

    def frame_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) over the samples -> (B, S) over the frames: the sample at each frame's first (every 384th),
        as transformers' MoonshineEncoder downsamples it (not the frame's whole receptive field)."""
        n = mask.shape[-1]
        for width, stride in zip((127, 7, 3), self.strides):
            n = (n - width) // stride + 1
        return mask[..., ::self.frames_per_position][..., :n]
