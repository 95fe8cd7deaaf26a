"""Performer (Choromanski et al. 2021, FAVOR+; linear_attention.py): linear attention whose feature map is
positive orthogonal random features, an unbiased estimate of softmax's kernel, drawn once per layer from
attention_seed + layer."""
from __future__ import annotations

from ...errors import LlmarchError
from ..linear_attention import FavorFeatures
from .kind import ATTENTION_KINDS
from .linear import Linear


@ATTENTION_KINDS.register("performer")
class Performer(Linear):
    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.performer_features <= 0:
            raise LlmarchError(f"performer_features must be positive, got {cfg.performer_features}")

    def features(self, cfg, layer):
        scale = cfg.attn_scale if cfg.attn_scale is not None else cfg.head_dim ** -0.5
        return FavorFeatures(cfg.head_dim, cfg.performer_features, scale, cfg.attention_seed + layer)

    def feature_count(self, attn):
        return attn.features.w.shape[0]
