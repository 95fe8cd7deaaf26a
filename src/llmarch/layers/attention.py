"""Multi-head self-attention (Vaswani et al. 2017, eq. 1: softmax(QK^T / sqrt(d)) V) with any number of
key/value heads: n_kv_heads = n_heads is MHA, 1 is MQA (Shazeer 2019), in between GQA (Ainslie et al. 2023).
The kernel is chosen by name: `sdpa` (torch's fused scaled_dot_product_attention) or `eager`, which
materialises the attention pattern (hook_pattern) for analysis and serves as the reference; a soft-capped
attention (attn_softcap, Gemma 2) always takes the eager kernel, as sdpa cannot cap scores before its softmax.
Which keys each query sees (full, sliding window, sparse patterns, LSH, linear ...) is the attention kind's
(attention_kinds/); attention itself is one sequence mixer (mixer.py).
Shapes: B batch, T query length, S key length, H query heads, K key/value heads, D head dim (of q and k; values are
value_dim wide, D unless a config narrows them)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .attention_kinds import ATTENTION_KINDS
from .canon import Canon, DynamicCanon
from .hooks import HookPoint
from .grouped_linear import linear
from .linear import Linear
from .mixer import MIXERS, Mixer
from .norms import NORMS, L2Clip, PerHeadNorm, PlainRMSNorm, make_norm, rms_normalize
from .nvfp4 import nvfp4_round
from .positions import apply_rotary
from .sinks import sink_softmax, with_sink_key
from .softcap import soft_cap

ATTENTION: Registry = Registry("attention implementation")
GATE_FNS = {"sigmoid": torch.sigmoid, "softplus": F.softplus}  # attn_output_gate's squashing (attn_gate_fn)


@dataclass
class AttentionContext:
    """What every attention layer of one forward pass shares, computed once by the model."""

    # bool (B|1, 1, T, S), True = may attend, or float (B|1, H|1, T, S) added to the scores (a position bias
    # with -inf where attention is barred); None with causal: plain causal T == S
    mask: torch.Tensor | None
    causal: bool
    rope: tuple[torch.Tensor, torch.Tensor] | None  # (cos, sin), each (B, T, D)
    input_pos: torch.Tensor  # (T,) cache slots of this call's tokens
    # (B, T) each token's position in its row, counted from the row's first real token (what RoPE turns by);
    # None: the slots input_pos
    positions: torch.Tensor | None = None
    kv_len: int | None = None  # cache slots filled after this call: attend to these only (eager decoding)
    memory: torch.Tensor | None = None  # (B, S, C) encoder output that cross-attention reads (encoder-decoders)
    memory_mask: torch.Tensor | None = None  # bool (B, 1, 1, S): real source tokens; None: all real
    pad_mask: torch.Tensor | None = None  # bool (B, S): real key slots, for kinds that build their own masks
    global_mask: torch.Tensor | None = None  # bool (B, S): Longformer's global tokens (attention="longformer")
    # kv_shared_layers: layer index -> its (k, v) (B, K, T, D) of this forward, for the layers that share them
    shared_kv: dict | None = None
    per_layer: torch.Tensor | None = None  # (B, T, L, P) per-layer inputs (ple_dim: layers/per_layer_inputs.py)
    # what a layer hands on to later layers of the same forward: DeepSeek Sparse Attention's selection (dsa.py,
    # under "dsa"), for the layers that reuse it (dsa_shared); moe_shortcut's mixture output (B, T, C) under its
    # layer's index, which the next block adds (block.py)
    carry: dict = field(default_factory=dict)
    lang_ids: torch.Tensor | None = None  # (B,) or (B, T): each input's language, for language adapters (X-MOD)
    # mixer 'shared_block' (layers/shared_block.py): the stack's shared blocks, and the stream entering the first
    # block (B, T, C), which they read beside each layer's own
    shared_blocks: object = None
    embeds: torch.Tensor | None = None
    # relative position embeddings (positions 'relative_embeddings', DeBERTa): the table (2k, C) and each query's
    # row of it for each key (T, S), which disentangled attention projects with each layer's own weights
    relative: tuple[torch.Tensor, torch.Tensor] | None = None
    # (B|1, H, T, G) a position bias on the transient global tokens' scores (LongT5: global_blocks.py), or None
    side_bias: torch.Tensor | None = None
    # the rotary tables at any (B|1, S) positions (the positions' rotary), for a kind that turns keys other than this
    # call's (QSA's block keys: attention_kinds/qsa.py); None where the forward gives none (packed documents)
    rotary: object = None
    input_ids: torch.Tensor | None = None  # (B, T) this call's tokens, which hash routing reads (router.py)
    # (B, T) this call's segment ids (token_type_ids), which XLNet's segment term (attention_kinds/xl_relative.py) and
    # Funnel's attention (funnel_attention.py) score
    token_type_ids: torch.Tensor | None = None
    # (B, T) this call's bidirectional blocks (token_blocks.py: config bidirectional_token), which ctx.mask holds
    # for full attention and the sliding window's own mask reads; None: none
    blocks: torch.Tensor | None = None
    # Funnel's positions, token types and masks of the queries and keys, and the unpooled stream a pooled layer's keys
    # read (funnel_attention.PoolingView), set by recurrence 'funnel' per block
    pooling: object = None
    # (B, T, 4, C): the messages a looped block reads from the previous pass (recurrence 'loop' with
    # loop_message_rank: loop_messages.py), its queries', keys', values' and FFN's inputs'; None in other calls
    messages: torch.Tensor | None = None
    # this layer's LSH buckets (lsh_chunks), kept by a reversible forward and read again by its backward's
    # recomputation (reversible_backward.py), so it hashes as the forward did; None: hashed afresh
    hashes: dict | None = None


@ATTENTION.register("sdpa")
def sdpa_attention(q, k, v, mask, causal, dropout_p, pattern_hook, scale=None, sinks=None):
    if sinks is not None:  # the sinks as one more key, still one fused kernel (sinks.py)
        k, v, mask = with_sink_key(q, k, v, mask, causal, sinks)
    is_causal = causal and mask is None
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    B, H, T, D = q.shape
    groups = H // k.shape[1]
    if T == 1 and torch.compiler.is_compiling() and q.device.type == "cpu" and not is_causal and dropout_p == 0:
        return _one_query(q, k, v, mask, scale)
    if groups > 1 and T == 1 and not is_causal and (mask is None or mask.shape[1] == mask.shape[2] == 1):
        # one query per head (decoding) under GQA: a KV head's `groups` query heads as that many queries of it, so
        # each KV head's keys and values are read once, by one (groups x S) product instead of `groups` (1 x S)
        # ones (32 query heads over 8 KV heads, 500 keys, CPU: 89 us against 142); heads h = kv * groups + j,
        # enable_gqa's pairing
        y = F.scaled_dot_product_attention(q.reshape(B, k.shape[1], groups, D), k, v, attn_mask=mask,
                                           dropout_p=dropout_p, scale=scale)
        return y.reshape(B, H, 1, v.shape[-1])  # values may be wider than q and k (differential attention)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                                          scale=scale, enable_gqa=groups > 1)


def _one_query(q, k, v, mask, scale):
    """One query per head (a compiled decode step on a CPU) as two small products and a softmax between, which
    inductor compiles as its own: torch's fused CPU kernel cost about 100 us a call (SmolLM2, 256 slots, AMD
    EPYC: 3 ms of a 25 ms token over 30 layers), these about 40. Written as broadcast products summed, inductor
    fused them with the layer's RoPE and cache write and took 160-200 us. Same grouping of query heads per KV
    head as below; the mask as SDPA reads it (bool: True attends; float: added)."""
    B, H, _, D = q.shape
    G = k.shape[1]
    qg = q.reshape(B, G, H // G, D)
    scores = (qg @ k.transpose(-1, -2)).float()  # (B, G, H/G, S)
    scale = 1 / math.sqrt(D) if scale is None else scale
    if mask is not None:
        # (B|1, H|1, 1, S) as SDPA broadcasts it -> the scores' (B|1, G|1, H/G|1, S)
        mask = mask.reshape(mask.shape[0], G if mask.shape[1] > 1 else 1, -1, mask.shape[-1])
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask / scale
    # softmax(scale s) as exp(scale (s - max s)): in the usual order inductor's attention pass recognises these
    # lines and rewrites them back into the SDPA call
    probs = ((scores - scores.amax(-1, keepdim=True)) * scale).exp()
    y = (probs / probs.sum(-1, keepdim=True)).to(v.dtype) @ v  # (B, G, H/G, Dv)
    return y.reshape(B, H, 1, v.shape[-1])


@ATTENTION.register("eager")
def eager_attention(q, k, v, mask, causal, dropout_p, pattern_hook, scale=None, sinks=None, softcap=None):
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, S, D)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = soft_cap((q @ k.transpose(-2, -1)) * scale, softcap)  # (B, H, T, S)
    if mask is None and causal:
        T, S = scores.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    probs = scores.float().softmax(dim=-1) if sinks is None else sink_softmax(scores, sinks)
    pattern = pattern_hook(probs.to(q.dtype))
    pattern = F.dropout(pattern, p=dropout_p, training=dropout_p > 0)
    return pattern @ v


TEMP_FORMS = ("floor", "ratio")  # attn_temp_form: how the query temperature grows with the position


def temperature_of(cfg) -> tuple[float, int, int, float, str] | None:
    """A mixer's query temperature settings (scale, floor, shift, power, form) from its config; None: queries as
    they are."""
    if not (cfg.attn_temp_scale or cfg.attn_temp_power):
        return None
    return cfg.attn_temp_scale, cfg.attn_temp_floor, cfg.attn_temp_shift, cfg.attn_temp_power, cfg.attn_temp_form


def temperature(ctx: AttentionContext, scale: float, floor: int, shift: int = 1, power: float = 0.0,
                form: str = "floor") -> torch.Tensor:
    """(B|1, 1, T, 1), to multiply (B, H, T, D) queries by. Form 'floor': Llama 4's attention temperature tuning (Meta
    2025; the log-length query scaling of Nakanishi 2025, "Scalable-Softmax Is Superior for Attention", on its NoPE
    layers): 1 + scale * ln(1 + floor((p + shift) / floor)) at position p, so a query's scores grow with the context it
    attends over (Ministral 3: shift 0, on every layer). Form 'ratio' (Inkling's log scaling): 1 + scale *
    ln(max((p + shift) / floor, 1)), smooth past `floor` positions. p is the row's position, as Meta's code counts it;
    transformers counts the cache slot, which differs in a left-padded row. With a power (attn_temp_power, Beam's
    NoPE layers), (1 + (p + shift) / floor) ** power instead: the same growth with ln of the context,
    exp(power ln(1 + (p + shift) / floor)), without the floor."""
    pos = (ctx.input_pos[None] if ctx.positions is None else ctx.positions).float() + shift
    if power:
        return torch.exp(power * torch.log1p(pos / floor))[:, None, :, None]
    grown = torch.log1p(torch.floor(pos / floor)) if form == "floor" else torch.log((pos / floor).clamp(min=1.0))
    return (grown * scale + 1.0)[:, None, :, None]


def split_heads(t: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """(B, T, n*d) -> (B, n, T, d)."""
    return t.view(t.shape[0], t.shape[1], n, d).transpose(1, 2)


def attention_setup(module: nn.Module, cfg) -> None:
    """What self- and cross-attention both take from the config: head counts and widths (v_dim: the values', which
    the output, o_proj and every KV cache follow), dropout, the score scale and soft-cap, and the kernel."""
    module.n_heads, module.n_kv_heads, module.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    module.v_dim = cfg.value_width
    module.dropout, module.scale, module.softcap = cfg.dropout, cfg.attn_scale, cfg.attn_softcap
    module.kernel = attention_kernel(cfg.attn_impl, cfg.attn_softcap)


def attention_kernel(impl: str, softcap: float | None):
    """The kernel named impl; with soft-capped scores (Gemma 2) the eager kernel with the cap bound in."""
    return ATTENTION[impl] if softcap is None else partial(eager_attention, softcap=softcap)


@MIXERS.register("attention")
class Attention(Mixer):
    attr = "attn"
    residual_out = ("o_proj.weight",)

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        attention_setup(self, cfg)
        self.kind = ATTENTION_KINDS[cfg.attention](cfg, layer)
        for name, module in self.kind.modules(cfg, layer).items():  # e.g. Longformer's qkv_global
            self.add_module(name, module)
        # q, k and v projections fused into one matmul (rows: H·D of q, then K·D of k, then K·D of v):
        # one weight read instead of three, which is what one-token decoding waits on.
        # A kind whose keys are its queries (Reformer) has no key projection.
        # An output gate (Qwen3-Next; Qiu et al. 2025, "Gated Attention for LLMs"): o = attn * sigmoid(x W_g) per
        # head before o_proj; its rows sit after each head's query rows, [q_0, g_0, q_1, g_1, ...], as Qwen3-Next
        # stores q_proj.
        # the output gates: attn_output_gate's rows beside each head's query rows (one per head dim), and the headwise
        # gate (attn_head_gate: LFM3, Laguna), one per head from its own projection of x; squashed by attn_gate_fn
        self.gated, self.gate_fn = cfg.attn_output_gate, GATE_FNS.get(cfg.attn_gate_fn)
        self.g_proj = Linear(cfg.d_model, self.n_heads, bias=False) if cfg.attn_head_gate else None
        # Beam's gate_bias: one learned bias per head on attn_output_gate's pre-activations
        self.gate_bias = nn.Parameter(torch.zeros(self.n_heads)) if cfg.attn_gate_bias else None
        self.gate_rows = self.gated  # the gate's rows among q's
        # Gemma 4: a global layer with attn_k_eq_v projects no values (they are its keys' projection); one of the
        # last kv_shared_layers projects neither keys nor values (it reads an earlier layer's: kv_from, set by the
        # stack, models/stack.py), so its state is that layer's cache (kv_heads 0: it adds none)
        self.kv_shared = cfg.kv_source(layer) != layer  # kv_shared_layers, or kv_source_layers (Kolibri 1.1)
        # Kolibri 1.1's sparse layers: keys and values rounded to NVFP4 before attending (layers/nvfp4.py)
        self.kv_fp4 = cfg.kv_fp4
        self.kv_from, self.k_eq_v = layer, cfg.attn_k_eq_v
        self.kv_heads = 0 if self.kv_shared else self.n_kv_heads
        self.qkv_heads = [self.n_heads * (2 if self.gate_rows else 1),
                          0 if self.kind.shares_qk or self.kv_shared else self.n_kv_heads,
                          0 if self.k_eq_v or self.kv_shared else self.n_kv_heads]
        self.qkv_widths = [n * w for n, w in zip(self.qkv_heads, (self.head_dim, self.head_dim, self.v_dim))]
        # SqueezeBERT: q, k and v each a grouped projection (qkv_groups; layers/grouped_linear.py)
        self.qkv_proj = linear(cfg.d_model, sum(self.qkv_widths), cfg.qkv_bias, cfg.qkv_groups, parts=3)
        self.o_proj = Linear(self.n_heads * self.v_dim, cfg.d_model, bias=cfg.o_bias)
        # BitNet's attn_sub_norm: a norm over the concatenated heads before o_proj (the SubLN of Wang et al. 2022,
        # "Foundation Transformers", §2, which BitNet b1.58 keeps: Ma et al. 2024)
        self.sub_norm = make_norm(cfg, self.n_heads * self.v_dim) if cfg.sub_norm else None
        # the q, k, v blocks of qkv_proj, which a checkpoint stores as three matrices (BitLinear scales each)
        self.fused_rows = {"qkv_proj": [w for w in self.qkv_widths if w]}
        # QK-norm (Dehghani et al. 2023), which bounds the attention logits: each head's queries and keys
        # normalised before RoPE (qk_norm 'head', Qwen3), or the whole query and key projections before they
        # split into heads ('proj', OLMo 2 §3.2), so one norm sees every head
        self.qk_norm, self.clip = cfg.qk_norm, cfg.clip_qkv
        widths = {"head": (self.head_dim, self.head_dim), "head_after_rope": (self.head_dim, self.head_dim),
                  "proj": (self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim)}.get(self.qk_norm)
        qk = cfg.replace(**{k: v for k, v in (("norm_bias", cfg.qk_norm_bias), ("norm", cfg.qk_norm_kind),
                                              ("norm_eps", cfg.qk_norm_eps)) if v is not None}) \
            if (cfg.qk_norm_bias, cfg.qk_norm_kind, cfg.qk_norm_eps) != (None, None, None) else cfg  # ESM C, Chameleon
        self.q_norm = make_norm(qk, widths[0]) if widths else None
        self.k_norm = make_norm(qk, widths[1]) if widths and not self.kv_shared else None
        # Gemma 4's value norm: each head's values over their RMS, no gain
        self.v_eps = cfg.norm_eps if cfg.v_norm and not self.kv_shared else None
        if self.qk_norm == "per_head":  # each head its own gain ('head' shares one across heads)
            bias = cfg.qk_norm_bias is True  # Chameleon's; StableLM-2's have none
            self.q_norm = PerHeadNorm(qk.norm, self.n_heads, self.head_dim, qk.norm_eps, bias)
            self.k_norm = PerHeadNorm(qk.norm, self.n_kv_heads, self.head_dim, qk.norm_eps, bias)
        if self.qk_norm == "rms_after_rope":  # Llama 4: no gain, so nothing to store
            self.q_norm = self.k_norm = PlainRMSNorm(self.head_dim, cfg.norm_eps)
        if self.qk_norm == "l2_clip":  # Inkling 2: queries through a gain and a clip, keys through the clip alone
            self.q_norm, self.k_norm = L2Clip(cfg.qk_clip, self.n_heads, self.head_dim), L2Clip(cfg.qk_clip)
        self.temperature = temperature_of(cfg)
        # Canon layers on the projected keys and values (canon.py; Inkling's k_sconv and v_sconv), before the key norm;
        # dynamic ones (Inkling 2's full layers) add per-token taps projected from the keys' and values' own input
        canon = partial(DynamicCanon, d_model=cfg.d_model, heads=self.n_kv_heads) if cfg.canon_kv_dynamic else Canon
        self.k_canon = canon(self.n_kv_heads * self.head_dim, cfg.canon_kv, cfg.canon_scaled) if cfg.canon_kv else None
        self.v_canon = canon(self.n_kv_heads * self.v_dim, cfg.canon_kv, cfg.canon_scaled) if cfg.canon_kv else None
        self.key_scale = cfg.attn_key_multiplier if cfg.attn_key_multiplier != 1.0 else None  # Falcon-H1's muP
        self.value_scale = cfg.attn_value_multiplier if cfg.attn_value_multiplier != 1.0 else None  # MiMo-V2-Flash
        # a learned sink logit per head in every softmax's denominator (gpt-oss; sinks.py); kinds pass it on
        self.sinks = nn.Parameter(torch.zeros(cfg.n_heads)) if cfg.attn_sinks else None
        # or one per head and token, projected from the queries' input (Inkling 2's sink_proj): sink_logits
        self.sink_proj = Linear(cfg.d_model, cfg.n_heads, bias=False) if cfg.attn_sink_proj else None
        # nGPT's s_qk on the rotated queries (attn_q_gain): a gain per channel of every head, (H * D,)
        self.q_gain = nn.Parameter(torch.ones(cfg.n_heads * cfg.head_dim)) if cfg.attn_q_gain else None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    @classmethod
    def check(cls, cfg) -> None:
        if (cfg.qk_norm_kind is not None or cfg.qk_norm_eps is not None) and cfg.qk_norm not in (
                "head", "per_head", "proj", "head_after_rope"):
            raise LlmarchError(f"qk_norm_kind and qk_norm_eps choose the norm of qk_norm 'head', 'per_head', 'proj' "
                               f"or 'head_after_rope', not of qk_norm={cfg.qk_norm!r}")
        if cfg.qk_norm_kind is not None and cfg.qk_norm_kind not in NORMS.names():
            raise LlmarchError(f"unknown qk_norm_kind {cfg.qk_norm_kind!r}; choose one of: {', '.join(NORMS.names())}")
        if cfg.qk_norm == "proj" and cfg.attn_output_gate:
            raise LlmarchError("qk_norm='proj' and attn_output_gate=True: the output gate's rows sit among the "
                               "query rows that the projection norm would normalise")
        if cfg.qk_norm in ("proj", "per_head") and ATTENTION_KINDS[cfg.attention].shares_qk:
            raise LlmarchError(f"qk_norm={cfg.qk_norm!r} needs a key projection, which attention={cfg.attention!r} "
                               "has not")
        if cfg.clip_qkv is not None and (cfg.clip_qkv <= 0 or cfg.qk_norm in ("head", "per_head", "head_after_rope",
                                                                           "rms_after_rope")):
            raise LlmarchError(f"clip_qkv={cfg.clip_qkv} needs a positive bound and no per-head QK-norm (it clamps "
                               "the projections, after a 'proj' norm)")
        if cfg.value_width != cfg.head_dim and (cfg.attn_output_gate or cfg.attn_k_eq_v):
            raise LlmarchError(f"value_dim={cfg.value_width} (values narrower or wider than head_dim={cfg.head_dim}) "
                               "is not implemented with attn_output_gate or attn_k_eq_v")
        if cfg.attn_gate_fn not in GATE_FNS or cfg.attn_gate_fn != "sigmoid" \
                and not (cfg.attn_output_gate or cfg.attn_head_gate):
            raise LlmarchError(f"attn_gate_fn={cfg.attn_gate_fn!r} (one of {', '.join(GATE_FNS)}) shapes an output "
                               "gate: attn_output_gate or attn_head_gate")
        if cfg.attn_gate_bias and not cfg.attn_output_gate:
            raise LlmarchError("attn_gate_bias biases the pre-activations of attn_output_gate, which is off")
        if cfg.canon_kv and (cfg.attn_k_eq_v or cfg.kv_shared_layers or cfg.kv_source_layers or cfg.qk_norm == "proj"
                             or ATTENTION_KINDS[cfg.attention].shares_qk):
            raise LlmarchError("canon_kv convolves the keys and values of the layer's own projections: not with "
                               "attn_k_eq_v, kv_shared_layers, kv_source_layers, qk_norm='proj' or keys that are the "
                               "queries")
        if cfg.attn_sink_proj and (cfg.attn_sinks or cfg.attention != "relative_logits"):
            raise LlmarchError("attn_sink_proj (sink logits per token) is implemented for attention "
                               "'relative_logits', without attn_sinks' learned ones")
        if cfg.canon_kv_dynamic and not cfg.canon_kv:
            raise LlmarchError("canon_kv_dynamic adds per-token taps to canon_kv's convolutions, which are off")
        if cfg.qk_norm == "l2_clip" and cfg.qk_clip <= 0:
            raise LlmarchError(f"qk_norm='l2_clip' bounds query and key norms at qk_clip: positive, got {cfg.qk_clip}")
        if cfg.attn_temp_form not in TEMP_FORMS:
            raise LlmarchError(f"attn_temp_form must be one of {', '.join(TEMP_FORMS)}, got {cfg.attn_temp_form!r}")
        if cfg.qk_norm == "per_head" and cfg.attn_output_gate:
            raise LlmarchError("qk_norm='per_head' and attn_output_gate=True are not implemented together")
        if cfg.kv_fp4 and (cfg.head_dim % 16 or cfg.value_width % 16):
            raise LlmarchError(f"kv_fp4 rounds runs of 16 dims: it needs head_dim and values multiples of 16, got "
                               f"{cfg.head_dim} and {cfg.value_width}")
        if (cfg.attn_k_eq_v or cfg.kv_shared_layers or cfg.kv_source_layers) and (
                cfg.qk_norm not in ("none", "head") or ATTENTION_KINDS[cfg.attention].shares_qk):
            raise LlmarchError("attn_k_eq_v and kv_shared_layers (or kv_source_layers) need keys of their own "
                               f"projection and a QK-norm of 'none' or 'head' (got qk_norm={cfg.qk_norm!r}, "
                               f"attention={cfg.attention!r})")
        g = cfg.qkv_groups
        if g != 1 and (g <= 0 or cfg.d_model % g or cfg.n_kv_heads != cfg.n_heads or cfg.head_dim * cfg.n_heads % g
                       or cfg.value_width != cfg.head_dim or cfg.attn_output_gate or cfg.bitlinear != "none"
                       or cfg.attn_k_eq_v or cfg.kv_shared_layers or cfg.kv_source_layers
                       or ATTENTION_KINDS[cfg.attention].shares_qk):
            raise LlmarchError(f"qkv_groups={g} groups multi-head attention's q, k and v projections alike: it must "
                               "divide d_model and their width (no GQA, gates, shared keys or BitLinear)")

    @classmethod
    def score_dims(cls, cfg) -> int:
        return cfg.n_heads * (cfg.head_dim + cfg.value_width)

    @classmethod
    def kv_heads(cls, cfg) -> int:
        return cfg.n_kv_heads

    def split_inputs_macs(self) -> int:
        """Multiply-adds per token that three inputs (forward's x (B, T, 3, C)) cost beyond one: the fused
        projection runs over each of them (analysis/accounting.py)."""
        return 2 * sum(p.numel() for p in self._modules["qkv_proj"].parameters())

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        return self.kind.new_state(self, batch, max_len, dtype, device)

    def bounded_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        return self.kind.bounded_state(self, batch, max_len, dtype, device)

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        return self.kind.cache_bytes(self, dtype, max_len)

    def state_note(self, dtype: str) -> str:
        return self.kind.state_note

    def cache_note(self) -> str:
        return self.kind.cache_note

    def sink_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """The sink logits for the queries of x (B, T, C): (H,) learned (attn_sinks), (B, H, T) projected
        (attn_sink_proj), or None."""
        proj = self._modules.get("sink_proj")
        return self.sinks if proj is None else proj(x).transpose(1, 2)

    def temperature_at(self, ctx: AttentionContext) -> torch.Tensor:
        """(B|1, 1, T, 1): the query temperature of this call's tokens (attn_temp_scale)."""
        return temperature(ctx, *self.temperature)

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        B, T = x.shape[:2]
        sub = self._modules  # not nn.Module's attribute fallback: a one-token step reads a dozen of them
        # x (B, T, 3, C): the queries' input, the keys', the values' (attn_split_inputs, or a looped block's gated
        # inputs: loop_messages.py); the rest reads the first
        if x.dim() == 4:
            # the fused projection of all three inputs, each input's own rows kept: three times the projection's
            # work in these layers, but one call of qkv_proj as it is (with its LoRA or quantization, if any)
            inputs = x.unbind(2)
            parts = sub["qkv_proj"](x).split(self.qkv_widths, dim=-1)  # each (B, T, 3, width)
            qkv = torch.cat([p[:, :, j] for j, p in enumerate(parts)], dim=-1)
            x = inputs[0]
        else:
            inputs, qkv = (x, x, x), sub["qkv_proj"](x)
        if sub.get("k_canon") is not None:
            q, k, v = qkv.split(self.qkv_widths, dim=-1)
            qkv = torch.cat((q, sub["k_canon"](k, ctx, inputs[1]), sub["v_canon"](v, ctx, inputs[2])), dim=-1)
        if self.qk_norm == "proj":
            q, k, v = qkv.split(self.qkv_widths, dim=-1)
            qkv = torch.cat((self.q_norm(q), self.k_norm(k), v), dim=-1)
        if self.clip is not None:  # OLMo's clip_qkv: every query, key and value entry bounded
            qkv = qkv.clamp(-self.clip, self.clip)
        # one token (decoding): (B, 1, heads, D) and (B, heads, 1, D) are the same memory, so a view, no
        # transposes; the hook points see (B, T, heads, D), so a watched step takes the general path
        one = T == 1 and not (sub["hook_q"].active or sub["hook_k"].active or sub["hook_v"].active)
        heads = 1 if one else 2
        if self.v_dim == self.head_dim:
            shape = (B, -1, 1, self.head_dim) if one else (B, T, -1, self.head_dim)
            q, k, v = qkv.view(shape).split_with_sizes(self.qkv_heads, heads)  # one split of the heads axis
        else:  # values of their own width: split the features, then each part into its heads
            q, k, v = (t.unflatten(-1, (-1, w)).transpose(1, 2) if one else t.unflatten(-1, (-1, w))
                       for t, w in zip(qkv.split(self.qkv_widths, dim=-1), (self.head_dim, self.head_dim, self.v_dim)))
        if self.gate_rows:
            q, gate = q.unflatten(heads, (self.n_heads, 2)).unbind(heads + 1)
        if self.kv_shared:
            q, k, v = self._shared_kv(q, heads, one, ctx)
        else:
            q, k, v = self._own_kv(q, k, v, heads, one, ctx)
        gain = self._parameters.get("q_gain")
        if gain is not None:  # (B, H, T, D) times (H, 1, D): after RoPE, so each rotated channel its own gain
            q = q * gain.view(self.n_heads, 1, self.head_dim).to(q.dtype)
        if self.kv_fp4:  # after sharing: a layer reading these rounds them itself (rounding twice changes nothing)
            k, v = nvfp4_round(k), nvfp4_round(v)
        if self.temperature is not None:  # Llama 4, Ministral 3, Mistral 4: the log-length query scaling
            q = (q * self.temperature_at(ctx)).to(q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        y = self.kind.attend(self, x, q, k, v, ctx, dropout_p)  # (B, H, T, value_dim)
        y = y.transpose(1, 2)  # (B, T, H, value_dim)
        if self.gated:  # hook_z then sees the gated heads, what o_proj reads
            gate = gate.reshape(B, T, self.n_heads, self.head_dim)
            bias = self._parameters.get("gate_bias")
            y = y * self.gate_fn(gate if bias is None else gate + bias[:, None])
        if sub.get("g_proj") is not None:
            y = y * self.gate_fn(sub["g_proj"](x))[..., None]  # (B, T, H, 1): one gate per head
        y = sub["hook_z"](y).reshape(B, T, self.n_heads * self.v_dim)
        return sub["o_proj"](y if sub.get("sub_norm") is None else sub["sub_norm"](y))

    def _own_kv(self, q, k, v, heads: int, one: bool, ctx: AttentionContext):
        """This layer's queries, keys and values, normalised and rotated, (B, heads, T, D) each."""
        if self.k_eq_v:  # Gemma 4: the values are the key projection, before the key norm and RoPE
            v = k
        if self.key_scale is not None:  # Falcon-H1's key_multiplier: the projected keys times a constant
            k = k * self.key_scale
        if self.value_scale is not None:  # MiMo-V2-Flash's attention_value_scale: the values times a constant
            v = v * self.value_scale
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        elif self.qk_norm in ("per_head", "l2_clip"):
            q, k = self.q_norm(q, heads), self.k_norm(k, heads)
        if self.v_eps is not None:
            v = rms_normalize(v, self.v_eps)
        if not one:
            q = self.hook_q(q).transpose(1, 2)  # (B, H, T, D)
            k = self.hook_k(k).transpose(1, 2)  # (B, K, T, D)
            v = self.hook_v(v).transpose(1, 2)  # (B, K, T, D)
        if ctx.rope is not None:
            q, k = apply_rotary(q, *ctx.rope), apply_rotary(k, *ctx.rope)
        if self.qk_norm in ("head_after_rope", "rms_after_rope"):  # Hunyuan, Llama 4: the rotated q and k, per head
            q, k = self.q_norm(q), self.k_norm(k)
        if ctx.shared_kv is not None:  # later layers may attend over these (kv_shared_layers)
            ctx.shared_kv[self.kv_from] = k, v
        return q, k, v

    def _shared_kv(self, q, heads: int, one: bool, ctx: AttentionContext):
        """This layer's queries, and the keys and values of layer kv_from of this forward (Gemma 3n / Gemma 4's
        KV sharing): that layer's cache is this one's state too, so a step reads every earlier position's."""
        if self.qk_norm == "head":
            q = self.q_norm(q)
        if not one:
            q = self.hook_q(q).transpose(1, 2)  # (B, H, T, D)
        if ctx.rope is not None:
            q = apply_rotary(q, *ctx.rope)
        k, v = ctx.shared_kv[self.kv_from]  # (B, K, T, D) each
        return q, k, v
