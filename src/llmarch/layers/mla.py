"""Multi-head latent attention (MLA; DeepSeek-V2, DeepSeek-AI 2024, §2.1), a sequence mixer (mixer.py).

Each token's keys and values are compressed into one latent c^KV of d_c = kv_lora_rank dims (eq. 9), after an
RMSNorm; per head, keys k^C = W^UK c^KV and values v^C = W^UV c^KV are up-projected from it (eqs. 10-11, our
kv_b_proj holding W^UK and W^UV per head). RoPE cannot pass through that up-projection, so it rides on extra,
decoupled dims (§2.1.3): each head's query has d_h^R = head_dim rotated dims q^R beside its d_h = qk_nope_head_dim
plain ones, and one rotated key k^R of head_dim dims, shared by all heads, comes straight from the hidden state
(eqs. 14-19). The query may be compressed too (eqs. 12-13: q_lora_rank, with its own RMSNorm; V2-Lite has none).
Scores are (q^C.k^C + q^R.k^R) / sqrt(d_h + d_h^R), times YaRN's mscale^2 under DeepSeek's YaRN (positions.py).

The decode cache holds only c^KV and k^R per token: d_c + d_h^R numbers (576 for V2/V3) where multi-head
attention holds 2·H·d_h (32768 for V3's 128 heads). A decoding step can attend in the latent space (§2.1.2,
"absorbed" matrices): q^C.k^C = (W^UK^T q^C).c^KV, so each head's query is mapped into the latent once, and
attention becomes multi-query attention whose one key is [c^KV, k^R] and whose value is c^KV; W^UV is applied
to the output per head after it. Whether a step does that (mla_absorb) or expands every cached latent into keys
and values is a speed question (docs/architectures/mla.md has the measurements); both give the same outputs.
The norms over the latents use eps 1e-6, as DeepSeek's code and transformers do, whatever norm_eps says.
With dsa_topk (DeepSeek-V3.2's sparse attention, dsa.py) a lightning indexer picks the keys each query attends to,
and each token's indexer key is cached after its [c^KV, k^R]. Mistral Large 4: a layer of mla_no_rope has no
decoupled RoPE dims (d_h^R = 0; its qk_nope_head_dim holds the whole q.k width), and attn_log_pos_gain multiplies
each head's query by a learned a_h ln(1 + p) + b_h (log_gain.py).
Shapes: B batch, T queries, S keys, H heads, N = qk_nope_head_dim, R = head_dim (RoPE), V = v_head_dim,
r = kv_lora_rank."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .attention import ATTENTION, temperature, temperature_of
from .dsa import LightningIndexer, check_dsa, visible_keys
from .hooks import HookPoint
from .linear import Linear
from .log_gain import LogPositionGain
from .mixer import MIXERS, Mixer
from .norms import RMSNorm
from .positions import apply_rotary, softmax_scale_factor

LATENT_NORM_EPS = 1e-6


class LatentCache(nn.Module):
    """A static per-token cache of [c^KV, k^R] rows (B, S, r + R), written at given positions."""

    by_slot = True  # all it holds is indexed by slot: decoding can rewind by moving back (speculative decoding)

    def __init__(self, batch: int, max_len: int, width: int, dtype: torch.dtype, device=None):
        super().__init__()
        self.register_buffer("kv", torch.zeros(batch, max_len, width, dtype=dtype, device=device), persistent=False)

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def update(self, input_pos: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Write rows (B, T, r + R) at slots input_pos (T,); return the whole cache (B, S, r + R)."""
        self.kv.index_copy_(1, input_pos, rows.to(self.kv.dtype))
        return self.kv

    def reorder(self, rows: torch.Tensor) -> None:
        self.kv = self.kv.index_select(0, rows)


