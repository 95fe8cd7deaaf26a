"""Output heads on the final hidden states.
- HeadTransform: BERT's masked-LM head transform (Devlin et al. 2019, appendix A.1 / the reference code):
  h -> LayerNorm(act(h W + b)), before the projection onto the vocabulary.
- BottleneckTransform: UltraBERT's masked-LM head transform (head_mlp): h -> act(act(h W_1) W_2), a two-layer MLP
  through a narrower width without biases or a norm, before the projection onto the vocabulary.
  With head_extra (MobileBERT) the transform keeps d_model and the output projection is [E; D]: the first embed_dim
  features project onto the tied embeddings E, the rest through a matrix D of the head's own (ExtraProjection).
- Pooler: the sequence summary a classifier reads (Devlin et al. 2019, §3 and Fig. 4a: the final hidden
  state C of the first token, [CLS]), passed through a dense layer and tanh as in the reference code:
  pooled = tanh(C W + b) (DistilBERT: ReLU, ELECTRA: GELU; pooler_act). RoBERTa's classification head has the same
  shape under other names. ELECTRA's discriminator (Clark et al. 2020, §2: replaced-token detection, head
  `detect`) applies the same dense and activation to every token, then a 1-wide projection: one logit per token.
  A causal model's first token sees nothing after it, so there the last real token is pooled (as transformers'
  GPT-2 and LLaMA sequence classifiers do). ModernBERT's classifiers (Warner et al. 2024) read through a
  HeadTransform instead (classifier_transform): LayerNorm(GELU(C W)) of the first token, or
  of the mean over real tokens (pooling), and its token classifier the same on every token.
- pool: an embedding model's output (head embed), the final hidden states as llama.cpp pools them (its
  pooling_type): each token's, the first token's ([CLS]), their mean over real tokens (Sentence-BERT's mean
  pooling, Reimers & Gurevych 2019, §3), or the last real token's; then, where the config has them, the
  sentence-transformers Dense projections (SentenceDense: EmbeddingGemma's 768 -> 3072 -> 768, Vera et al. 2025, §2)
  and unit length (its Normalize module)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .ffn import ACTIVATIONS, FFN_ACTIVATION
from .linear import Linear
from .norms import NORMS


def head_activation(cfg):
    """The head transform's activation: head_act, else the FFN's."""
    return ACTIVATIONS[cfg.head_act or FFN_ACTIVATION[cfg.ffn]]


def check_head(cfg) -> None:
    if cfg.head_act is not None and cfg.head_act not in ACTIVATIONS:
        raise LlmarchError(f"unknown head_act {cfg.head_act!r}; choose one of: {', '.join(ACTIVATIONS)}")
    if cfg.head_norm is not None and cfg.head_norm not in NORMS:
        raise LlmarchError(f"unknown head_norm {cfg.head_norm!r}; choose one of: {', '.join(NORMS.names())}")
    if cfg.head_extra and cfg.head == "lm" and not (cfg.head_transform and not cfg.head_mlp
                                                    and cfg.output_embed_dim is None and cfg.embed_width < cfg.d_model):
        raise LlmarchError("head_extra on an LM head needs head_transform (no head_mlp or output_embed_dim) and "
                           f"embeddings narrower than d_model, got embed_dim={cfg.embed_dim}")
    if cfg.head_mlp < 0 or cfg.head_mlp and not (cfg.head_transform and cfg.head == "lm"
                                                 and cfg.embed_width == cfg.d_model):
        raise LlmarchError(f"head_mlp={cfg.head_mlp} needs head_transform on an LM head at the embedding width of "
                           "d_model (it replaces BERT's transform)")
    if cfg.embed_dense is not None and (
            cfg.head != "embed" or cfg.pooling == "none" or not cfg.embed_dense
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in cfg.embed_dense)):
        raise LlmarchError(f"embed_dense={cfg.embed_dense!r}: the widths (positive integers) of projections after "
                           "an embed head's pooling (not none)")
    if cfg.embed_dense_act not in DENSE_ACTS:
        raise LlmarchError(f"unknown embed_dense_act {cfg.embed_dense_act!r}; choose one of: {', '.join(DENSE_ACTS)}")
    if cfg.embed_normalize and cfg.head != "embed":
        raise LlmarchError("embed_normalize scales an embed head's output; this model's head is " + repr(cfg.head))


DENSE_ACTS = {"identity": nn.Identity(), "tanh": torch.tanh}  # sentence-transformers' Dense activation_function


class SentenceDense(nn.Module):
    """Sentence-transformers' Dense modules on the pooled vector: x -> act(x W_k + b_k), k in order."""

    def __init__(self, cfg):
        super().__init__()
        widths = [cfg.d_model, *cfg.embed_dense]
        self.layers = nn.ModuleList(Linear(a, b, bias=cfg.embed_dense_bias) for a, b in zip(widths, widths[1:]))
        self.act = DENSE_ACTS[cfg.embed_dense_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.act(layer(x))
        return x


class HeadTransform(nn.Module):
    """width: its output's, d_model, or for an LM head the embedding width it projects back to (ELECTRA's
    generator: d_model -> embedding_size, before the tied projection onto the vocabulary)."""

    def __init__(self, cfg, width: int | None = None):
        super().__init__()
        self.dense = Linear(cfg.d_model, width or cfg.d_model, bias=cfg.head_transform_bias)
        self.act = head_activation(cfg)
        self.norm = NORMS[cfg.head_norm or cfg.norm](width or cfg.d_model, cfg.norm_eps, cfg.norm_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


class BottleneckTransform(nn.Module):
    """UltraBERT's prediction head before its decoder (head_mlp): act(act(x W_1) W_2), no biases, no norm."""

    def __init__(self, cfg):
        super().__init__()
        self.up = Linear(cfg.d_model, cfg.head_mlp, bias=False)
        self.down = Linear(cfg.head_mlp, cfg.d_model, bias=False)
        self.act = head_activation(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.down(self.act(self.up(x))))


class Pooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.causal = cfg.causal
        self.dense = Linear(cfg.d_model, cfg.d_model)
        # DistilBERT's pre_classifier: ReLU; ELECTRA's heads: exact GELU
        self.act = {"relu": torch.relu, "tanh": torch.tanh, "gelu": nn.functional.gelu}[cfg.pooler_act]

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, C), pad_mask (B, T) or None -> (B, C)."""
        return self.each(summary(x, pad_mask, "none", self.causal))

    def each(self, x: torch.Tensor) -> torch.Tensor:
        """act(x W + b) on every vector of x (..., C): the pooled one, or each token's (the detect head)."""
        return self.act(self.dense(x))


def summary(x: torch.Tensor, pad_mask: torch.Tensor | None, pooling: str, causal: bool) -> torch.Tensor:
    """x (B, T, C) -> (B, C), what a sequence classifier reads: pooled by `pooling`, or for none the first real
    token (the last for a causal model, whose first token sees nothing after it)."""
    if pooling == "none":
        return pool_token(x, pad_mask, "last" if causal else "first")
    return pool(x, pad_mask, pooling)


def pool_token(x: torch.Tensor, pad_mask: torch.Tensor | None, which: str) -> torch.Tensor:
    """The hidden state (B, C) of each row's first or last real token; padding may be on either side."""
    if pad_mask is None:
        return x[:, 0] if which == "first" else x[:, -1]
    real = pad_mask.long()
    T = real.shape[1]
    if which == "first":
        index = real.argmax(dim=1)
    else:
        index = T - 1 - real.flip(1).argmax(dim=1)
    return x[torch.arange(x.shape[0], device=x.device), index]


def pool(x: torch.Tensor, pad_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """x (B, T, C), pad_mask (B, T) or None -> (B, T, C) for pooling none, else (B, C)."""
    if pooling == "none":
        return x
    if pooling == "mean":
        if pad_mask is None:
            return x.mean(dim=1)
        real = pad_mask.to(x.dtype)[..., None]  # (B, T, 1)
        return (x * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
    return pool_token(x, pad_mask, "first" if pooling == "cls" else "last")
