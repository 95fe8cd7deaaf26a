"""ProphetNet's n-gram self-attention (Qi et al. 2020, "ProphetNet: Predicting Future N-gram for Sequence-to-Sequence
Pre-training", §2.2) as inference reads it. The decoder carries a main stream h (the tokens so far) and n predicting
streams; the first predicting stream's row t, g_t (no token: a learned vector at position t + 1), attends to the main
stream's rows 0..t and to itself, and its output is what the head reads for the next token (transformers' `logits`);
the other streams predict tokens further ahead for the training loss and are not computed. x holds the main stream's
T rows and then g's T rows (the stack puts them there: ngram_streams); both go through the same projections.

Scores carry a relative position bias read from the query's own hidden state: r = W_r x + b_r (rel_proj, one value per
bucket and head), bias(q, k) = r_q[bucket(k - q)] with T5's causal buckets (relative_buckets, relative_max_distance);
the predicting stream sits one position ahead, so its main keys take bucket(k - q - 1) and its own key bucket 0.
  main:    softmax_k(q_t.k_k / sqrt(d) + r_t[bucket(k - t)]) over k <= t, then v;
  predict: softmax over {k <= t} U {itself} of p_t.k_k / sqrt(d) + r'_t[bucket(k - t - 1)] and p_t.k'_t + r'_t[0].
The main stream's keys and values are the decode state (a KV cache); each step's predicting row is recomputed.
transformers' whole-sequence forward reads r' of other rows and heads when T > 1 (its gather flattens r' in another
order than the buckets); its cached decoding, one token a step, reads them as here."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import LlmarchError
from ..linear import Linear
from ..positions import relative_bucket
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("ngram")
class NgramStreams(AttentionKind):
    cache_note = "the main stream's keys and values"

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.buckets, self.max_distance = cfg.relative_buckets, cfg.relative_max_distance

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if not cfg.causal or not cfg.ngram_streams:
            raise LlmarchError("attention='ngram' is a decoder's (causal) over its main and predicting streams: it "
                               "needs ngram_streams > 0")
        if cfg.positions != "learned" and not cfg.positions.startswith("sinusoidal"):
            raise LlmarchError(f"attention='ngram' with positions={cfg.positions!r}: the predicting stream is placed "
                               "one position ahead by an absolute position table (learned or sinusoidal)")

    def modules(self, cfg, layer: int) -> dict:
        return {"rel_proj": Linear(cfg.d_model, cfg.relative_buckets * cfg.n_heads)}

    def attend(self, attn, x, q, k, v, ctx, dropout_p):  # x (B, 2T, C); q, k, v (B, H, 2T, D)
        T, H = q.shape[2] // 2, q.shape[1]
        (q_m, q_p), (k_m, k_p), (v_m, v_p) = q.split(T, 2), k.split(T, 2), v.split(T, 2)
        k_m, v_m = cached_kv(attn, k_m, v_m, ctx)  # (B, H, S, D): the main stream's keys so far
        S = k_m.shape[2]
        rel = attn._modules["rel_proj"](x).unflatten(-1, (self.buckets, H)).permute(0, 3, 1, 2)  # (B, H, 2T, n)
        rel_m, rel_p = rel.split(T, 2)
        offset = torch.arange(S, device=q.device)[None, :] - ctx.input_pos[:, None]  # (T, S): key - query
        seen = offset <= 0  # (T, S) causal, padding below
        if ctx.pad_mask is not None:
            seen = seen & ctx.pad_mask[:, None, None, :S]  # (B, 1, T, S)
        scale = q.shape[-1] ** -0.5 if attn.scale is None else attn.scale
        main = self._scores(q_m, k_m, rel_m, offset, scale).masked_fill(~seen, float("-inf"))
        probs = attn._modules["hook_pattern"](main.softmax(-1))
        out_m = F.dropout(probs, dropout_p) @ v_m if dropout_p else probs @ v_m  # (B, H, T, D)
        ahead = self._scores(q_p, k_m, rel_p, offset - 1, scale).masked_fill(~seen, float("-inf"))
        own = (q_p * k_p).sum(-1, keepdim=True) * scale + rel_p[..., :1]  # (B, H, T, 1)
        probs = torch.cat([ahead, own], -1).softmax(-1)
        probs = F.dropout(probs, dropout_p) if dropout_p else probs
        out_p = probs[..., :S] @ v_m + probs[..., S:] * v_p
        return torch.cat([out_m, out_p], 2)  # (B, H, 2T, D)

    def _scores(self, q, k, rel, offset, scale) -> torch.Tensor:
        """q.k scaled plus each query's relative bias r[bucket(offset)]: (B, H, T, S)."""
        buckets = relative_bucket(offset, self.buckets, self.max_distance, False)  # (T, S)
        bias = rel.gather(-1, buckets.expand(*rel.shape[:2], *buckets.shape))
        return (q @ k.transpose(-2, -1)) * scale + bias