@MIXERS.register("mla")
class LatentAttention(Mixer):
    attr = "attn"  # state-dict keys blocks.{i}.attn.*, hook names blocks.{i}.attn.hook_*
    residual_out = ("o_proj.weight",)

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        H, C = cfg.n_heads, cfg.d_model
        self.n_heads, self.rank = H, cfg.kv_lora_rank
        self.nope, self.v_dim = cfg.qk_nope_head_dim, cfg.v_head_dim
        self.rope = 0 if cfg.mla_no_rope else cfg.head_dim  # d_h^R: none on Mistral Large 4's NoPE layers
        qk = self.nope + self.rope
        self.dropout, self.kernel, self.absorb = cfg.dropout, ATTENTION[cfg.attn_impl], cfg.mla_absorb
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else qk ** -0.5 * softmax_scale_factor(cfg)
        self.temperature = temperature_of(cfg)
        self.gain = LogPositionGain(H) if cfg.attn_log_pos_gain else None  # Mistral Large 4: a_h ln(1 + p) + b_h
        self.compressed_q, self.q_gate = cfg.q_lora_rank is not None, False
        eps = LATENT_NORM_EPS if cfg.mla_latent_eps is None else cfg.mla_latent_eps  # the latents' RMSNorms
        if not self.compressed_q:
            self.q_proj = Linear(C, H * qk, bias=False)
        else:  # eqs. 12-13: c^Q = W^DQ h, then per head [q^C, q^R] = W^UQ, W^QR of norm(c^Q)
            self.q_a_proj = Linear(C, cfg.q_lora_rank, bias=cfg.qkv_bias)
            self.q_a_norm = RMSNorm(cfg.q_lora_rank, eps)
            # A.X-K2 (mla_q_gate): one up-projection of [norm(c^Q), c^Q] gives each head's query and an output
            # gate of v_head_dim, rows per head [q^C, q^R, g]; the gate scales the head's output, sigmoid(g) o
            self.q_gate = cfg.mla_q_gate
            if self.q_gate:
                self.q_gate_proj = Linear(2 * cfg.q_lora_rank, H * (qk + self.v_dim), bias=False)
            else:
                self.q_b_proj = Linear(cfg.q_lora_rank, H * qk, bias=False)
        # eqs. 9 and 17: rows [c^KV (r), k^R (R)] in one matmul
        self.kv_a_proj = Linear(C, self.rank + self.rope, bias=cfg.qkv_bias)
        self.kv_a_norm = RMSNorm(self.rank, eps)
        # dots.llm3 (mla_rope_key_norm): the shared RoPE key k^R through its own RMSNorm before RoPE
        self.k_rope_norm = RMSNorm(self.rope, eps) if cfg.mla_rope_key_norm else None
        self.kv_b_proj = Linear(self.rank, H * (self.nope + self.v_dim), bias=False)  # per head: W^UK, W^UV
        # absorbed decoding (below) multiplies by its weight as a matrix, not through the layer: quantization
        # leaves it in float (quant/apply.py targets)
        self.kv_b_proj.quantize = False
        self.o_proj = Linear(H * self.v_dim, C, bias=cfg.qkv_bias)
        # attn_head_gate (dots.llm3, Ling 3): each head's output times sigmoid(x w_h), one scalar per head and
        # token (the per-head form of the gated attention of Qiu et al. 2025), before o_proj, as attention.py gates
        self.g_proj = Linear(C, H, bias=False) if cfg.attn_head_gate else None
        self.window = cfg.sliding_window  # attention 'sliding_window': a query sees the keys < window slots back
        # HY-V4: each head's output times sigmoid(x W_g) before o_proj (attn_output_gate; Qiu et al. 2025, "Gated
        # Attention for LLMs"), and a learned sink per head in the softmax (attn_sinks; sinks.py), which the expanded
        # path passes to the kernel (a step with sinks attends expanded: the absorbed path has one query head)
        self.gate_proj = Linear(C, H * self.v_dim, bias=False) if cfg.attn_output_gate else None
        self.sinks = nn.Parameter(torch.zeros(H)) if cfg.attn_sinks else None
        # DeepSeek Sparse Attention (dsa.py): this layer's own indexer, or (dsa_shared) an earlier layer's selection
        self.indexer = LightningIndexer(cfg) if cfg.dsa_topk is not None and not cfg.dsa_shared else None
        self.dsa_shared = cfg.dsa_shared
        if self.dsa_shared and layer == 0:
            raise LlmarchError("dsa_shared on layer 0: a shared layer reuses an earlier layer's selection")
        self.index_dim = self.indexer.dim if self.indexer is not None else 0
        # LongCat-Flash (mla_lora_scale): the queries and the normed latent times sqrt(d_model / rank), the latent
        # before it is cached (so the values are scaled too); None: no multiply
        lora = cfg.mla_lora_scale
        self.q_scale = (C / cfg.q_lora_rank) ** 0.5 if lora else None
        self.kv_scale = (C / self.rank) ** 0.5 if lora else None
        self.hook_q, self.hook_latent = HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.attention not in ("full", "sliding_window"):
            raise LlmarchError(f"mixer='mla' and attention={cfg.attention!r}: latent attention has latent forms "
                               "of full and sliding-window attention only")
        if cfg.mla_latent_eps is not None and cfg.mla_latent_eps <= 0:
            raise LlmarchError(f"mla_latent_eps must be positive, got {cfg.mla_latent_eps}")
        if cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError(f"mixer='mla' and n_kv_heads={cfg.n_kv_heads}: every head's keys and values come "
                               f"from the one latent, so n_kv_heads must equal n_heads={cfg.n_heads}")
        if cfg.qk_norm != "none":
            raise LlmarchError(f"mixer='mla' and qk_norm={cfg.qk_norm!r}: latent attention has no QK-norm")
        if cfg.attn_key_multiplier != 1.0:
            raise LlmarchError("mixer='mla' has no key projection for attn_key_multiplier to scale")
        if cfg.mla_q_gate and (cfg.q_lora_rank is None or cfg.attn_output_gate or cfg.mla_lora_scale):
            raise LlmarchError("mla_q_gate reads the compressed query (q_lora_rank) and is the layer's one output gate "
                               "(no attn_output_gate, mla_lora_scale)")
        if cfg.attn_gate_bias:
            raise LlmarchError("mixer='mla' and attn_gate_bias: latent attention's output gate has no bias")
        for name in ("kv_lora_rank", "qk_nope_head_dim", "v_head_dim"):
            if getattr(cfg, name) <= 0:
                raise LlmarchError(f"{name} must be positive, got {getattr(cfg, name)}")
        if cfg.q_lora_rank is not None and cfg.q_lora_rank <= 0:
            raise LlmarchError(f"q_lora_rank must be positive or None, got {cfg.q_lora_rank}")
        check_dsa(cfg)
        if cfg.mla_no_rope and (cfg.positions != "none" or cfg.mla_rope_key_norm):
            raise LlmarchError("mla_no_rope: a layer without rotated dims takes positions 'none' and no "
                               "mla_rope_key_norm")
        if cfg.mla_lora_scale and cfg.q_lora_rank is None:
            raise LlmarchError("mla_lora_scale scales the queries by sqrt(d_model / q_lora_rank): it needs q_lora_rank")

    @classmethod
    def score_dims(cls, cfg) -> int:
        return cfg.n_heads * (cfg.qk_nope_head_dim + (0 if cfg.mla_no_rope else cfg.head_dim) + cfg.v_head_dim)

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        return LatentCache(batch, max_len, self.rank + self.rope + self.index_dim, dtype, device)

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        """Per token c^KV and k^R: r + R numbers for all heads together (and the indexer's key under DSA)."""
        return (self.rank + self.rope + self.index_dim) * torch.empty((), dtype=dtype).element_size(), 0

    def state_note(self, dtype: str) -> str:
        return ""

    def cache_note(self) -> str:
        """The latent cache against the keys and values multi-head attention with these heads would cache."""
        mha, groups = self.n_heads * (self.nope + self.rope + self.v_dim), (self.rank + self.rope) / (2 * self.nope)
        index = f" + indexer key {self.index_dim}" if self.index_dim else ""
        return (f"latent {self.rank} + rope key {self.rope}{index} per token and layer: "
                f"{(self.rank + self.rope) / mha:.1%} of multi-head attention's {mha} with these {self.n_heads} heads "
                f"(indexer aside), as much as GQA's with {groups:g} KV heads of {self.nope} (DeepSeek-V2, Table 1)")

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        B, T, _ = x.shape
        H = self.n_heads
        raw = self.q_a_proj(x) if self.compressed_q else None
        cq = self.q_a_norm(raw) if self.compressed_q else None  # c^Q (B, T, q_lora_rank)
        gate = None
        if self.q_gate:  # A.X-K2: [q, g] per head from [norm(c^Q), c^Q]
            qg = self.q_gate_proj(torch.cat((cq, raw), dim=-1)).view(B, T, H, -1)
            q, gate = qg.split([self.nope + self.rope, self.v_dim], dim=-1)
            q = q.reshape(B, T, -1)
        else:
            q = self.q_b_proj(cq) if self.compressed_q else self.q_proj(x)
        if self.q_scale is not None:
            q = q * self.q_scale
        q = self.hook_q(q.view(B, T, H, self.nope + self.rope)).transpose(1, 2)  # (B, H, T, N + R)
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)
        c, k_rope = self.kv_a_proj(x).split([self.rank, self.rope], dim=-1)  # (B, T, r), (B, T, R)
        c = self.kv_a_norm(c)
        if self.k_rope_norm is not None:
            k_rope = self.k_rope_norm(k_rope)
        if self.kv_scale is not None:
            c = c * self.kv_scale
        if ctx.rope is not None:
            q_rope = apply_rotary(q_rope, *ctx.rope)
            k_rope = apply_rotary(k_rope[:, None], *ctx.rope)[:, 0]
        if self.temperature is not None:  # Mistral 4: the log-length query scaling (attention.py), on the whole query
            t = temperature(ctx, *self.temperature)
            q_nope, q_rope = (q_nope * t).to(q_nope.dtype), (q_rope * t).to(q_rope.dtype)
        if self.gain is not None:
            g = self.gain(ctx)
            q_nope, q_rope = (q_nope * g).to(q_nope.dtype), (q_rope * g).to(q_rope.dtype)
        latent = self.hook_latent(torch.cat((c, k_rope), dim=-1))  # (B, T, r + R): all a token leaves behind
        if self.indexer is not None:  # and its indexer key (B, T, D^I)
            latent = torch.cat((latent, self.indexer.keys(x, ctx).to(latent.dtype)), dim=-1)
        if self.cache is not None:
            latent = self.cache.update(ctx.input_pos, latent)  # (B, S, r + R [+ D^I])
            if ctx.kv_len is not None:
                latent = latent[:, : ctx.kv_len]
        mask, causal = ctx.mask, ctx.causal
        if self.indexer is not None:  # eq. 2: the keys the indexer selects, among those the query may see
            ctx.carry["dsa"] = self.indexer.select(x, cq, latent[..., self.rank + self.rope:], ctx)
        elif self.dsa_shared and "dsa" not in ctx.carry:
            raise LlmarchError("dsa_shared: no earlier layer of this forward ran a lightning indexer")
        selected = ctx.carry["dsa"] if self.indexer is not None or self.dsa_shared else None
        if selected is not None:  # None: no query sees more than dsa_topk keys, so all stay
            mask, causal = selected, False
        if self.window is not None:  # the keys it may see, less than `window` slots back (as transformers counts)
            seen = mask if selected is not None else visible_keys(ctx, T, latent.shape[1], x.device)
            back = ctx.input_pos[:, None] - torch.arange(latent.shape[1], device=x.device)
            mask, causal = seen & (back < self.window), False
        dropout_p = self.dropout if self.training else 0.0
        if self.absorb and self.cache is not None and T == 1 and self.sinks is None:
            y = self.absorbed(q_nope, q_rope, latent, mask, causal, dropout_p)
        else:
            y = self.expanded(q_nope, q_rope, latent, mask, causal, dropout_p)
        y = y.transpose(1, 2)  # (B, T, H, V)
        if self.g_proj is not None:
            y = y * torch.sigmoid(self.g_proj(x))[..., None]
        if self.gate_proj is not None:
            y = y * torch.sigmoid(self.gate_proj(x).view(B, T, H, self.v_dim))
        if gate is not None:
            y = y * torch.sigmoid(gate)
        y = self.hook_z(y)
        return self.o_proj(y.reshape(B, T, H * self.v_dim))

    def expanded(self, q_nope, q_rope, latent, mask, causal: bool, dropout_p: float) -> torch.Tensor:
        """Keys and values up-projected from every latent (eqs. 10-11, 16-19), then ordinary attention."""
        B, S, _ = latent.shape
        H = self.n_heads
        kv = self.kv_b_proj(latent[..., : self.rank]).view(B, S, H, self.nope + self.v_dim).transpose(1, 2)
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)  # (B, H, S, N), (B, H, S, V)
        k_rope = latent[:, None, :, self.rank:self.rank + self.rope].expand(B, H, S, self.rope)
        k = torch.cat((k_nope, k_rope), dim=-1)
        q = torch.cat((q_nope, q_rope), dim=-1)  # (B, H, T, N + R)
        return self.kernel(q, k, v, mask, causal, dropout_p, self.hook_pattern, self.scale, self.sinks)

    def absorbed(self, q_nope, q_rope, latent, mask, causal: bool, dropout_p: float) -> torch.Tensor:
        """W^UK absorbed into the query and W^UV into the output (§2.1.2): multi-query attention over the cache
        itself, key [c^KV, k^R] and value c^KV, never expanding the cached latents. One key head for all, so
        the H·T queries are one head's rows: (B, 1, H·T, r + R) against (B, 1, S, r + R)."""
        B, H, T, _ = q_nope.shape
        S = latent.shape[1]
        w = self.kv_b_proj.weight.view(H, self.nope + self.v_dim, self.rank)
        w_uk, w_uv = w.split([self.nope, self.v_dim], dim=1)  # (H, N, r), (H, V, r)
        q = torch.cat((q_nope @ w_uk, q_rope), dim=-1).reshape(B, 1, H * T, -1)  # (B, 1, H·T, r + R)
        if mask is None and causal:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)[None, None]
        if mask is not None:  # (B|1, 1|H, T, S) -> (B|1, 1, H·T, S), rows in q's order
            mask = mask.expand(mask.shape[0], H, T, S).reshape(mask.shape[0], 1, H * T, S)
        kv = latent[:, None, :, : self.rank + self.rope]  # (B, 1, S, r + R)

        def pattern(p: torch.Tensor) -> torch.Tensor:  # the hook sees (B, H, T, S), as for every attention
            return self.hook_pattern(p.view(B, H, T, S)).view(B, 1, H * T, S)

        y = self.kernel(q, kv, kv[..., : self.rank], mask, False, dropout_p, pattern, self.scale)  # (B, 1, H·T, r)
        return y.view(B, H, T, self.rank) @ w_uv.transpose(1, 2)  # (B, H, T, V)
