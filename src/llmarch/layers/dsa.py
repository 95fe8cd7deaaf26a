"""DeepSeek Sparse Attention (DSA; DeepSeek-AI 2025, DeepSeek-V3.2, arXiv 2512.02556, §2.1): an option of latent
attention (mla.py, `dsa_topk`) in which each query attends only to the dsa_topk earlier tokens that a small
"lightning indexer" scores highest.

The indexer (eq. 1) scores query token t against every token s it may see:
    I_{t,s} = sum_j w_{t,j} · ReLU(q_{t,j} · k_s)
with H^I = dsa_heads query heads q_{t,j} of d^I = dsa_head_dim dims, up-projected from the attention's own
compressed query c^Q_t (after its RMSNorm: q_proj; or, dsa_query 'hidden', Mistral Large 4 without a
compressed query, from a LayerNorm of the hidden state, q_norm), one key k_s of d^I dims shared by all heads
(k_proj, then a LayerNorm with bias, k_norm), and per-head weights w_{t,j} from the hidden state (weights_proj).
The first head_dim dims of q and k carry RoPE at the attention's frequencies; the rest none (all of them none on
a layer of mla_no_rope). With attn_log_pos_gain each head's q_{t,j} is times its learned a_j ln(1 + t) + b_j.
As in DeepSeek's code and transformers', q.k is scaled by 1/sqrt(d^I) and w by 1/sqrt(H^I), and scores are computed
in fp32 without gradients (the indexer is trained by its own KL loss against the dense attention, §2.1.1, which
llmarch does not implement: a training step leaves its weights as they are). DeepSeek's kernels rotate q and k by a
Hadamard matrix and score in FP8; the rotation is orthogonal (q.k unchanged) and FP8 a precision choice, so neither
is here.
Eq. 2: the attention then runs over {c_s : I_{t,s} in Top-k(I_{t,:})}; here as a mask of the selected keys on the
dense latent attention (the same outputs, not the sparse kernel's speed). A query that sees at most dsa_topk keys
keeps them all, so the scores are only computed once a call has more keys than that.

Each token's indexer key is cached beside its latent (mla.py), d^I more numbers per token. A layer with
dsa_shared (GLM-5's "shared" indexer layers) has no indexer and reuses the selection of the last earlier layer
that has one, handed on through the forward's AttentionContext.
Shapes: B batch, T queries, S keys, J = H^I indexer heads, D = d^I, R = head_dim (RoPE)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .log_gain import LogPositionGain
from .norms import LayerNorm
from .positions import apply_rotary



def check_dsa(cfg) -> None:
    """The DSA fields of a latent-attention layer (called by mla.py's check)."""
    if cfg.dsa_topk is None:
        if cfg.dsa_shared:
            raise LlmarchError("dsa_shared reuses a DeepSeek Sparse Attention selection: it needs dsa_topk")
        return
    if cfg.dsa_key_norm_eps <= 0:
        raise LlmarchError(f"dsa_key_norm_eps must be positive, got {cfg.dsa_key_norm_eps}")
    if cfg.dsa_topk <= 0 or cfg.dsa_heads <= 0:
        raise LlmarchError(f"dsa_topk and dsa_heads must be positive, got {cfg.dsa_topk} and {cfg.dsa_heads}")
    if cfg.dsa_query not in ("compressed", "hidden"):
        raise LlmarchError(f"dsa_query must be 'compressed' or 'hidden', got {cfg.dsa_query!r}")
    if cfg.dsa_query == "compressed" and cfg.q_lora_rank is None:
        raise LlmarchError("dsa_topk: the lightning indexer's queries come from the compressed query, which needs "
                           "q_lora_rank (or dsa_query 'hidden')")
    if cfg.dsa_head_dim < cfg.head_dim:
        raise LlmarchError(f"dsa_head_dim={cfg.dsa_head_dim} must hold the head_dim={cfg.head_dim} RoPE dims")


class LightningIndexer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.dim, self.topk = cfg.dsa_heads, cfg.dsa_head_dim, cfg.dsa_topk
        hidden = cfg.dsa_query == "hidden"
        self.q_norm = LayerNorm(cfg.d_model, eps=1e-6) if hidden else None
        self.q_proj = Linear(cfg.d_model if hidden else cfg.q_lora_rank, self.n_heads * self.dim, bias=False)
        self.gain = LogPositionGain(self.n_heads) if cfg.attn_log_pos_gain else None
        self.k_proj = Linear(cfg.d_model, self.dim, bias=False)
        self.k_norm = LayerNorm(self.dim, eps=cfg.dsa_key_norm_eps)
        self.weights_proj = Linear(cfg.d_model, self.n_heads, bias=False)

    def keys(self, x: torch.Tensor, ctx) -> torch.Tensor:
        """k_s of this call's tokens (B, T, D): what each token leaves in the cache for later queries."""
        k = self.k_norm(self.k_proj(x))
        return k if ctx.rope is None else apply_rotary(k[:, None], *ctx.rope)[:, 0]

    def select(self, x: torch.Tensor, cq: torch.Tensor, keys: torch.Tensor, ctx) -> torch.Tensor | None:
        """bool (B, 1, T, S): the keys each query attends to, its dsa_topk best by eq. 1 among those it may see
        (ctx's mask, or causality), or all it may see when it sees no more; None where no query sees more than
        dsa_topk keys (nothing to select: ctx's mask stands)."""
        B, T, _ = x.shape
        S = keys.shape[1]
        if S <= self.topk:
            return None
        visible = visible_keys(ctx, T, S, x.device)  # (B|1, 1, T, S)
        with torch.no_grad():
            q = self.q_proj(cq if self.q_norm is None else self.q_norm(x))
            q = q.view(B, T, self.n_heads, self.dim).transpose(1, 2)  # (B, J, T, D)
            if ctx.rope is not None:
                q = apply_rotary(q, *ctx.rope)
            if self.gain is not None:
                q = q * self.gain(ctx)
            q = q.transpose(1, 2).float()  # (B, T, J, D)
            scores = torch.relu(q @ keys.float().transpose(1, 2)[:, None] * self.dim ** -0.5)  # (B, T, J, S)
            w = self.weights_proj(x).float() * self.n_heads ** -0.5  # (B, T, J)
            index = (w[:, :, None] @ scores)[:, None, :, 0]  # (B, 1, T, S)
            index = index.masked_fill(~visible, float("-inf"))
            # a stable sort, not topk: exact ties (ReLU makes every score of a key 0 when all its q.k < 0) go to the
            # earlier key, so a query selects the same keys whatever number of slots the call holds (cached
            # decoding equals the whole forward; topk's choice among ties varies with the length)
            best = index.sort(dim=-1, descending=True, stable=True).indices[..., : self.topk]
            chosen = torch.zeros_like(index, dtype=torch.bool).scatter_(-1, best, True)
        return chosen & visible  # a query seeing fewer than top-k keys took some it cannot see: dropped here


def visible_keys(ctx, T: int, S: int, device) -> torch.Tensor:
    """bool (B|1, 1, T, S): which keys each query may see before any selection."""
    if ctx.mask is not None:
        return ctx.mask if ctx.mask.dtype == torch.bool else ctx.mask[:, :1] > float("-inf")
    slots = torch.arange(S, device=device)
    # without a mask: causality (a call over fewer queries than keys decodes from a cache, so it is causal too), and
    # the real keys, a padded query keeping itself (no empty row)
    seen = (slots <= ctx.input_pos[:, None] if ctx.causal or T < S else torch.ones(T, S, dtype=torch.bool,
                                                                                     device=device))[None, None]
    return seen if ctx.pad_mask is None else seen & (ctx.pad_mask[:, None, None, :] | (slots == ctx.input_pos[:, None]))
