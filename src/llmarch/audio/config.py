"""The audio part of a ModelConfig (`ModelConfig.audio`, a dict of these fields, so configs stay plain JSON): the
encoder, by `kind`: a Whisper-style one (Radford et al. 2022, §2.2: a two-convolution stem over a log-mel
spectrogram, fixed sinusoids, pre-norm blocks, a final LayerNorm) or a Conformer (Gulati et al. 2020; Gemma 4's USM
encoder: audio/conformer.py); how its frames become audio features (Qwen2-Audio's average pooling of frame pairs,
Voxtral's stacking of consecutive frames), the projector into the text model's width and the token whose positions
the features take. Validated here, before anything is built."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from ..layers.ffn import ACTIVATIONS
from ..vision.fields import check_numbers, check_positive, check_switches, read_fields
from ..vision.qwen_config import is_qwen

AUDIO_PROJECTORS = ("linear", "mlp", "rms_linear")  # vision/projector.py's registry entries an audio tower may use
AUDIO_KINDS = ("whisper", "conformer")  # audio/inputs.py's TOWERS


@dataclass(frozen=True)
class AudioConfig:
    audio_token_id: int = 0  # the text token each of whose positions takes one audio feature (<|AUDIO|>, [AUDIO])
    n_mels: int = 128  # the log-mel spectrogram's channels (num_mel_bins)
    width: int = 1280  # the encoder's residual width (d_model)
    n_layers: int = 32
    n_heads: int = 20
    ffn_hidden: int = 5120
    act: str = "gelu"
    n_positions: int = 1500  # max_source_positions: the encoder reads exactly 2 * n_positions frames (30 s)
    norm_eps: float = 1e-5
    # Qwen2-Audio: frames past a clip's length masked as keys (its feature_attention_mask), then average-pooled in
    # pairs (AvgPool1d(2, 2)) before the final LayerNorm; each clip fills as many audio tokens as its real frames make
    pool: int = 1
    masked: bool = False
    # Voxtral: `stack` consecutive output frames concatenated (its reshape to intermediate_size) before the projector
    stack: int = 1
    # Qwen2.5-Omni: each clip's real frames cut into chunks of 2 x window frames (transformers' n_window), each
    # through the stem with positions from 0 and attending within itself (chunked_tower.py); 0: whole 30 s clips
    window: int = 0
    projector: str = "linear"  # linear: W f + b (Qwen2-Audio); mlp: W2 act(W1 f) (Voxtral, no biases)
    projector_act: str = "gelu"
    projector_bias: bool = True
    projector_eps: float = 1e-6  # rms_linear: its RMSNorm's eps (Gemma 4's embedder: the audio config's rms_norm_eps)
    # the encoder: Whisper's (audio/tower.py: the fields above) or a Conformer (audio/conformer.py: Gemma 4's, whose
    # width, n_layers, n_heads, ffn_hidden, act and norm_eps are those above; n_positions, pool, stack, masked unused)
    kind: str = "whisper"
    conv_channels: tuple = (128, 32)  # conformer: the two stride-2 Conv2d of its stem (subsampling_conv_channels)
    chunk: int = 12  # conformer: queries attend in blocks of this many frames (attention_chunk_size)
    context_left: int = 13  # conformer: attention_context_left (the frame itself and context_left - 2 before it)
    context_right: int = 0  # conformer: attention_context_right (context_right - 1 frames after it)
    logit_cap: float = 50.0  # conformer: attention scores soft-capped, cap * tanh(s / cap)
    masked_logit: float = -1e9  # conformer: the score of a barred key (attention_invalid_logits_value)
    conv_kernel: int = 5  # conformer: the causal depthwise convolution's width
    residual_weight: float = 0.5  # conformer: each half-step FFN's output scale (Gulati et al. 2020, eq. 1)
    clipped: bool = False  # conformer: every linear clamps its input and output to stored bounds (use_clipped_linears)
    clip: float = 1e10  # conformer: activations clamped to +-clip around each norm (gradient_clipping)
    output_dims: int = 0  # conformer: the output projection's width (output_proj_dims); 0: width, no projection

    @property
    def feature_width(self) -> int:
        """What the projector reads: `stack` frames side by side (a conformer: its output projection's width)."""
        return self.output_dims or self.width if self.kind == "conformer" else self.width * self.stack

    # the conv stem's config (layers/encoder_inputs.ConvStem reads these three)
    @property
    def d_model(self) -> int:
        return self.width

    @property
    def input_channels(self) -> int:
        return self.n_mels

    @property
    def context_length(self) -> int:
        return self.n_positions

    @property
    def frames(self) -> int:
        """The spectrogram frames one clip has: 30 s, padded (the stem's stride-2 convolution halves them)."""
        return 2 * self.n_positions

    @property
    def tokens_per_clip(self) -> int:
        """Audio tokens a whole (unmasked) clip fills."""
        return self.n_positions // self.pool // self.stack

    def summary(self) -> str:
        """What `llmarch info` says of the tower."""
        if self.kind == "conformer":
            return (f"{self.n_layers}-layer Conformer encoder, width {self.width}, {self.n_mels} mel bins, one token "
                    f"per 4 frames of a clip (id {self.audio_token_id}), {self.projector} projector")
        clips = f"clips of any length read in chunks of {2 * self.window} frames, one token per {2 * self.pool} " \
            f"frames" if self.window else f"clips of {self.frames} frames, up to {self.tokens_per_clip} tokens each"
        return (f"{self.n_layers}-layer Whisper encoder, width {self.width}, {self.n_mels} mel bins, {clips} (id "
                f"{self.audio_token_id}), {self.projector} projector")

    def clip_tokens(self, frames: int) -> int:
        """Audio tokens a clip of `frames` real spectrogram frames fills: the stem's and pool's output lengths,
        as transformers' _get_feat_extract_output_lengths (a masked tower), else the whole clip's."""
        if self.kind == "conformer":
            return conformer_stem_length(frames)
        if not self.masked:
            return self.tokens_per_clip
        positions = (frames - 1) // 2 + 1
        return (positions - self.pool) // self.pool + 1


def audio_config(data: dict) -> AudioConfig:
    """ModelConfig.audio's dict as an AudioConfig, every field checked; an unknown field is an error."""
    a = read_fields(AudioConfig, data, "audio")
    check_positive(a, ("n_mels", "width", "n_layers", "n_heads", "ffn_hidden", "n_positions", "pool", "stack"), "audio")
    if a.width % a.n_heads:
        raise LlmarchError(f"audio width {a.width} must divide by n_heads {a.n_heads}")
    if a.act not in ACTIVATIONS or a.projector_act not in ACTIVATIONS or a.projector not in AUDIO_PROJECTORS:
        raise LlmarchError(f"audio act {a.act!r}, projector_act {a.projector_act!r}, projector {a.projector!r}: "
                           f"activations are {', '.join(ACTIVATIONS)}; projectors {', '.join(AUDIO_PROJECTORS)}")
    if a.n_positions % (a.pool * a.stack):
        raise LlmarchError(f"audio n_positions {a.n_positions} must divide by pool {a.pool} times stack {a.stack}")
    if not isinstance(a.window, int) or isinstance(a.window, bool) or a.window < 0 or a.window and a.stack != 1:
        raise LlmarchError(f"audio window must be a whole number of frames (0: none), chunks going with stack 1, got "
                           f"{a.window!r}")
    if a.masked and a.stack != 1:
        raise LlmarchError("audio masked (per-clip lengths) goes with pool, not stack: a stacked feature would mix "
                           "real and padded frames")
    check_switches(a, ("masked", "projector_bias", "clipped"), "audio")
    if a.kind not in AUDIO_KINDS:
        raise LlmarchError(f"audio kind {a.kind!r} is not supported; supported: {', '.join(AUDIO_KINDS)}")
    if a.kind == "conformer":
        check_conformer(a)
    if not isinstance(a.audio_token_id, int) or isinstance(a.audio_token_id, bool) or a.audio_token_id < 0:
        raise LlmarchError(f"audio audio_token_id must be a token id, got {a.audio_token_id!r}")
    return a


def conformer_stem_length(n: int) -> int:
    """What a conformer's stem leaves of n frames (or frequency rows): two stride-2 convolutions of width 3, padding
    1, each ceil(n / 2)."""
    return -(-(-(-n // 2)) // 2)


def check_conformer(a: AudioConfig) -> None:
    """A conformer's own fields; its stem flattens n_mels / 4 frequency rows of conv_channels[1] channels."""
    check_positive(a, ("chunk", "context_left", "conv_kernel"), "audio")
    check_numbers(a, ("logit_cap", "residual_weight", "clip", "projector_eps"), "audio")
    channels = a.conv_channels
    if not isinstance(channels, (list, tuple)) or len(channels) != 2 \
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
        raise LlmarchError(f"audio conv_channels must be two positive integers, got {channels!r}")
    if a.context_left < 2 or a.context_right < 0 or a.output_dims < 0 or a.pool != 1 or a.stack != 1 or a.window:
        raise LlmarchError("a conformer audio tower needs context_left >= 2, context_right >= 0, output_dims >= 0 and "
                           "no pool or stack, and no window (Whisper-style towers' fields)")
    if a.width % 2:
        raise LlmarchError(f"a conformer's width {a.width} must be even (its relative positions' sine and cosine "
                           "halves)")
    rows = conformer_stem_length(a.n_mels)
    if rows != channels[0] // 4:  # transformers sizes the stem's projection as conv_channels[0] // 4 rows
        raise LlmarchError(f"a conformer's stem leaves {rows} of n_mels {a.n_mels} frequency rows; its projection "
                           f"reads conv_channels[0] // 4 = {channels[0] // 4}")


def check_audio(cfg) -> None:
    """ModelConfig's check of its audio dict (None: no audio) and of the text side it joins."""
    if cfg.audio is None:
        return
    audio_config(cfg.audio)
    if cfg.is_encoder_decoder or not cfg.causal or cfg.head != "lm" or cfg.codebooks \
            or not (cfg.vision is None or is_qwen(cfg.vision)):
        raise LlmarchError("audio (audio inputs) is for decoder-only language models without codebooks or a vision "
                           "tower other than Qwen-VL's (Qwen2.5-Omni's thinker)")
