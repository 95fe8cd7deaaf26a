"""The audio encoder of Qwen2-Audio and Voxtral: Whisper's (Radford et al. 2022, §2.2), as their transformers
classes (Qwen2AudioEncoder, VoxtralEncoder) hold it. The stem is llmarch's Whisper front end (layers/encoder_inputs.py
'conv_stem': GELU(conv1), GELU(conv2, stride 2), the stored sinusoids added); the blocks are llmarch's own Block,
pre-norm LayerNorms with biases everywhere (the keys' held as zeros: Whisper has none, and a key bias shifts no
softmax), bidirectional, no rotary positions; then Qwen2-Audio's average pooling of frame pairs (its avg_pooler,
before the final LayerNorm) and the final LayerNorm. Qwen2-Audio masks each clip's padded frames as keys (its
feature_attention_mask, as transformers' Qwen2AudioModel builds the encoder's mask); Voxtral reads every frame.
Shapes: features (N, n_mels, 2S) -> (N, S / pool, width)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.encoder_inputs import ConvStem
from ..layers.norms import make_norm
from .config import AudioConfig


def block_config(a: AudioConfig) -> ModelConfig:
    """Whisper's encoder blocks as llmarch blocks (a ViT's are alike, vision/tower.py, but their config is the
    vision tower's own): pre-norm LayerNorms, biases, multi-head attention, bidirectional, the stem's positions."""
    return ModelConfig(name="audio", vocab_size=1, d_model=a.width, n_layers=a.n_layers, n_heads=a.n_heads,
                       ffn=a.act, ffn_hidden=a.ffn_hidden, norm="layernorm", norm_eps=a.norm_eps, bias=True,
                       causal=False, positions="none", context_length=a.n_positions)


class AudioTower(nn.Module):
    def __init__(self, a: AudioConfig):
        super().__init__()
        self.a = a
        cfg = block_config(a)
        self.stem = ConvStem(a)  # reads a's d_model, input_channels and context_length
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i), layer=i) for i in range(a.n_layers))
        self.norm = make_norm(cfg)

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """features (N, n_mels, 2S): N clips' log-mel spectrograms, each padded to 30 s; frames (N,): each clip's
        real frames (a masked tower's; None: all) -> (N, S / pool, width)."""
        x = self.stem(features)  # (N, S, C); the stem checks the shape
        mask = None
        if frames is not None:
            if not self.a.masked:
                raise LlmarchError("this audio tower reads every frame: a feature_attention_mask is for one that masks "
                                   "padded frames (audio masked, Qwen2-Audio's)")
            real = (frames.to(x.device) - 1) // 2 + 1  # the stem's output length of each clip
            keys = torch.arange(x.shape[1], device=x.device)[None] < real[:, None]  # (N, S)
            mask = None if bool(keys.all()) else keys[:, None, None, :]
        ctx = AttentionContext(mask=mask, causal=False, rope=None, input_pos=torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            x = block(x, ctx)
        if self.a.pool > 1:  # Qwen2-Audio's AvgPool1d(2, stride 2) over time, before its final LayerNorm
            x = F.avg_pool1d(x.transpose(1, 2), self.a.pool, self.a.pool).transpose(1, 2)
        return self.norm(x)
