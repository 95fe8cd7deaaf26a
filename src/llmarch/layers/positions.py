"""Position information, one of four kinds (see docs/architectures): added to token embeddings (learned,
sinusoidal), rotated into queries and keys (RoPE), added to the attention scores (T5's relative bias, CPM-Ant's
segment bias, ALiBi), embeddings of relative offsets that attention projects with its own queries and keys (DeBERTa;
Transformer-XL's sinusoids of the distance), or none. Each module answers `embed(pos)` (an additive (B, T, C) term or
None), `rotary(pos)` ((cos, sin) or None), `bias(input_pos, key_len, pad_mask)` (an additive (B|1, H, T|1, S) score
bias or None; pad_mask (B, S) marks the real key slots, None: all real) and `relative(input_pos, key_len)` (an
embedding table and each query-key pair's row in it, or None)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .norms import make_norm
from .global_blocks import fixed_blocks

POSITIONS: Registry = Registry("positions")
# RotaryPositions' context-extension scalings, and Gemma 4's p-RoPE
ROPE_SCALINGS = ("none", "linear", "dynamic", "llama3", "yarn", "longrope", "proportional")


class NoPositions(nn.Module):
    per_layer = False  # bias() gives one bias per layer, (L, B|1, H, T, S), rather than one the stack shares

    def embed(self, pos: torch.Tensor) -> torch.Tensor | None:
        return None

    def rotary(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def bias(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        return None

    def relative(self, input_pos: torch.Tensor, key_len: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def side_bias(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(B|1, H, T, G): a bias on the scores of the transient global tokens (global_blocks.py), or None."""
        return None


class LearnedPositions(NoPositions):
    """A trained vector per absolute position (GPT-2, BERT), as wide as the token embeddings (embed_width), or
    d_model where those are projected first (embed_input: sum_width)."""

    def __init__(self, cfg):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cfg.context_length + cfg.position_offset, cfg.sum_width))

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(pos, self.weight)


