"""Token-choice top-k routing for mixtures of experts (Shazeer et al. 2017) and the router's training losses.

Each token's router logits are h W_r, + b_r with router_bias (gpt-oss), in fp32, so the choice of experts is
not decided by rounding; scores s = softmax(logits), or sigmoid(logits) per expert (DeepSeek-V3, Liu et al.
2024, eq. 15); the token goes to its k best-scoring experts. Mixtral (Jiang et al. 2024) weighs the k outputs by
their scores renormalised to sum to 1 (the same as gpt-oss's softmax over the k chosen logits: exp(l_i) /
sum_chosen exp(l_j) either way); Switch (Fedus et al. 2022) routes top-1 and weighs by the raw probability;
DeepSeek multiplies the weights by routed_scaling_factor (router_scale); DBRX (Databricks 2024) divides them by
their p-norm, which for its p = 1 is Mixtral's renormalisation (router_renorm_p). Phi-3.5-MoE's SparseMixer (Liu et al.
2024, "GRIN: GRadient-INformed MoE", arXiv 2409.12136) chooses the k experts in turn, each the best remaining
logit, weighted by a softmax over the remaining logits within a relative 2 eps of it (the others masked):
its inference form. Its training samples the choice (Gumbel) and estimates the routing gradient by Heun's
third-order method; llmarch trains with the inference form's plain gradient, which that estimate refines. Gemma 4 (router_input_norm,
router_expert_scale) scores RMSNorm(h) * s * d^-1/2 without a gain of the norm's own, and multiplies the
renormalised weights by a learned scale of each chosen expert.
DeepSeek-V4 scores by sqrt(softplus(logits)) (router_scoring sqrtsoftplus), and its first router_hash_layers layers
choose each token's experts by a fixed table of its id (tid2eid, the checkpoint's), the scores only weighing them.
DeepSeek's refinements of the choice (not of the weights):
- group-limited routing (V2 §2.2.2 device-limited, V3 §2.1.2 node-limited): the experts form router_groups
  equal groups, each scored by its best expert's score (softmax, V2) or the sum of its best two (sigmoid, V3);
  a token chooses among the experts of its router_topk_groups best groups only;
- auxiliary-loss-free balancing (V3 §2.1.2, Wang et al. 2024): a per-expert bias b_e added to the scores for
  the choice only, the weights staying s; training nudges b_e by gamma * sign(mean load - load_e) after each
  batch (models/routing.py, update_expert_bias), so overloaded experts are chosen less; Kolibri-1 adds it to the
  logits instead (router_bias_on_logits), which ranks the experts otherwise than scores + b.
Inkling (router_shared_sink) scores its shared experts beside the routed ones, by sigmoid, and renormalises the chosen
and the shared experts' scores together, so the shared experts act as a sink of the routing weight; each shared
expert's output is weighted by its own; router_learned_scale multiplies every weight by a learned scalar.
Laguna soft-caps the logits, cap * tanh(l / cap) (router_softcap), before anything reads them.
An expert has a capacity per sequence; assignments past it are dropped in order (all first choices by
position, then second choices), their token passing through the residual alone.

Losses, both over a stack's MoE layers (each an add-on to the training loss with its own weight):
- load balancing (Switch eq. 4): n_experts * sum_e f_e * P_e, f_e the share of the token-choices that went
  to expert e, P_e the mean router probability of expert e; with scope "batch" f and P are over every token
  of every MoE layer (transformers' Mixtral), with scope "sequence" per sequence and then averaged (Switch).
- z-loss (ST-MoE, Zoph et al. 2022, eq. 5): the mean of logsumexp(logits)^2, which keeps logits small."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .hooks import HookPoint
from .norms import rms_normalize
from .router_mlp import MLPLogits
from .softcap import soft_cap


@dataclass
class Routing:
    """What one MoE layer decided in its last forward: kept for the losses and the training metrics."""

    logits: torch.Tensor  # (B, T, E) fp32 router logits
    experts: torch.Tensor  # (B, T, k) chosen experts, most probable first
    kept: torch.Tensor | None  # (B, T, k) bool: within capacity; None: no capacity limit (all kept)
    shared: torch.Tensor | None = None  # (B, T, S) the shared experts' weights (router_shared_sink); None: unweighted

    def load(self) -> torch.Tensor:
        """(E,) share of the kept token-choices each expert received."""
        E = self.logits.shape[-1]
        chosen = self.experts if self.kept is None else self.experts[self.kept]
        counts = torch.bincount(chosen.reshape(-1), minlength=E).float()
        return counts / counts.sum().clamp(min=1)

    def dropped(self) -> float:
        return 0.0 if self.kept is None else 1.0 - self.kept.float().mean().item()


class Router(nn.Module):
    def __init__(self, cfg, carries: bool = False, hashed: bool = False):
        """carries: with router_carry, this layer adds the previous mixture layer's router state (router_mlp.py);
        hashed: it chooses experts by the token ids' table (router_hash_layers)."""
        super().__init__()
        self.k, self.renormalize, self.jitter = cfg.experts_per_token, cfg.router_renormalize, cfg.router_jitter
        self.n_experts, self.capacity_factor = cfg.n_experts, cfg.capacity_factor
        self.fixed_capacity = cfg.expert_capacity
        # LongCat-Flash's zero experts and ZAYA1's skip experts are chosen as the others
        choices = cfg.n_experts + cfg.zero_experts + cfg.skip_experts
        # Inkling: the shared experts' logits after the routed ones', never chosen, always weighed
        self.sink = cfg.n_shared_experts if cfg.router_shared_sink else 0
        if cfg.router_mlp:  # ZAYA1: logits from an MLP (router_mlp.py)
            self.mlp = MLPLogits(cfg, choices, carries)
        else:
            self.weight = nn.Parameter(torch.empty(choices + self.sink, cfg.d_model))
        # Inkling's gate.global_scale: every weight, routed and shared, times a learned scalar
        self.gain = nn.Parameter(torch.ones(1)) if cfg.router_learned_scale else None
        self.bias = nn.Parameter(torch.empty(choices)) if cfg.router_bias else None  # gpt-oss
        # Gemma 4: the router's input RMS-normalised, times a gain per channel and d^-1/2; the renormalised weights
        # times a scale per expert
        self.input_scale = nn.Parameter(torch.ones(cfg.d_model)) if cfg.router_input_norm else None
        self.expert_scale = nn.Parameter(torch.ones(choices)) if cfg.router_expert_scale else None
        self.eps = cfg.norm_eps
        self.sigmoid, self.scale = cfg.router_scoring == "sigmoid", cfg.router_scale
        self.sqrtsoftplus = cfg.router_scoring == "sqrtsoftplus"
        self.renorm_p = cfg.router_renorm_p
        self.sparsemixer = cfg.sparsemixer_eps if cfg.router_scoring == "sparsemixer" else None
        self.groups, self.topk_groups = cfg.router_groups, cfg.router_topk_groups
        self.softcap, self.bias_on_logits = cfg.router_softcap, cfg.router_bias_on_logits
        self.bias_update = cfg.expert_bias_update
        # a buffer, not a parameter: no gradient moves it, only the balancing rule (V3 §2.1.2)
        self.register_buffer("expert_bias", torch.zeros(choices) if cfg.expert_bias and not hashed else None)
        # hash routing (router_hash_layers, DeepSeek-V4): token id -> its k experts, a table of the checkpoint (here
        # at init a fixed spread, t * k + j mod E); a buffer, not a parameter: nothing trains it
        table = (torch.arange(cfg.vocab_size)[:, None] * self.k + torch.arange(self.k)) % cfg.n_experts
        self.register_buffer("tid2eid", table if hashed else None)
        self.hook_router_logits, self.hook_experts = HookPoint(), HookPoint()

    def capacity(self, T: int) -> int | None:
        """Assignments each expert takes per sequence of T tokens; None: unlimited."""
        if self.fixed_capacity is not None:
            return self.fixed_capacity
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * T * self.k / self.n_experts)

    def forward(self, x: torch.Tensor, ctx=None) -> tuple[torch.Tensor, Routing]:
        """x (B, T, C) -> weights (B, T, k) of the chosen experts (zero where dropped) and the Routing; ctx: the
        forward's context (AttentionContext), where router_carry keeps its state (ctx.carry) and a hash-routed
        layer's table reads the tokens (ctx.input_ids)."""
        mlp = self._modules.get("mlp")
        h = x.float() if mlp is None else mlp(x, None if ctx is None else ctx.carry).float()  # an MLP router's logits
        if self.input_scale is not None:
            h = rms_normalize(h, self.eps) * self.input_scale.float() * h.shape[-1] ** -0.5
        if self.training and self.jitter > 0:
            h = h * torch.empty_like(h).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        bias = None if self.bias is None else self.bias.float()
        if mlp is None:
            h = soft_cap(F.linear(h, self.weight.float(), bias), self.softcap)
        logits = self.hook_router_logits(h)  # (B, T, E): an MLP router's are its output
        sink = None
        if self.sink:  # the shared experts' logits: weighed beside the chosen ones', not chosen (sigmoid scores)
            logits, sink = logits[..., :-self.sink], logits[..., -self.sink:].sigmoid()
        if self.sqrtsoftplus:  # DeepSeek-V4
            scores = F.softplus(logits).sqrt()
        else:
            scores = logits.sigmoid() if self.sigmoid else logits.softmax(dim=-1)
        if self.tid2eid is not None:
            ids = None if ctx is None else ctx.input_ids
            if ids is None:
                raise LlmarchError("a hash-routed mixture layer (router_hash_layers) needs the token ids")
            experts = self.tid2eid[ids]  # (B, T, k)
            weights = scores.gather(-1, experts)
        elif self.sparsemixer is not None:
            weights, experts = sparsemixer(logits, self.sparsemixer, self.k)
        elif self.expert_bias is None and self.groups == 1:
            weights, experts = scores.topk(self.k, dim=-1)  # (B, T, k)
        else:
            experts = self.choose(logits if self.bias_on_logits else scores)
            weights = scores.gather(-1, experts)
        experts = self.hook_experts(experts)
        if self.renormalize and self.renorm_p != 1.0:  # DBRX: w / ||w||_p
            weights = weights / weights.norm(p=self.renorm_p, dim=-1, keepdim=True)
        elif self.renormalize:  # with a sink the chosen and the shared experts' scores sum to 1 together
            total = weights.sum(dim=-1, keepdim=True) + (0.0 if sink is None else sink.sum(dim=-1, keepdim=True))
            weights, sink = weights / total, None if sink is None else sink / total
        gain = self.scale if self.gain is None else self.scale * self.gain.float()
        if self.gain is not None or self.scale != 1.0:
            weights, sink = weights * gain, None if sink is None else sink * gain
        if self.expert_scale is not None:
            weights = weights * self.expert_scale.float()[experts]
        capacity = self.capacity(x.shape[1])
        kept = None
        if capacity is not None and capacity < x.shape[1] * self.k:
            kept = within_capacity(experts, self.n_experts, capacity)
            weights = weights * kept
        return weights, Routing(logits, experts, kept, sink)


    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """scores (B, T, E; the logits with router_bias_on_logits) -> the k chosen experts (B, T, k): by score plus
        the balancing bias, among the experts of the token's topk_groups best groups."""
        choice = scores if self.expert_bias is None else scores + self.expert_bias.float()
        if self.groups > 1:
            grouped = choice.unflatten(-1, (self.groups, -1))  # (B, T, G, E / G)
            group_score = grouped.topk(2, dim=-1).values.sum(-1) if self.sigmoid else grouped.amax(dim=-1)
            best = group_score.topk(self.topk_groups, dim=-1).indices  # (B, T, topk_groups)
            allowed = torch.zeros_like(group_score, dtype=torch.bool).scatter_(-1, best, True)
            choice = grouped.masked_fill(~allowed[..., None], float("-inf")).flatten(-2)
        return choice.topk(self.k, dim=-1).indices


