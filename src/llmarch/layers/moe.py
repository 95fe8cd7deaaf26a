"""A mixture-of-experts FFN (Shazeer et al. 2017; GShard; Switch Transformer; Mixtral) that drops in wherever
a dense FFN goes: a router (router.py) picks k experts per token; each expert is an FFN of the configured
kind; the output is sum_k w_k * expert_k(x), plus the shared experts' output if any (DeepSeekMoE,
Dai et al. 2024: experts every token passes through, unweighted; Qwen2-MoE and Qwen3-Next gate it per token
by sigmoid(x w), shared_expert_gate).

Dispatch never loops over tokens: the (token, expert) assignments are sorted by expert, so each expert's
tokens are one contiguous slice, run through that expert at once, weighted, and summed back per token with
index_add. On CUDA in bf16 all experts run as one grouped GEMM (torch.nn.functional.grouped_mm); elsewhere
one matmul per expert over its slice. Under torch.compile with few tokens (the compiled decode step) the
shapes must not depend on the routing, so each token meets its own experts' gathered weights, or, for a few
more tokens, every expert runs on every token weighted by 0 where not chosen; one graph either way. The expert
weights are stacked: (E, rows, d_model) like the transformers layout, so the grouped GEMM reads them as they are."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .ffn import ACTIVATIONS, FFN_ACTIVATION, GATED, dense_ffn, gate_function
from .hooks import HookPoint
from .linear import Linear
from .norms import make_norm, rms_normalize
from .router import Router


class Experts(nn.Module):
    """E FFNs with stacked weights: gate_up (E, 2I, C) for gated kinds (rows: gate, then up) or up (E, I, C),
    and down (E, C, I); biases (E, rows) and (E, C) when cfg.expert_proj_bias (by default cfg.bias)."""

    residual_out = ("down",)  # the experts' stacked down projections

    def __init__(self, cfg, n_experts: int | None = None, hidden: int | None = None):
        super().__init__()
        # n_experts, hidden: other than the routed experts' (the adjugate experts, moe_adjugate_group)
        E, C, hidden = n_experts or cfg.n_experts, cfg.d_model, hidden or cfg.expert_hidden
        self.gated = cfg.ffn in GATED
        # the gated kind's (gate, up) -> hidden, as its dense FFN applies it (ffn.py), else the activation
        self.act = gate_function(cfg) if self.gated else ACTIVATIONS[FFN_ACTIVATION[cfg.ffn]]
        rows = 2 * hidden if self.gated else hidden
        self.in_name = "gate_up" if self.gated else "up"
        self.register_parameter(self.in_name, nn.Parameter(torch.empty(E, rows, C)))
        self.down = nn.Parameter(torch.empty(E, C, hidden))
        self.in_bias = nn.Parameter(torch.empty(E, rows)) if cfg.expert_proj_bias else None
        self.down_bias = nn.Parameter(torch.empty(E, C)) if cfg.expert_proj_bias else None
        # Llama 4 (Meta 2025; transformers' Llama4TextMoe): the routing weight scales the expert's input, E(w x);
        # the others scale its output, w E(x). The two differ, the expert being nonlinear
        self.input_weighted = cfg.expert_input_weighted
        # Ergo (expert_out_norm): each expert's output through an RMSNorm with a gain of its own, (E, C), before its
        # routing weight, so the experts add outputs of one scale whatever their weights' norms
        self.out_gain = nn.Parameter(torch.ones(E, C)) if cfg.expert_out_norm else None
        self.out_eps = cfg.norm_eps

    def init_ssm(self) -> None:
        """The stack's init hook (models/init.init_weights, which draws every matrix): the output gains back to 1."""
        if self.out_gain is not None:
            nn.init.ones_(self.out_gain)

    def _normed(self, y: torch.Tensor, ids) -> torch.Tensor:
        """expert_out_norm: y (..., C), the output of expert(s) ids (a tensor of y's leading shape, or one int), over
        its RMS times that expert's gain; y as it is without."""
        return y if self.out_gain is None else rms_normalize(y, self.out_eps) * self.out_gain[ids]

    @property
    def w_in(self) -> torch.Tensor:
        return getattr(self, self.in_name)

    def _hidden(self, h: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            return self.act(gate, up)
        return self.act(h)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """x (N, C), weights and experts (N, k) -> (N, C): sum over k of weight * expert(x). An expert id of
        E marks a dropped assignment: sorted last, computed by no expert."""
        N, k = experts.shape
        E = self.down.shape[0]
        if torch.compiler.is_compiling() and N * k <= E:  # static shapes for one compiled graph (decoding)
            return self.gathered(x, weights, experts)
        if torch.compiler.is_compiling() and N <= 256:
            return self.all_experts(x, weights, experts)
        flat = experts.reshape(-1)
        order = flat.argsort(stable=True)  # assignments grouped by expert, in token order
        tokens = order // k
        w = weights.reshape(-1)[order, None].to(x.dtype)
        xs = x[tokens] * w if self.input_weighted else x[tokens]  # (N*k, C)
        counts = torch.bincount(flat, minlength=E + 1)[:E]
        ys = self.grouped(xs, counts, flat[order]) if self.use_grouped(x) else self.looped(xs, counts)
        ys = self._normed(ys, flat[order].clamp(max=E - 1))  # a dropped row is 0, and stays 0
        ys = ys if self.input_weighted else ys * w
        return torch.zeros_like(x).index_add_(0, tokens, ys)

    def gathered(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """Each token against the weights of its own k experts, gathered: static shapes and no host sync,
        so it compiles into one graph (the compiled decode step, CUDA graphs); it copies k experts' weights
        per token, so it suits few tokens (decoding), not training batches."""
        E = self.down.shape[0]
        ids = experts.clamp(max=E - 1)  # a dropped assignment (id E) has weight 0
        w = weights[..., None].to(x.dtype)  # (N, k, 1)
        xk = x[:, None, :].expand(-1, ids.shape[1], -1)  # (N, k, C)
        h = torch.einsum("nkc,nkrc->nkr", xk * w if self.input_weighted else xk, self.w_in[ids])
        if self.in_bias is not None:
            h = h + self.in_bias[ids]
        y = torch.einsum("nki,nkci->nkc", self._hidden(h), self.down[ids])
        if self.down_bias is not None:
            y = y + self.down_bias[ids]
        y = self._normed(y, ids)
        return (y * ((experts < E)[..., None].to(y.dtype) if self.input_weighted else w)).sum(dim=1)

    def all_experts(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, weighted by the token's routing weight for it (0 if not chosen):
        static shapes like `gathered` without copying weights, at E / k times the FLOPs, so for a few tokens
        that already touch most experts (batched decoding)."""
        E = self.down.shape[0]
        combine = x.new_zeros(x.shape[0], E + 1).scatter_add_(1, experts, weights.to(x.dtype))  # (N, E + dropped)
        chosen = x.new_zeros(x.shape[0], E + 1).scatter_(1, experts, 1.0)
        b_in = [None] * E if self.in_bias is None else self.in_bias.unbind(0)
        b_down = [None] * E if self.down_bias is None else self.down_bias.unbind(0)
        y = torch.zeros_like(x)
        for e, (w_in, down) in enumerate(zip(self.w_in.unbind(0), self.down.unbind(0))):
            w = combine[:, e:e + 1]
            x_in, w_out = (x * w, chosen[:, e:e + 1]) if self.input_weighted else (x, w)
            y = y + w_out * self._normed(F.linear(self._hidden(F.linear(x_in, w_in, b_in[e])), down, b_down[e]), e)
        return y

    @staticmethod
    def use_grouped(x: torch.Tensor) -> bool:
        """grouped_mm's kernels are for bf16 on CUDA (and the CPU build has no backward for it)."""
        return x.is_cuda and x.dtype == torch.bfloat16

    def looped(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """One matmul pair per expert over its contiguous slice of the sorted assignments (dropped rows: 0)."""
        # unbind, not w[e]: its backward stacks the experts' gradients once, where indexing would add a
        # full-size zero-padded gradient per expert
        w_in, down = self.w_in.unbind(0), self.down.unbind(0)
        b_in = [None] * len(w_in) if self.in_bias is None else self.in_bias.unbind(0)
        b_down = [None] * len(w_in) if self.down_bias is None else self.down_bias.unbind(0)
        pieces, start = [], 0
        for e, n in enumerate(counts.tolist()):
            if n:
                h = self._hidden(F.linear(xs[start:start + n], w_in[e], b_in[e]))
                pieces.append(F.linear(h, down[e], b_down[e]))
                start += n
        pieces.append(xs.new_zeros(xs.shape[0] - start, xs.shape[1]))  # dropped assignments
        return torch.cat(pieces)

    def grouped(self, xs: torch.Tensor, counts: torch.Tensor, row_experts: torch.Tensor) -> torch.Tensor:
        """All experts as two grouped GEMMs, with no host sync: group e is rows offs[e-1]..offs[e]; the
        kernel leaves rows past offs[-1] (dropped assignments) unwritten, so they are zeroed here."""
        offs = counts.cumsum(0).to(torch.int32)
        h = F.grouped_mm(xs, self.w_in.transpose(1, 2), offs=offs)
        if self.in_bias is not None:
            h = h + self.in_bias[row_experts.clamp(max=len(counts) - 1)]
        y = F.grouped_mm(self._hidden(h), self.down.transpose(1, 2), offs=offs)
        if self.down_bias is not None:
            y = y + self.down_bias[row_experts.clamp(max=len(counts) - 1)]
        valid = torch.arange(xs.shape[0], device=xs.device) < offs[-1]
        return torch.where(valid[:, None], y, 0)


ROUTER_AUX_SCOPES = ("batch", "sequence")  # where the load-balancing loss averages: the whole batch or each row
ROUTER_SCORINGS = ("softmax", "sigmoid", "sparsemixer", "sqrtsoftplus")  # how the router scores experts (router.py)


def check_moe(cfg) -> None:
    """A mixture of experts' config fields (n_experts > 0: every other field here must fit it)."""
    if cfg.n_experts < 0 or cfg.n_shared_experts < 0:
        raise LlmarchError("n_experts and n_shared_experts must be >= 0")
    if (cfg.router_input_norm or cfg.router_expert_scale or cfg.moe_beside_dense) and not cfg.n_experts:
        raise LlmarchError("router_input_norm, router_expert_scale and moe_beside_dense need a router: n_experts > 0")
    if cfg.moe_beside_dense and (cfg.n_shared_experts or cfg.shared_expert_gate or cfg.block != "sequential"
                                 or cfg.norm_placement not in ("pre", "sandwich")):
        raise LlmarchError("moe_beside_dense puts a dense FFN beside the experts in a sequential pre-norm or "
                           "sandwich block: no shared experts besides")
    if cfg.skip_experts < 0 or cfg.router_mlp < 0 or ((cfg.skip_experts or cfg.router_mlp or cfg.router_carry) and (
            not cfg.n_experts or cfg.zero_experts or cfg.router_bias or cfg.router_input_norm or cfg.moe_shortcut
            or cfg.moe_beside_dense)) or (cfg.router_carry and not cfg.router_mlp):
        raise LlmarchError("skip_experts, router_mlp and router_carry (ZAYA1's router) need n_experts > 0 and no "
                           "zero_experts, router_bias, router_input_norm, moe_shortcut or moe_beside_dense; "
                           "router_carry needs router_mlp > 0")
    if (cfg.moe_out_bias or cfg.moe_out_norm) and (not cfg.n_experts or cfg.moe_beside_dense):
        raise LlmarchError("moe_out_bias and moe_out_norm add a bias or a norm to a mixture's output: they need "
                           "n_experts > 0 (not moe_beside_dense)")
    if cfg.zero_experts < 0 or (cfg.zero_experts and (not cfg.n_experts or cfg.router_groups > 1
                                                      or cfg.capacity_factor is not None
                                                      or cfg.expert_capacity is not None or cfg.expert_input_weighted
                                                      or cfg.router_scoring == "sparsemixer")):
        raise LlmarchError(f"zero_experts={cfg.zero_experts} must be >= 0, and > 0 only beside n_experts > 0 routed "
                           "without groups, capacity, sparsemixer or expert_input_weighted")
    if cfg.moe_shortcut and (cfg.block != "sequential" or cfg.norm_placement != "pre" or cfg.moe_beside_dense
                             or cfg.n_decoder_layers or not cfg.n_experts or cfg.moe_period < 2
                             or cfg.is_moe_layer(cfg.n_layers - 1)):
        raise LlmarchError("moe_shortcut needs a sequential pre-norm decoder-only or encoder-only stack whose "
                           "mixture layers (moe_period >= 2) each have a next layer to add their output to")
    if cfg.moe_adjugate_group < 0 or cfg.moe_adjugate_group and (
            not cfg.n_experts or cfg.n_experts % cfg.moe_adjugate_group or cfg.moe_adjugate_hidden <= 0
            or cfg.zero_experts or cfg.skip_experts or cfg.capacity_factor is not None
            or cfg.expert_capacity is not None or cfg.expert_out_norm):
        raise LlmarchError(f"moe_adjugate_group={cfg.moe_adjugate_group} needs n_experts > 0 a multiple of it, "
                           "moe_adjugate_hidden > 0, and no zero or skip experts, capacity or expert_out_norm")
    if cfg.router_early and (not cfg.n_experts or cfg.block != "sequential" or cfg.norm_placement != "pre"
                             or cfg.moe_beside_dense or cfg.moe_shortcut or cfg.router_carry or cfg.router_hash_layers
                             or cfg.altup_streams > 1 or cfg.hyper_connection != "none" or cfg.attn_residual_block):
        raise LlmarchError("router_early (the router reads the block's input) needs n_experts > 0 in a sequential "
                           "pre-norm block of one residual stream, without moe_beside_dense, moe_shortcut, "
                           "router_carry or hash routing")
    if (cfg.router_shared_sink or cfg.router_learned_scale) and not cfg.n_experts:
        raise LlmarchError("router_shared_sink and router_learned_scale need a router: n_experts > 0")
    if cfg.router_shared_sink and not (
            cfg.n_shared_experts and cfg.shared_hidden == cfg.n_shared_experts * cfg.expert_hidden
            and cfg.ffn in GATED and cfg.router_scoring == "sigmoid" and cfg.router_renormalize
            and cfg.router_renorm_p == 1.0 and not (cfg.router_mlp or cfg.zero_experts or cfg.skip_experts
                                                    or cfg.shared_expert_gate or cfg.moe_beside_dense)):
        raise LlmarchError("router_shared_sink weighs gated shared experts of expert_hidden each by sigmoid scores "
                           "renormalised with the chosen ones': it needs n_shared_experts > 0, shared_hidden = "
                           "n_shared_experts * expert_hidden, router_scoring='sigmoid', router_renormalize, and no "
                           "router_mlp, zero or skip experts, shared_expert_gate or moe_beside_dense")
    if cfg.router_bias and not cfg.n_experts:
        raise LlmarchError("router_bias=True and n_experts=0: there is no router to bias")
    if cfg.router_softcap is not None and (cfg.router_softcap <= 0 or not cfg.n_experts):
        raise LlmarchError(f"router_softcap={cfg.router_softcap} must be positive, with a router (n_experts > 0)")
    if cfg.router_bias_on_logits and not (cfg.expert_bias and cfg.n_experts and cfg.router_groups == 1):
        raise LlmarchError("router_bias_on_logits adds the expert bias to the logits: it needs n_experts > 0, "
                           "expert_bias=True and router_groups=1")
    if cfg.expert_out_norm and (not cfg.n_experts or cfg.norm != "rmsnorm" or cfg.expert_input_weighted
                                or cfg.moe_beside_dense):
        raise LlmarchError("expert_out_norm RMS-normalises each expert's output: it needs n_experts > 0, "
                           "norm='rmsnorm', and no expert_input_weighted or moe_beside_dense")
    if cfg.shared_average and not (cfg.n_experts and cfg.n_shared_experts):
        raise LlmarchError("shared_average averages the routed and shared experts: it needs n_experts and "
                           "n_shared_experts > 0")
    if cfg.shared_expert_gate and not (cfg.n_experts and cfg.n_shared_experts):
        raise LlmarchError("shared_expert_gate gates the shared experts: it needs n_experts and n_shared_experts > 0")
    if cfg.expert_ffn is not None and (cfg.expert_ffn not in GATED or cfg.ffn not in GATED or not cfg.n_experts):
        raise LlmarchError(f"expert_ffn={cfg.expert_ffn!r} must be a gated kind ({', '.join(GATED)}) beside a gated "
                           f"ffn (got {cfg.ffn!r}), for n_experts > 0")
    if cfg.router_hash_layers < 0 or (cfg.router_hash_layers and not (
            cfg.n_experts and all(map(cfg.is_moe_layer, range(min(cfg.router_hash_layers, cfg.n_layers))))
            and cfg.router_groups == 1 and cfg.capacity_factor is None and cfg.expert_capacity is None
            and not cfg.zero_experts and not cfg.moe_beside_dense and not cfg.moe_shortcut
            and cfg.router_scoring != "sparsemixer")):
        raise LlmarchError(f"router_hash_layers={cfg.router_hash_layers} must be >= 0, and > 0 only where those "
                           "layers are mixture layers routed without groups, capacity, zero experts or sparsemixer")
    if cfg.router_renorm_p <= 0 or (cfg.router_renorm_p != 1.0 and not (cfg.router_renormalize and cfg.n_experts)):
        raise LlmarchError(f"router_renorm_p={cfg.router_renorm_p} must be positive, and other than 1 only with a "
                           f"router that renormalises (n_experts > 0, router_renormalize=True)")
    if not cfg.n_experts:
        return
    if not 1 <= cfg.experts_per_token <= cfg.n_experts:
        raise LlmarchError(f"experts_per_token must be in [1, n_experts={cfg.n_experts}], "
                           f"got {cfg.experts_per_token}")
    if cfg.expert_hidden <= 0:
        raise LlmarchError(f"expert_hidden must be a positive integer, got {cfg.expert_hidden}")
    if cfg.moe_period <= 0 or not 0 <= cfg.moe_offset < cfg.moe_period:
        raise LlmarchError(f"moe_period must be positive and moe_offset in [0, moe_period), got "
                           f"{cfg.moe_period} and {cfg.moe_offset}")
    if cfg.moe_dense_first < 0:
        raise LlmarchError(f"moe_dense_first must be >= 0, got {cfg.moe_dense_first}")
    if cfg.capacity_factor is not None and cfg.expert_capacity is not None:
        raise LlmarchError("give capacity_factor or expert_capacity, not both")
    if (cfg.capacity_factor is not None and cfg.capacity_factor <= 0) or (
            cfg.expert_capacity is not None and cfg.expert_capacity <= 0):
        raise LlmarchError("capacity_factor and expert_capacity must be positive")
    if not 0 <= cfg.router_jitter < 1:
        raise LlmarchError(f"router_jitter must be in [0, 1), got {cfg.router_jitter}")
    if cfg.router_aux_loss_weight < 0 or cfg.router_z_loss_weight < 0:
        raise LlmarchError("router loss weights must be >= 0")
    if cfg.router_scoring not in ROUTER_SCORINGS:
        raise LlmarchError(f"unknown router_scoring {cfg.router_scoring!r}; "
                           f"choose one of: {', '.join(ROUTER_SCORINGS)}")
    if cfg.router_scale <= 0:
        raise LlmarchError(f"router_scale must be positive, got {cfg.router_scale}")
    if cfg.router_scoring == "sparsemixer" and (cfg.router_renormalize or cfg.expert_bias or cfg.router_groups > 1
                                                or cfg.sparsemixer_eps < 0):
        raise LlmarchError("router_scoring='sparsemixer' weighs each choice by its own masked softmax: no "
                           "router_renormalize, expert_bias or router_groups, and sparsemixer_eps >= 0")
    groups, top = cfg.router_groups, cfg.router_topk_groups
    if groups < 1 or cfg.n_experts % groups or not 1 <= top <= groups:
        raise LlmarchError(f"router_groups={groups} must divide n_experts={cfg.n_experts}, and router_topk_groups="
                           f"{top} be in [1, router_groups]")
    if cfg.experts_per_token > top * (cfg.n_experts // groups):
        raise LlmarchError(f"experts_per_token={cfg.experts_per_token} is more than the experts of "
                           f"router_topk_groups={top} groups ({top * (cfg.n_experts // groups)})")
    if groups > 1 and cfg.router_scoring == "sqrtsoftplus":
        raise LlmarchError("router_scoring='sqrtsoftplus' with router_groups > 1 is not implemented")
    if groups > 1 and cfg.router_scoring == "sigmoid" and cfg.n_experts // groups < 2:
        raise LlmarchError(f"router_scoring='sigmoid' and router_groups={groups}: a group is scored by its best two "
                           "experts, so each group needs two")
    if cfg.expert_bias_update < 0 or (cfg.expert_bias_update and not cfg.expert_bias):
        raise LlmarchError(f"expert_bias_update={cfg.expert_bias_update} must be >= 0, and > 0 only with "
                           "expert_bias=True (the bias it updates)")
    if cfg.router_aux_scope not in ROUTER_AUX_SCOPES:
        raise LlmarchError(f"unknown router_aux_scope {cfg.router_aux_scope!r}; "
                           f"choose one of: {', '.join(ROUTER_AUX_SCOPES)}")


class MoE(nn.Module):
    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        # router_carry: every mixture layer after the first reads the router state the one before it leaves;
        # router_hash_layers: the first layers choose by token id (DeepSeek-V4's hash layers)
        hashed = layer < cfg.router_hash_layers
        self.router = Router(cfg, carries=cfg.router_carry and any(map(cfg.is_moe_layer, range(layer))),
                             hashed=hashed)
        self.reads_ctx = cfg.router_carry or hashed  # the block hands it the forward's context (carry, input_ids)
        self.skip = cfg.skip_experts > 0  # ZAYA1: the choices past the experts compute nothing
        self.experts = Experts(cfg)
        # GroveMoE: an adjugate expert per group of moe_adjugate_group experts, run on the group's chosen experts
        self.group = cfg.moe_adjugate_group
        self.adjugate = Experts(cfg, cfg.n_experts // self.group, cfg.moe_adjugate_hidden) if self.group else None
        self.adjugate_scale = cfg.moe_adjugate_scale
        self.shared = dense_ffn(cfg, cfg.shared_hidden) if cfg.n_shared_experts else None
        self.shared_width = cfg.expert_hidden  # one shared expert's hidden units (router_shared_sink weighs each)
        # Qwen2-MoE / Qwen3-Next: the shared experts' output scaled per token by sigmoid(x w), w (1, C)
        self.shared_gate = Linear(cfg.d_model, 1, bias=False) if cfg.shared_expert_gate else None
        # Ergo (expert_out_norm): the shared experts' output through a norm of its own too
        self.shared_norm = make_norm(cfg) if cfg.expert_out_norm and self.shared is not None else None
        self.average = cfg.shared_average
        self.bias = nn.Parameter(torch.empty(cfg.d_model)) if cfg.moe_out_bias else None  # JetMoE
        self.out_norm = make_norm(cfg) if cfg.moe_out_norm else None  # A.X-K1's post_mlp_layernorm
        self.zero_experts = cfg.zero_experts > 0  # LongCat-Flash: experts ids >= n_experts are the identity
        self.routing = None  # the Routing of the last forward (router.py), read by the training losses
        # analysis: the router logits (B, T, E) as seen, and the chosen experts (B, T, k), which a hook may replace
        self.hook_router_logits, self.hook_experts = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, ctx=None, route: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, C)
        """The mixture on x, routed by x itself, or by `route` (EarlyRoutedMoE: the block's input)."""
        y = self.routed(x if route is None else route, x, ctx)
        if self.shared is not None:
            sink = self.routing.shared  # router_shared_sink: each shared expert's hidden units times its weight
            shared = self.shared(x) if sink is None else \
                self.shared(x, hidden_gain=sink.repeat_interleave(self.shared_width, dim=-1))
            if self.shared_norm is not None:  # expert_out_norm: the shared expert's output normed too
                shared = self.shared_norm(shared)
            y = y + (shared if self.shared_gate is None else torch.sigmoid(self.shared_gate(x)) * shared)
            if self.average:  # Cohere2-MoE: the two halves' mean
                y = y * 0.5
        y = y if self.bias is None else y + self.bias
        return y if self.out_norm is None else self.out_norm(y)

    def routed(self, route: torch.Tensor, x: torch.Tensor, ctx=None) -> torch.Tensor:
        """The experts' weighted sum on x (B, T, C), routed by `route` (B, T, C); ctx: the forward's context, where
        router_carry keeps its state (ctx.carry) and a hash-routed layer reads the tokens (ctx.input_ids)."""
        B, T, C = x.shape
        weights, self.routing = self.router(route, ctx)
        self.hook_router_logits(self.routing.logits)
        experts = self.hook_experts(self.routing.experts)
        if self.routing.kept is not None:  # a dropped assignment goes to no expert (id E)
            experts = experts.masked_fill(~self.routing.kept, self.router.n_experts)
        if self.skip:  # a skip expert: the choice adds nothing (no expert, weight 0)
            skipped = experts >= self.router.n_experts
            experts, weights = experts.masked_fill(skipped, self.router.n_experts), weights.masked_fill(skipped, 0.0)
        identity = None
        if self.zero_experts:  # a zero expert passes x times its weight; the real experts see it as dropped
            zero = experts >= self.router.n_experts
            identity = x * weights.masked_fill(~zero, 0.0).sum(dim=-1, keepdim=True).to(x.dtype)
            experts, weights = experts.masked_fill(zero, self.router.n_experts), weights.masked_fill(zero, 0.0)
        y = self.experts(x.reshape(-1, C), weights.reshape(B * T, -1), experts.reshape(B * T, -1)).view(B, T, C)
        if self.adjugate is not None:  # each choice also runs its group's adjugate expert, with the same weight
            groups = (experts // self.group).reshape(B * T, -1)
            adj = self.adjugate(x.reshape(-1, C), weights.reshape(B * T, -1), groups)
            y = y + self.adjugate_scale * adj.view(B, T, C)
        return y if identity is None else y + identity


class EarlyRoutedMoE(MoE):
    """SmallThinker's mixture (router_early): the router reads the block's input r, before the attention sublayer and
    its norm, the experts the FFN's normed input h: sum_k w_k(r) E_k(h). The block hands it r (`reads_block_input`)."""

    reads_block_input = True

    def forward(self, x: torch.Tensor, block_input: torch.Tensor) -> torch.Tensor:  # (B, T, C) each
        return super().forward(x, route=block_input)


class MoEBesideDense(MoE):
    """Gemma 4's FFN of a mixture layer (moe_beside_dense): a dense FFN (`shared`, on the block's FFN-normed input
    n(r)) and the experts (on their own norm of the residual stream r, routed by r itself) side by side, each output
    through a norm of its own, summed: N_d(FFN(n(r))) + N_e(sum_k w_k E_k(N_i(r))). The block's post-FFN norm follows
    (sandwich). It reads r beside n(r) (`reads_residual`)."""

    reads_residual = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.shared = dense_ffn(cfg, cfg.ffn_hidden)
        self.shared_post, self.experts_pre, self.experts_post = make_norm(cfg), make_norm(cfg), make_norm(cfg)

    def forward(self, normed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) each
        routed = self.experts_post(self.routed(x, self.experts_pre(x)))
        return self.shared_post(self.shared(normed)) + routed
