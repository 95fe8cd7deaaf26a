"""The audio part of a ModelConfig (`ModelConfig.audio`, a dict of these fields, so configs stay plain JSON): a
Whisper-style encoder (Radford et al. 2022, §2.2: a two-convolution stem over a log-mel spectrogram, fixed sinusoids,
pre-norm blocks, a final LayerNorm), how its frames become audio features (Qwen2-Audio's average pooling of frame
pairs, Voxtral's stacking of consecutive frames), the projector into the text model's width and the token whose
positions the features take. Validated here, before anything is built."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from ..layers.ffn import ACTIVATIONS
from ..vision.fields import check_positive, check_switches, read_fields
from ..vision.qwen_config import is_qwen

AUDIO_PROJECTORS = ("linear", "mlp")  # vision/projector.py's registry entries an audio tower may use


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

    @property
    def feature_width(self) -> int:
        """What the projector reads: `stack` frames side by side."""
        return self.width * self.stack

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

    def clip_tokens(self, frames: int) -> int:
        """Audio tokens a clip of `frames` real spectrogram frames fills: the stem's and pool's output lengths,
        as transformers' _get_feat_extract_output_lengths (a masked tower), else the whole clip's."""
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
    check_switches(a, ("masked", "projector_bias"), "audio")
    if not isinstance(a.audio_token_id, int) or isinstance(a.audio_token_id, bool) or a.audio_token_id < 0:
        raise LlmarchError(f"audio audio_token_id must be a token id, got {a.audio_token_id!r}")
    return a


def check_audio(cfg) -> None:
    """ModelConfig's check of its audio dict (None: no audio) and of the text side it joins."""
    if cfg.audio is None:
        return
    audio_config(cfg.audio)
    if cfg.is_encoder_decoder or not cfg.causal or cfg.head != "lm" or cfg.ple_dim or cfg.codebooks \
            or not (cfg.vision is None or is_qwen(cfg.vision)):
        raise LlmarchError("audio (audio inputs) is for decoder-only language models without per-layer inputs, "
                           "codebooks or a vision tower other than Qwen-VL's (Qwen2.5-Omni's thinker)")
