"""Audio as text embeddings (Qwen2-Audio, Voxtral, Qwen2.5-Omni, Gemma 4): each clip's encoder frames (the tower of
the config's kind: tower.py's Whisper encoder, Qwen2.5-Omni's chunked_tower.py, or conformer.py's), Voxtral's stacked
in fours, projected into the text model's width (vision/projector.py's linear, MLP or RMSNorm-linear projector) and
written at the audio-token positions of the text embeddings, in order: clip n fills the n-th run of its tokens,
counting row by row, as transformers' masked_scatter does. A masked tower (Qwen2-Audio, a conformer) gives each clip as
many features as its real frames make (feature_attention_mask), the rest dropped, as transformers' Qwen2AudioModel and
Gemma4Model drop them."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from ..vision.config import VisionConfig
from ..vision.projector import PROJECTORS
from .chunked_tower import ChunkedAudioTower
from .config import AudioConfig, audio_config
from .conformer import ConformerTower
from .tower import AudioTower

TOWERS = {"whisper": AudioTower, "conformer": ConformerTower}  # by AudioConfig.kind


def clip_frames(feature_attention_mask: torch.Tensor | None, clips: int) -> torch.Tensor | None:
    """feature_attention_mask (N, frames) -> each clip's real frames (N,); None stays None."""
    if feature_attention_mask is None:
        return None
    if feature_attention_mask.dim() != 2 or feature_attention_mask.shape[0] != clips:
        raise LlmarchError(f"feature_attention_mask must be (clips, frames), one row per clip of input_features "
                           f"({clips}), got {tuple(feature_attention_mask.shape)}")
    return feature_attention_mask.long().sum(-1)


def projector_config(a: AudioConfig) -> VisionConfig:
    """The vision projectors' config for the audio features: their width, the projector's kind, activation and
    biases; every other field a projector may read at its default (a plain linear map or LLaVA's MLP)."""
    return VisionConfig(width=a.feature_width, projector=a.projector, projector_act=a.projector_act,
                        projector_bias=a.projector_bias, projector_eps=a.projector_eps)


class AudioInputs(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.a = audio_config(cfg.audio)
        self.tower = ChunkedAudioTower(self.a) if self.a.window else TOWERS[self.a.kind](self.a)
        self.projector = PROJECTORS[self.a.projector](projector_config(self.a), cfg.d_model)
        # the text model scales its token embeddings by sqrt(d_model) (Gemma) after this; transformers scales them
        # inside its embedding module, so its audio features are never scaled: ours are divided by the same factor
        self.embed_scale = cfg.d_model ** 0.5 if cfg.embed_scale else None

    def features(self, input_features: torch.Tensor,
                 feature_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_features (N, n_mels, frames), feature_attention_mask (N, frames) -> the clips' projected features,
        one after another (F, C), as transformers' get_audio_features gives them (Qwen2-Audio's masked)."""
        a = self.a
        frames = clip_frames(feature_attention_mask, input_features.shape[0])
        if a.window:  # Qwen2.5-Omni's: each clip's real frames only, already one after another
            return self.projector(self.tower(input_features, frames))
        x = self.tower(input_features, frames)  # (N, S', width)
        n, s, c = x.shape
        x = self.projector(x.reshape(n, s // a.stack, a.stack * c))  # (N, S' / stack, C)
        if frames is None:
            return x.flatten(0, 1)
        counts = torch.tensor([a.clip_tokens(int(f)) for f in frames], device=x.device)  # each clip's real ones
        return x[torch.arange(x.shape[1], device=x.device)[None] < counts[:, None]]

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, input_features: torch.Tensor,
                feature_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """embeds (B, T, C) of ids (B, T) -> embeds with the clips' features at the audio-token positions."""
        where = ids == self.a.audio_token_id  # (B, T)
        features = self.features(input_features, feature_attention_mask).to(embeds.dtype)
        count = int(where.sum())
        if count != features.shape[0]:
            raise LlmarchError(f"{input_features.shape[0]} audio clip(s) make {features.shape[0]} audio features, "
                               f"which need as many audio tokens (id {self.a.audio_token_id}) in input_ids, which "
                               f"hold {count}")
        if self.embed_scale is not None:
            features = features / torch.tensor(self.embed_scale, dtype=features.dtype)
        return embeds.masked_scatter(where[..., None], features)
