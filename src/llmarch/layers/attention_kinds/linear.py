"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"; linear_attention.py): softmax's
kernel replaced by the feature map elu(x) + 1, so causal attention is a recurrence whose state, not a KV
cache, is what decoding carries."""
from __future__ import annotations

import torch

from ..linear_attention import EluFeatures, LinearState, linear_attention
from ..mixer import per_sequence_bytes
from .kind import ATTENTION_KINDS, AttentionKind


@ATTENTION_KINDS.register("linear")
class Linear(AttentionKind):
    state_note = "constant in the context; linear-attention states in fp32"

    def features(self, cfg, layer: int) -> torch.nn.Module:
        return EluFeatures()

    def feature_count(self, attn) -> int:
        return attn.head_dim

    def modules(self, cfg, layer):
        return {"features": self.features(cfg, layer)}

    def new_state(self, attn, batch, max_len, dtype, device):
        return LinearState(batch, attn.n_heads, self.feature_count(attn), attn.head_dim, device)

    def cache_bytes(self, attn, dtype, max_len):
        return 0, per_sequence_bytes(lambda batch: self.new_state(attn, batch, max_len, dtype, "meta"))

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        """Features of q and k (keys at padding zeroed), then linear_attention, carrying the recurrent state in
        place of a KV cache when generating."""
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        fq, fk = attn.features(q, True), attn.features(k, False)
        if ctx.pad_mask is not None:
            fk = fk * ctx.pad_mask[:, ctx.input_pos][:, None, :, None]
        return linear_attention(fq, fk, v, self.causal, attn.cache).to(q.dtype)