class AxialPositions(NoPositions):
    """Reformer's axial position embeddings (Kitaev et al. 2020; transformers' AxialPositionEmbeddings): positions
    laid out as a grid of axial_shape (n1, n2), p = r * n2 + c embedded as [E1[r]; E2[c]], E1 (n1, 1, d1) and E2
    (1, n2, d2), d1 + d2 = d_model: n1 d1 + n2 d2 parameters instead of n1 n2 d_model."""

    def __init__(self, cfg):
        super().__init__()
        (n1, n2), (d1, d2) = cfg.axial_shape or (0, 0), cfg.axial_dims or (0, 0)
        if d1 + d2 != cfg.sum_width or n1 * n2 < cfg.context_length:
            raise LlmarchError(f"axial positions need axial_dims summing to {cfg.sum_width} and an axial_shape of at "
                               f"least context_length ({cfg.context_length}) positions, got {cfg.axial_dims} and "
                               f"{cfg.axial_shape}")
        self.rows, self.cols = nn.Parameter(torch.zeros(n1, 1, d1)), nn.Parameter(torch.zeros(1, n2, d2))

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        n2 = self.cols.shape[1]
        return torch.cat([self.rows[pos // n2, 0], self.cols[0, pos % n2]], dim=-1)


class SinusoidalPositions(NoPositions):
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d))  (Vaswani et al. 2017, §3.5).
    layout halves keeps the same values in another order, every sine first, then every cosine (Marian, PEGASUS).
    Computed in float64, so long positions keep full fp32 precision. layout fairseq: tensor2tensor's timing
    signal as fairseq and M2M-100 / NLLB compute it, sines then cosines at frequencies 10000^(-i/(d/2 - 1)),
    i < d/2 (the last pair at exactly 1/10000, unlike §3.5), in float32 as those checkpoints were trained with;
    layout cos_sin the same with the cosines first (MusicGen, after audiocraft).
    The table holds context_length + position_offset rows (M2M-100 counts positions from padding_idx + 1)."""

    def __init__(self, cfg, layout: str = "interleaved"):
        super().__init__()
        d, n = cfg.sum_width, cfg.context_length + cfg.position_offset
        if layout in ("fairseq", "cos_sin"):
            table = fairseq_sinusoids(n, d, cos_first=layout == "cos_sin")
        else:
            p = torch.arange(n, dtype=torch.float64)[:, None]
            angles = p / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)  # (P, ceil(d/2))
            sin, cos = torch.sin(angles), torch.cos(angles)[:, : d // 2]
            if layout == "halves":
                table = torch.cat((sin, cos), dim=1)
            else:
                table = torch.zeros(n, d, dtype=torch.float64)
                table[:, 0::2], table[:, 1::2] = sin, cos
        self.register_buffer("table", table.float(), persistent=False)

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(pos, self.table)


def fairseq_sinusoids(n: int, d: int, cos_first: bool = False) -> torch.Tensor:
    """(n, d): tensor2tensor's timing signal (SinusoidalPositions' fairseq layout; Whisper's encoder positions), sines
    then cosines (cos_first: cosines then sines, MusicGen's) at frequencies 10000^(-i/(d/2 - 1)), i < d/2, in
    float32; a zero column more where d is odd."""
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.int64).float() * -(math.log(10000) / (half - 1)))
    angles = torch.arange(n, dtype=torch.int64).float()[:, None] * freq[None]  # (P, d/2)
    halves = (torch.cos(angles), torch.sin(angles)) if cos_first else (torch.sin(angles), torch.cos(angles))
    return nn.functional.pad(torch.cat(halves, dim=1), (0, d % 2))


class RotaryPositions(NoPositions):
    """RoPE (Su et al. 2021, eq. 34): rotate each pair (x_i, x_{i+r/2}) of the first r = rotary_dim dims of q and
    k by angle p * theta^(-2i/r). M-RoPE (Qwen2-VL, §2.1): positions (3, B, T) of a temporal, a height and a
    width axis, pair i turned by its axis of mrope_section (mrope_axes; images' tokens; text's axes are equal).
    Half-split pairing (GPT-NeoX / Hugging Face layout), so HF weights load without permutation. Context-extension
    scalings of the frequencies:
    linear (Chen et al. 2023, position interpolation): theta_i / factor;
    dynamic NTK (bloc97/emozilla): theta grows with the sequence once it passes the pretraining context,
        base' = base * (factor * len / ctx - (factor - 1))^(r / (r - 2));
    llama3 (Llama 3.1): long wavelengths divided by factor, short kept, a smooth ramp between;
    yarn (Peng et al. 2023, "YaRN", §3.2-3.4): the same by-parts interpolation with its ramp set in rotations
        over the pretraining context, and cos, sin scaled by an attention factor (see _yarn_scale).
    longrope (Ding et al. 2024, LongRoPE; Phi-3): each frequency divided by its own searched factor, the short
        set while the sequence fits the pretraining context, the long set once it runs past it, and cos, sin
        scaled by sqrt(1 + ln(factor) / ln(original context)) (or the given attention factor).
    learned frequencies (rope_learned_freqs; Mistral Large 4's LeRoPE): after any of those, frequency i times
        exp(alpha_i), alpha a parameter (`freq_log_scale`), zero at init.
    proportional (Gemma 4's p-RoPE, its global layers): the frequencies of RoPE over the whole head_dim D,
        theta^(-2i/D), for the first rope_fraction of the D/2 pairs, and 0 for the rest, which so pass through
        unrotated; all divided by factor. The rotated pairs are (i, i + D/2), so it is not the partial RoPE above
        (whose pairs lie within the first r dims, at frequencies theta^(-2i/r)): cos and sin span all D dims."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("inv_freq", self._inv_freq(cfg.rope_theta), persistent=False)
        self.attn_factor = yarn_attention_factor(cfg) if cfg.rope_scaling == "yarn" else 1.0
        if cfg.rope_scaling == "longrope":
            self.register_buffer("long_inv_freq", self._inv_freq(cfg.rope_theta, cfg.rope_long_factor),
                                 persistent=False)
            self.attn_factor = _longrope_attn_factor(cfg)
        self.freq_log_scale = nn.Parameter(torch.zeros(cfg.rotary_dim // 2)) if cfg.rope_learned_freqs else None

    def init_ssm(self) -> None:  # LeRoPE's alpha starts at 0 (exp(0) = 1), not the generic 1-d weights' 1
        if self.freq_log_scale is not None:
            nn.init.zeros_(self.freq_log_scale)

    def _inv_freq(self, base: float, longrope_factors: list | None = None) -> torch.Tensor:
        cfg, r = self.cfg, self.cfg.rotary_dim
        if cfg.rope_scaling == "proportional":
            r = cfg.head_dim
        if torch.get_default_device().type == "meta":  # a model to be filled from a checkpoint: assemble rebuilds
            return torch.empty(r // 2)  # this on the real device (arithmetic on meta first imports torch's refs, 0.6 s)
        if cfg.rope_scaling == "proportional":
            return _proportional(cfg, base)
        inv_freq = 1.0 / (base ** (torch.arange(0, r, 2, dtype=torch.int64).float() / r))
        if cfg.rope_scaling == "longrope":
            inv_freq = inv_freq / torch.tensor(longrope_factors or cfg.rope_short_factor, dtype=torch.float32)
        elif cfg.rope_scaling == "linear":
            inv_freq = inv_freq / cfg.rope_factor
        elif cfg.rope_scaling == "llama3":
            inv_freq = _llama3_scale(inv_freq, cfg)
        elif cfg.rope_scaling == "yarn":
            inv_freq = _yarn_scale(inv_freq, cfg, base)
        return inv_freq

    def rotary(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq
        if self.cfg.rope_scaling == "dynamic":
            inv_freq = self._dynamic(pos)
        elif self.cfg.rope_scaling == "longrope":  # the longest sequence of this call picks the set, as in HF
            inv_freq = torch.where(pos.max() >= self.cfg.rope_original_context, self.long_inv_freq, inv_freq)
        if self.freq_log_scale is not None:
            inv_freq = inv_freq.to(pos.device) * self.freq_log_scale.float().exp()
        angles = pos.float()[..., None] * inv_freq.to(pos.device)  # (B, T, r/2); M-RoPE's (3, B, T, r/2)
        if pos.dim() == 3:  # M-RoPE: frequency j turns by the axis mrope_section gives it
            angles = angles.gather(0, mrope_axes(self.cfg, pos.device).expand(1, *angles.shape[1:]))[0]
        angles = torch.cat((angles, angles), dim=-1)  # (B, T, r)
        if self.attn_factor != 1.0:  # YaRN's scale on q.k: sqrt(1/t) on each of q and k (eq. 22); LongRoPE's
            return angles.cos() * self.attn_factor, angles.sin() * self.attn_factor
        return angles.cos(), angles.sin()

    def _dynamic(self, pos: torch.Tensor) -> torch.Tensor:
        cfg, r = self.cfg, self.cfg.rotary_dim
        original = cfg.rope_original_context or cfg.context_length
        length = int(pos.max()) + 1  # the longest sequence this call sees (as Hugging Face computes it)
        if length <= original:
            return self.inv_freq
        base = cfg.rope_theta * ((cfg.rope_factor * length / original) - (cfg.rope_factor - 1)) ** (r / (r - 2))
        return self._inv_freq(base)


def mrope_axes(cfg, device) -> torch.Tensor:
    """(r/2,) the axis (0: t, 1: h, 2: w) each rotated pair turns by: runs of mrope_section's counts (Qwen2-VL), or
    (mrope_interleaved, Qwen3-VL) h at pairs 1, 4, ... below 3 s_h, w at pairs 2, 5, ... below 3 s_w, t elsewhere."""
    s_t, s_h, s_w = cfg.mrope_section
    if not cfg.mrope_interleaved:
        return torch.repeat_interleave(torch.arange(3, device=device), torch.tensor([s_t, s_h, s_w], device=device))
    j = torch.arange(s_t + s_h + s_w, device=device)
    return torch.where((j % 3 == 1) & (j < 3 * s_h), 1, torch.where((j % 3 == 2) & (j < 3 * s_w), 2, 0))


def _proportional(cfg, base: float) -> torch.Tensor:
    """p-RoPE's D/2 frequencies (transformers' _compute_proportional_rope_parameters): theta^(-2i/D) for the first
    int(rope_fraction * D / 2) pairs, 0 after, over rope_factor."""
    D = cfg.head_dim
    turning = int(cfg.rope_fraction * D // 2)
    inv_freq = 1.0 / (base ** (torch.arange(0, 2 * turning, 2, dtype=torch.int64).float() / D))
    return torch.cat((inv_freq, torch.zeros(D // 2 - turning))) / cfg.rope_factor


def _longrope_attn_factor(cfg) -> float:
    if cfg.rope_attn_factor is not None:
        return cfg.rope_attn_factor
    if cfg.rope_factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(cfg.rope_factor) / math.log(cfg.rope_original_context))


def _llama3_scale(inv_freq: torch.Tensor, cfg) -> torch.Tensor:
    original = cfg.rope_original_context or cfg.context_length
    low_wavelen = original / cfg.rope_low_freq_factor
    high_wavelen = original / cfg.rope_high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / cfg.rope_factor, inv_freq)
    smooth = (original / wavelen - cfg.rope_low_freq_factor) / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
    smoothed = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_scale(inv_freq: torch.Tensor, cfg, base: float) -> torch.Tensor:
    """YaRN's "NTK-by-parts" (Peng et al. 2023, §3.2, eq. 18): a frequency that turns fewer than beta_slow times
    over the pretraining context L is interpolated (divided by the factor s), one that turns more than
    beta_fast times is kept, a linear ramp over the dims between. Dim d turns L / (2 pi base^(2d/r)) times, so
    the ramp's ends are d(b) = r ln(L / (2 pi b)) / (2 ln base), floored and ceiled with rope_truncate (as
    transformers does; gpt-oss does not truncate)."""
    r = cfg.rotary_dim
    original = cfg.rope_original_context or cfg.context_length

    def dim_turning(rotations: float) -> float:
        return r * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = dim_turning(cfg.rope_beta_fast), dim_turning(cfg.rope_beta_slow)
    if cfg.rope_truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, r - 1)
    if low == high:
        high += 0.001  # a one-dim ramp: no division by zero
    interpolated = ((torch.arange(r // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    return inv_freq / cfg.rope_factor * interpolated + inv_freq * (1 - interpolated)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's sqrt(1/t) = 0.1 ln(s) + 1 (eq. 22), times mscale on the log (DeepSeek's variant); 1 for s <= 1."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_attention_factor(cfg) -> float:
    """What cos and sin are multiplied by: rope_attn_factor if given, else 0.1 ln(s) + 1, or with both
    rope_mscale and rope_mscale_all_dim (DeepSeek-V2/V3) the ratio mscale(s, mscale) / mscale(s, all_dim),
    as transformers' _compute_yarn_parameters reads them."""
    if cfg.rope_attn_factor is not None:
        return cfg.rope_attn_factor
    if cfg.rope_mscale and cfg.rope_mscale_all_dim:
        return yarn_mscale(cfg.rope_factor, cfg.rope_mscale) / yarn_mscale(cfg.rope_factor, cfg.rope_mscale_all_dim)
    return yarn_mscale(cfg.rope_factor)


def softmax_scale_factor(cfg) -> float:
    """What the attention softmax scale is multiplied by: DeepSeek's YaRN scales every q.k dim, rotated or not,
    by m(s, mscale_all_dim)^2 (its reference code: softmax_scale * mscale * mscale); 1 otherwise."""
    if cfg.rope_scaling != "yarn" or not cfg.rope_mscale_all_dim:
        return 1.0
    return yarn_mscale(cfg.rope_factor, cfg.rope_mscale_all_dim) ** 2


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos, sin: (B, T, r) with r <= D: the first r dims rotate, the rest pass through.
    Computed in fp32, returned in x's dtype. x cos + rotate_half(x) sin (Su et al. 2021, eq. 34, in the
    half-split layout of GPT-NeoX and Hugging Face), with rotate_half(x) = [-x2, x1] written as x rolled by
    r/2 with its first half negated, the sign moved onto sin: three ops over x instead of ten, which a one-token
    step pays twice per layer."""
    r = cos.shape[-1]
    h = x if x.dtype == torch.float32 else x.float()
    if r < h.shape[-1]:
        return torch.cat((apply_rotary(h[..., :r], cos, sin), h[..., r:]), dim=-1).to(x.dtype)
    out = torch.addcmul(h * cos[:, None], h.roll(r // 2, -1), (sin * _half_signs(r, sin))[:, None])
    return out if out.dtype == x.dtype else out.to(x.dtype)


_SIGNS: dict = {}


def _half_signs(r: int, like: torch.Tensor) -> torch.Tensor:
    """(r,): -1 over the first half, +1 over the second, kept per width, device and dtype. Made outside
    inference mode: one made by generate (which decodes in it) was an inference tensor, and a compiled training
    step that later saved it for backward failed ("Inference tensors cannot be saved for backward")."""
    key = (r, like.device, like.dtype)
    if key not in _SIGNS:
        with torch.inference_mode(False):
            _SIGNS[key] = torch.cat((-torch.ones(r // 2), torch.ones(r - r // 2))).to(like.device, like.dtype)
    return _SIGNS[key]


def relative_bucket(offset: torch.Tensor, buckets: int, max_distance: int, bidirectional: bool) -> torch.Tensor:
    """T5's bucket of each offset = key slot - query slot (any shape): half the buckets hold exact small distances,
    the rest grow logarithmically up to max_distance, beyond which distances share the last bucket; bidirectional
    splits the buckets between keys before and after the query, else keys after it fall in bucket 0."""
    n, out = buckets, torch.zeros_like(offset)
    if bidirectional:
        n //= 2
        out = out + (offset > 0).long() * n
        distance = offset.abs()
    else:
        distance = (-offset).clamp(min=0)
    exact = n // 2
    log_part = exact + (torch.log(distance.float() / exact) / math.log(max_distance / exact) * (n - exact)).long()
    return out + torch.where(distance < exact, distance, log_part.clamp(max=n - 1))


class RelativeBias(NoPositions):
    """T5's relative position bias (Raffel et al. 2020, §2.1): a learned scalar per head and bucket of the
    offset key - query, added to the attention scores of every layer of a stack (computed once, shared).
    Half the buckets hold exact small offsets, the rest grow logarithmically up to max_distance, beyond which
    offsets share the last bucket. An encoder (bidirectional) splits the buckets between keys before and
    after the query; a decoder (causal) only sees keys before it. Positions are cache slots, padding or not.
    relative_bias_per_layer (UMT5): each of the stack's layers has its own table (`layers.{i}`), the same buckets."""

    def __init__(self, cfg):
        super().__init__()
        self.bidirectional = not cfg.causal
        self.buckets, self.max_distance = cfg.relative_buckets, cfg.relative_max_distance
        self.per_layer = cfg.relative_bias_per_layer
        if self.per_layer:  # (buckets, H) each
            self.layers = nn.ParameterList(torch.zeros(cfg.relative_buckets, cfg.n_heads) for _ in range(cfg.n_layers))
        else:
            self.weight = nn.Parameter(torch.zeros(cfg.relative_buckets, cfg.n_heads))  # (buckets, H)
        # LongT5's transient-global layers (§3.1.2): a second table over (global block - the token's block) offsets
        self.block = cfg.global_block_size if not cfg.causal else 0
        if self.block:
            self.global_weight = nn.Parameter(torch.zeros(cfg.relative_buckets, cfg.n_heads))  # (buckets, H)

    def bucket(self, offset: torch.Tensor) -> torch.Tensor:
        """offset = key slot - query slot (any shape) -> bucket index."""
        return relative_bucket(offset, self.buckets, self.max_distance, self.bidirectional)

    def bias(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        keys = torch.arange(key_len, device=input_pos.device)
        buckets = self.bucket(keys[None, :] - input_pos[:, None])  # (T, S)
        if self.per_layer:
            return torch.stack(list(self.layers))[:, buckets].permute(0, 3, 1, 2)[:, None]  # (L, 1, H, T, S)
        return self.weight[buckets].permute(2, 0, 1)[None]  # (1, H, T, S)

    def side_bias(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None) -> torch.Tensor | None:
        if not self.block:
            return None
        real = pad_mask if pad_mask is not None else torch.ones(1, key_len, dtype=torch.bool, device=input_pos.device)
        ids = fixed_blocks(real, self.block)[0][:, input_pos]  # (B, T)
        offset = torch.arange(key_len // self.block, device=ids.device)[None, None, :] - ids[..., None]  # (B, T, G)
        return self.global_weight[self.bucket(offset)].permute(0, 3, 1, 2)  # (B, H, T, G)


class SegmentRelativeBias(RelativeBias):
    """CPM-Ant's segment relative bias (Zhang et al., CPM-Ant: transformers' CpmAntSegmentPositionEmbedding): between
    tokens of one segment T5's bidirectional bucket of key - query (keys after the query apart, causal or not),
    between segments the pair's own bucket, buckets + q_seg * S + k_seg (S = type_vocab_size): one table of
    relative_buckets + S^2 rows per head, the distances' first.
    A slot's segment: 0 for the prompt's (task_prompt), default_token_type for the rest (CPM-Ant's text)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bidirectional = True
        self.segments, self.prompt, self.text = cfg.type_vocab_size, cfg.task_prompt, cfg.default_token_type
        self.weight = nn.Parameter(torch.zeros(cfg.type_vocab_size ** 2 + cfg.relative_buckets, cfg.n_heads))

    def bias(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        keys = torch.arange(key_len, device=input_pos.device)
        seg_q, seg_k = (torch.where(slots < self.prompt, 0, self.text) for slots in (input_pos, keys))
        pair = self.buckets + seg_q[:, None] * self.segments + seg_k[None, :]
        buckets = torch.where(seg_q[:, None] == seg_k[None, :], self.bucket(keys[None, :] - input_pos[:, None]), pair)
        return self.weight[buckets].permute(2, 0, 1)[None]  # (1, H, T, S)


class LearnedAndRelativeBias(RelativeBias):
    """MPNet's two position signals (Song et al. 2020, "MPNet: Masked and Permuted Pre-training for Language
    Understanding", §2.3 and its code): a learned absolute vector per position added to the token embeddings (as
    BERT's, position_offset as RoBERTa's) and T5's bucketed relative bias on the scores of every layer (one table
    the layers share). The bias table is `weight`, the absolute one `table`."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.table = nn.Parameter(torch.zeros(cfg.context_length + cfg.position_offset, cfg.sum_width))

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(pos, self.table)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's head-specific slopes (Press et al. 2022, §3): for n a power of two the geometric sequence
    2^(-8/n), 2^(-16/n), ..., 2^(-8). Otherwise the slopes of the closest power of two below, n' = 2^floor(log2 n),
    then every other slope of 2n' heads for the remaining n - n' (the authors' code; BLOOM, Falcon-RW)."""
    n = 2 ** math.floor(math.log2(n_heads))
    slopes = [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]
    extra = [2.0 ** (-8.0 * (i + 1) / (2 * n)) for i in range(0, 2 * (n_heads - n), 2)]
    return torch.tensor(slopes + extra, dtype=torch.float32)


class ALiBi(NoPositions):
    """ALiBi (Press et al. 2022, eq. in §3): no position embeddings; head h adds -m_h (i - j) to the score of
    query i on key j <= i, a penalty linear in distance that lets a model read past its training length.
    Added as m_h * pos(j): the -m_h * pos(i) part is the same for every key of a query, and a softmax does not
    see a constant. pos(j) is key j's position among its row's real tokens (the cumulative sum of the padding
    mask, as BLOOM computes it), so a left-padded row gets what it would get alone, and a slot's bias never
    changes as later tokens arrive (cached decoding equals the whole forward). alibi_scale multiplies the
    slopes (Falcon-RW: 1/sqrt(head_dim), its bias scaled with the scores); alibi_bf16 rounds the slopes and
    m_h * pos(j) to bfloat16, as Falcon-RW computes them.
    alibi_symmetric (a bidirectional encoder, JinaBERT-v2: Günther et al. 2023): -m_h |pos(i) - pos(j)| for every
    key, before or after the query, positions among the row's real tokens as above: (B|1, H, T, S)."""

    def __init__(self, cfg):
        super().__init__()
        slopes = alibi_slopes(cfg.n_heads)
        self.bf16, self.scale, self.symmetric = cfg.alibi_bf16, cfg.alibi_scale, cfg.alibi_symmetric
        self.register_buffer("slopes", slopes.bfloat16().float() if self.bf16 else slopes, persistent=False)

    def bias(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        if pad_mask is None:
            pos = torch.arange(key_len, device=input_pos.device)[None]  # (1, S)
        else:
            pos = (pad_mask.long().cumsum(-1) - 1) * pad_mask  # (B, S), 0 at padding (masked anyway)
        if self.symmetric:
            distance = (pos[:, input_pos, None] - pos[:, None, :]).abs()  # (B|1, T, S)
            bias = -self.slopes[None, :, None, None] * distance[:, None]  # (B|1, H, T, S)
            return bias * self.scale if self.scale != 1.0 else bias
        if self.bf16:  # torch multiplies a bf16 tensor by an integer one in bf16: both operands rounded
            pos = pos.bfloat16().float()
        bias = self.slopes[None, :, None, None] * pos[:, None, None, :]  # (B|1, H, 1, S)
        if self.bf16:
            bias = bias.bfloat16().float()
        return bias * self.scale if self.scale != 1.0 else bias


class RelativeEmbeddings(NoPositions):
    """DeBERTa's relative position embeddings (He et al. 2021, §3.1): 2k learned vectors, one per relative
    distance delta(i, j) = clamp(i - j, -k, k - 1) + k of query i and key j, shared by every layer (each projects
    them with its own weights: attention_kinds/disentangled.py), after a norm (relative_norm). DeBERTa-v2/v3
    bucket the distance first (relative_log_buckets; make_log_bucket_position): |i - j| up to k/2 as it is, beyond
    it ceil(log(|i - j| / (k/2)) / log((m - 1) / (k/2)) * (k/2 - 1)) + k/2 with its sign, m = relative_max_distance,
    so distances up to m fill the remaining buckets logarithmically. Positions are cache slots, padding or not."""

    def __init__(self, cfg):
        super().__init__()
        self.span, self.log_buckets, self.max_distance = cfg.relative_buckets // 2, cfg.relative_log_buckets, \
            cfg.relative_max_distance
        self.weight = nn.Parameter(torch.zeros(cfg.relative_buckets, cfg.d_model))  # (2k, C)
        self.norm = make_norm(cfg) if cfg.relative_norm else None

    def bucket(self, offset: torch.Tensor) -> torch.Tensor:
        """offset = query slot - key slot (long, any shape) -> its log bucket, as transformers' DeBERTa-v2."""
        mid = self.span // 2
        sign = torch.sign(offset)
        distance = torch.where(offset.abs() < mid, torch.full_like(offset, mid - 1), offset.abs())
        log_pos = torch.ceil(torch.log(distance / mid) / torch.log(torch.tensor((self.max_distance - 1) / mid))
                             * (mid - 1)) + mid
        return torch.where(distance <= mid, offset.to(log_pos.dtype), log_pos * sign).long()

    def relative(self, input_pos: torch.Tensor, key_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The table (2k, C), normed, and delta (T, S): each query's row of it for each key."""
        offset = input_pos[:, None] - torch.arange(key_len, device=input_pos.device)[None]  # (T, S)
        if self.log_buckets:
            offset = self.bucket(offset)
        table = self.weight if self.norm is None else self.norm(self.weight)
        return table, (offset + self.span).clamp(0, 2 * self.span - 1)


class RelativeSinusoidal(NoPositions):
    """Transformer-XL's relative position encodings (Dai et al. 2019, §3.3: R_{i-j}, the sinusoid of the distance,
    not learned), as XLNet computes them: for distance p, [sin(p f), cos(p f)] (the sines, then the cosines) at
    f_k = 1 / 10000^(2k / d_model), in float32; distances clamped to +-relative_clamp (XLNet's clamp_len) where set.
    Every layer projects the same table with its own W_r (attention_kinds/xl_relative.py). Distances count cache
    slots, which within a left- or right-padded row equal distances between its tokens."""

    def __init__(self, cfg):
        super().__init__()
        self.clamp = cfg.relative_clamp
        freq = torch.arange(0, cfg.d_model, 2.0, dtype=torch.int64).float()
        self.register_buffer("inv_freq", 1 / torch.pow(10000, freq / cfg.d_model), persistent=False)

    def relative(self, input_pos: torch.Tensor, key_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The table (2S - 1, C) of distances S - 1 down to 1 - S, and each query's row of it for each key (T, S)."""
        dist = torch.arange(key_len - 1, -key_len, -1, device=input_pos.device).float()
        if self.clamp is not None:
            dist = dist.clamp(-self.clamp, self.clamp)
        angles = dist[:, None] * self.inv_freq
        table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        offset = input_pos[:, None] - torch.arange(key_len, device=input_pos.device)[None]  # (T, S): i - j
        return table, key_len - 1 - offset


# position kinds that add a bias to the attention scores: only attention kinds that read the mask take them
BIAS_POSITIONS = ("t5_relative", "learned_t5_relative", "alibi", "segment_relative")

POSITIONS.register("none")(lambda cfg: NoPositions())
POSITIONS.register("learned")(LearnedPositions)
POSITIONS.register("axial")(AxialPositions)
POSITIONS.register("sinusoidal")(SinusoidalPositions)
POSITIONS.register("sinusoidal_halves")(lambda cfg: SinusoidalPositions(cfg, "halves"))
POSITIONS.register("sinusoidal_fairseq")(lambda cfg: SinusoidalPositions(cfg, "fairseq"))
POSITIONS.register("sinusoidal_cos_sin")(lambda cfg: SinusoidalPositions(cfg, "cos_sin"))
POSITIONS.register("t5_relative")(RelativeBias)
POSITIONS.register("learned_t5_relative")(LearnedAndRelativeBias)
POSITIONS.register("rope")(RotaryPositions)
POSITIONS.register("alibi")(ALiBi)
POSITIONS.register("relative_embeddings")(RelativeEmbeddings)
POSITIONS.register("relative_sinusoidal")(RelativeSinusoidal)
POSITIONS.register("segment_relative")(SegmentRelativeBias)