def sparsemixer(logits: torch.Tensor, eps: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, T, E) -> (weights, experts) (B, T, k), SparseMixer's inference form (see the module docstring):
    choice j is the best logit m_j not yet chosen; its weight the softmax, at it, over the logits not yet chosen
    whose gap to it, (m_j - l) / max(|l|, m_j), is at most 2 eps."""
    weights, experts = [], []
    remaining = logits
    for _ in range(k):
        top, choice = remaining.max(dim=-1, keepdim=True)
        far = (top - logits) / logits.abs().clamp(min=top) > 2 * eps
        weights.append(remaining.masked_fill(far, float("-inf")).softmax(dim=-1).gather(-1, choice))
        experts.append(choice)
        remaining = remaining.scatter(-1, choice, float("-inf"))
    return torch.cat(weights, dim=-1), torch.cat(experts, dim=-1)


def within_capacity(experts: torch.Tensor, n_experts: int, capacity: int) -> torch.Tensor:
    """experts (B, T, k) -> bool (B, T, k): whether each assignment is among the first `capacity` its expert
    receives in its sequence, counting first choices in position order, then second choices, and so on."""
    B, T, k = experts.shape
    onehot = F.one_hot(experts.transpose(1, 2).reshape(B, k * T), n_experts)  # (B, k*T, E), choice-major
    rank = (onehot.cumsum(dim=1) * onehot).sum(dim=-1)  # 1-based arrival order at the chosen expert
    return (rank <= capacity).view(B, k, T).transpose(1, 2)


def load_balancing_loss(routings: list[Routing], scope: str = "batch", batch_mean=None) -> torch.Tensor:
    """Switch eq. 4 over the MoE layers of one stack (see the module docstring); routings non-empty.
    batch_mean: maps this process' batch means of f and P to the whole batch's when data-parallel processes
    each hold some of its rows (train/distributed.py), so the loss is the one-process loss; None: identity."""
    logits = torch.cat([r.logits for r in routings], dim=1)  # (B, L*T, E): layers side by side
    experts = torch.cat([r.experts for r in routings], dim=1)  # (B, L*T, k)
    E = logits.shape[-1]
    chosen = F.one_hot(experts, E).float().sum(dim=2)  # (B, L*T, E): choices of each token per expert
    probs = logits.softmax(dim=-1)
    if scope == "sequence":  # f and P per sequence; the loss averaged over sequences (linear in rows)
        return E * (chosen.mean(dim=1) * probs.mean(dim=1)).sum(dim=-1).mean()
    f, P = chosen.mean(dim=(0, 1)), probs.mean(dim=(0, 1))
    if batch_mean is not None:  # f . P is not linear in the rows: average each over all processes first
        f, P = batch_mean(f), batch_mean(P)
    return E * (f * P).sum()


def router_z_loss(routings: list[Routing]) -> torch.Tensor:
    """ST-MoE eq. 5: mean over tokens (and MoE layers) of logsumexp(router logits)^2."""
    return torch.cat([r.logits.logsumexp(dim=-1).flatten() for r in routings]).square().mean()
