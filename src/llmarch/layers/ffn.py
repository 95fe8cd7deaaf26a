"""Position-wise feed-forward networks: MLP (Vaswani et al. 2017, eq. 2) and gated GLU variants (Shazeer 2020, "GLU
Variants Improve Transformer": SwiGLU and GeGLU, eqs. 5-6; BitNet b1.58's squared-ReLU gate), gpt-oss's clamped
SwiGLU and DeepSeek-V4's limited one. A gated kind is its gate function (gate, up) -> hidden, which the experts of
moe.py share. With sub_norm an MLP or GLU normalises its hidden activations before the down projection (BitNet's
ffn_sub_norm: the SubLN of Wang et al. 2022, "Foundation Transformers", §2)."""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .grouped_linear import linear
from .linear import Linear
from .norms import make_norm

FFNS: Registry = Registry("ffn")

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,
    "silu": F.silu,
    "relu2": lambda x: F.relu(x).square(),  # squared ReLU (So et al. 2021, "Primer", §3.2): Arcee, Nemotron
    # x * sigmoid(1.702 x), the sigmoid approximation of GELU (Hendrycks & Gimpel 2016, §2): CLIP's vision tower
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


class MLP(nn.Module):
    """FFN(x) = act(x W_up + b) W_down + b; in_bias: up's bias, where it differs from down's (None: = bias)."""

    residual_out = ("down.weight",)  # writes to the residual stream (GPT-2 scaled init, models/stack.py)

    def __init__(self, dim: int, hidden: int, act: str, bias: bool, sub_norm: nn.Module | None = None,
                 in_bias: bool | None = None, groups: int = 1):
        super().__init__()
        self.act = ACTIVATIONS[act]
        # groups > 1: grouped projections (SqueezeBERT's ffn_groups; layers/grouped_linear.py)
        self.up = linear(dim, hidden, bias if in_bias is None else in_bias, groups)
        self.down = linear(hidden, dim, bias, groups)
        self.sub_norm = sub_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sub = self._modules  # not nn.Module's attribute fallback, at every layer of every decoded token
        h = self.act(sub["up"](x))
        return sub["down"](h if sub.get("sub_norm") is None else sub["sub_norm"](h))


def act_gate(gate: torch.Tensor, up: torch.Tensor, act: Callable) -> torch.Tensor:
    """act(x W_gate) * x W_up (Shazeer 2020, eqs. 5-6)."""
    return act(gate) * up


def clamped_swiglu(gate: torch.Tensor, up: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """gpt-oss's SwiGLU (OpenAI 2025, gpt-oss model card §2.1): the gate clamped from above and the up
    projection on both sides at `limit`, a sigmoid of gain alpha (x * sigmoid(1.702 x) is the sigmoid
    approximation of GELU, Hendrycks & Gimpel 2016), and 1 added to the up projection:
    (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g), g = min(gate, limit)."""
    gate = gate.clamp(max=limit)
    return (up.clamp(-limit, limit) + 1) * gate * torch.sigmoid(alpha * gate)


def limited_swiglu(gate: torch.Tensor, up: torch.Tensor, limit: float) -> torch.Tensor:
    """DeepSeek-V4's SwiGLU (DeepSeek-AI 2026, DeepSeek-V4 report; transformers' DeepseekV4MLP): the gate clamped
    from above and the up projection on both sides at `limit`, then the plain SwiGLU, silu(min(gate, limit)) *
    clamp(up, -limit, limit) (no sigmoid gain or +1 as gpt-oss's)."""
    return F.silu(gate.clamp(max=limit)) * up.clamp(-limit, limit)


def softcapped_swiglu(gate: torch.Tensor, up: torch.Tensor, gate_cap: float, up_cap: float) -> torch.Tensor:
    """Inkling 2's experts' SwiGLU (transformers' Inkling2SoftcappedSwiGLU): the sigmoid reads the raw gate, soft caps
    bound the linear gate factor and up, c_g tanh(g / c_g) sigmoid(g) * c_u tanh(u / c_u), in fp32."""
    g, u = gate.float(), up.float()
    return (torch.tanh(g / gate_cap) * gate_cap * torch.sigmoid(g) * torch.tanh(u / up_cap) * up_cap).to(gate.dtype)


def clipped_swiglu(gate: torch.Tensor, up: torch.Tensor, limit: float) -> torch.Tensor:
    """Step 3.7's SwiGLU (transformers' Step3p7MLP and Step3p7Experts, limit_after_act): the activated gate clamped
    from above and the up projection on both sides at `limit`, min(silu(gate), limit) * clamp(up, -limit, limit); the
    clamp after the activation, where DeepSeek-V4's (limited_swiglu) clamps before it."""
    return F.silu(gate).clamp(max=limit) * up.clamp(-limit, limit)


class GLU(nn.Module):
    """FFN(x) = gate(x W_gate, x W_up) W_down: act(x W_gate) * x W_up, act = SiLU giving SwiGLU, GELU GeGLU, or
    gpt-oss's clamped SwiGLU. W_gate and W_up are one fused matmul, `gate_up` (rows: gate, then up).
    gate_scale and out_scale (Falcon-H1's muP mlp_multipliers; Yang et al. 2022, "Tensor Programs V"): constants
    on the gate's pre-activation and on the output, m_out * gate(m_gate x W_gate, x W_up) W_down, kept out of the
    weights so that training updates the weights as the checkpoint's authors did; None: no multiply at all.
    sparsity s (Gemma 3n's activation sparsity, ffn_sparsity): the gate's pre-activations through gaussian_top_k.
    in_bias: gate_up's bias, where it differs from down's (None: = bias; GTE: gate and up without, down with).
    learned_scale: the output times a learned scalar, `gain` (Inkling's global_scale: ffn_learned_scale)."""

    residual_out = ("down.weight",)

    def __init__(self, dim: int, hidden: int, bias: bool, gate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 gate_scale: float | None = None, out_scale: float | None = None, sparsity: float = 0.0,
                 sub_norm: nn.Module | None = None, in_bias: bool | None = None, learned_scale: bool = False):
        super().__init__()
        self.gate = gate
        self.gain = nn.Parameter(torch.ones(1)) if learned_scale else None
        # Phi^-1(s) in fp32, as transformers takes it from torch.distributions' Normal(0, 1).icdf
        s = torch.tensor(sparsity, dtype=torch.float32, device="cpu")  # a constant, whatever device builds it
        self.cutoff = (torch.erfinv(2 * s - 1) * math.sqrt(2)).item() if sparsity else None
        self.gate_up = Linear(dim, 2 * hidden, bias=bias if in_bias is None else in_bias)
        self.down = Linear(hidden, dim, bias=bias)
        self.sub_norm = sub_norm
        self.fused_rows = {"gate_up": [hidden, hidden]}  # two matrices in a checkpoint (BitLinear scales each)
        self.gate_scale, self.out_scale = gate_scale, out_scale

    def forward(self, x: torch.Tensor, gate_up_delta: torch.Tensor | None = None,
                hidden_gain: torch.Tensor | None = None) -> torch.Tensor:
        """gate_up_delta: added to gate_up's output (a shared block's per-layer adapter: layers/shared_block.py);
        hidden_gain (B, T, hidden): the hidden activations times it (shared experts weighted by the router: moe.py)."""
        sub = self._modules
        gate_up = sub["gate_up"](x)
        if gate_up_delta is not None:
            gate_up = gate_up + gate_up_delta
        gate, up = gate_up.chunk(2, dim=-1)
        if self.gate_scale is not None:
            gate = gate * self.gate_scale
        if self.cutoff is not None:
            gate = gaussian_top_k(gate, self.cutoff)
        h = self.gate(gate, up)
        if hidden_gain is not None:
            h = h * hidden_gain.to(h.dtype)
        y = sub["down"](h if sub.get("sub_norm") is None else sub["sub_norm"](h))
        y = y if self.out_scale is None else y * self.out_scale
        return y if self.gain is None else y * self.gain


def gaussian_top_k(g: torch.Tensor, z: float) -> torch.Tensor:
    """relu(g - (mean(g) + std(g) * z)) over the last dim: what exceeds the z-quantile of a Gaussian fitted to each
    token's gate pre-activations (Gemma 3n's _gaussian_topk; z = Phi^-1(s) keeps about 1 - s of them, a top-k
    without the sort). std is the population one (unbiased=False), as transformers computes it."""
    mean, std = g.mean(-1, keepdim=True), g.std(-1, keepdim=True, unbiased=False)
    return F.relu(g - (mean + std * z))


# the gated kinds: name -> (the config fields it reads, as keywords) -> its gate function (gate, up) -> hidden
GATES: dict[str, Callable[..., Callable]] = {
    "swiglu": lambda: partial(act_gate, act=ACTIVATIONS["silu"]),
    "geglu": lambda: partial(act_gate, act=ACTIVATIONS["gelu"]),
    "geglu_tanh": lambda: partial(act_gate, act=ACTIVATIONS["gelu_tanh"]),
    # relu(x W_gate)^2 * x W_up: BitNet b1.58's FFN (Ma et al. 2024, "The Era of 1-bit LLMs"; hidden_act relu2)
    "relu2_glu": lambda: partial(act_gate, act=ACTIVATIONS["relu2"]),
    # relu(x W_gate) * x W_up: ReGLU (Shazeer 2020, "GLU Variants Improve Transformer", eq. 5; SmallThinker's experts)
    "reglu": lambda: partial(act_gate, act=ACTIVATIONS["relu"]),
    "swiglu_clamped": lambda swiglu_alpha=1.702, swiglu_limit=7.0: partial(clamped_swiglu, alpha=swiglu_alpha,
                                                                            limit=swiglu_limit),
    "swiglu_limited": lambda swiglu_limit=10.0: partial(limited_swiglu, limit=swiglu_limit),
    "swiglu_clipped": lambda swiglu_limit=7.0: partial(clipped_swiglu, limit=swiglu_limit),
    "swiglu_softcapped": lambda swiglu_gate_cap=4.0, swiglu_up_cap=25.0: partial(
        softcapped_swiglu, gate_cap=swiglu_gate_cap, up_cap=swiglu_up_cap),
}
GATED = tuple(GATES)
# the config fields a kind reads
FFN_FIELDS = {"swiglu_clamped": ("swiglu_alpha", "swiglu_limit"), "swiglu_limited": ("swiglu_limit",),
              "swiglu_clipped": ("swiglu_limit",), "swiglu_softcapped": ("swiglu_gate_cap", "swiglu_up_cap")}
FFN_ACTIVATION: dict[str, str] = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh",
                                  "relu2_glu": "relu2", "reglu": "relu", "swiglu_clamped": "silu",
                                  "swiglu_limited": "silu", "swiglu_clipped": "silu",
                                  "swiglu_softcapped": "silu"}  # ffn name -> its activation
for _name in ("gelu", "gelu_tanh", "relu", "relu2", "silu", "quick_gelu"):
    FFNS.register(_name)(partial(MLP, act=_name))
    FFN_ACTIVATION[_name] = _name


def _glu(dim: int, hidden: int, bias: bool, kind: str, gate_scale: float | None = None,
         out_scale: float | None = None, sparsity: float = 0.0, sub_norm: nn.Module | None = None,
         in_bias: bool | None = None, learned_scale: bool = False, **options) -> GLU:
    return GLU(dim, hidden, bias, GATES[kind](**options), gate_scale, out_scale, sparsity, sub_norm, in_bias,
               learned_scale)


for _name in GATES:
    FFNS.register(_name)(partial(_glu, kind=_name))


def ffn_options(cfg, kind: str | None = None) -> dict:
    """The config fields the FFN kind (default: the configured one) reads, as keyword arguments of its constructor."""
    return {name: getattr(cfg, name) for name in FFN_FIELDS.get(kind or cfg.ffn, ())}


def gate_function(cfg) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The experts' gated kind's (gate, up) -> hidden (expert_ffn, else ffn), for stacked experts (moe.py)."""
    kind = cfg.expert_ffn or cfg.ffn
    options = ffn_options(cfg, kind)
    if cfg.expert_swiglu_limit is not None and "swiglu_limit" in options:  # the experts' own bound (Step 3.7)
        options["swiglu_limit"] = cfg.expert_swiglu_limit
    return GATES[kind](**options)


def dense_ffn(cfg, hidden: int, learned_scale: bool = False) -> nn.Module | None:
    """An FFN of the configured kind and this hidden width (a gated one with its muP multipliers, where set);
    learned_scale: its output times a learned scalar (a block's dense FFN with ffn_learned_scale)."""
    scales = {name: value for name, value in (("gate_scale", cfg.ffn_gate_multiplier),
                                              ("out_scale", cfg.ffn_out_multiplier)) if value != 1.0}
    if cfg.ffn_sparsity:
        scales["sparsity"] = cfg.ffn_sparsity
    if cfg.sub_norm:  # BitNet's ffn_sub_norm over the hidden activations
        scales["sub_norm"] = make_norm(cfg, hidden)
    if cfg.ffn_in_bias != cfg.bias:  # the kinds that take it (MLP, GLU); others are refused by check_ffn
        scales["in_bias"] = cfg.ffn_in_bias
    if cfg.ffn_groups != 1:  # a plain MLP's (check_ffn)
        scales["groups"] = cfg.ffn_groups
    if learned_scale:  # gated kinds only (check_ffn)
        scales["learned_scale"] = True
    return FFNS[cfg.ffn](cfg.d_model, hidden, bias=cfg.bias, **ffn_options(cfg), **scales)


def check_ffn(cfg) -> None:
    if cfg.ffn_in_bias != cfg.bias and (cfg.ffn not in FFN_ACTIVATION or cfg.n_experts):
        raise LlmarchError(f"ffn_in_bias={cfg.ffn_in_bias} differing from bias={cfg.bias} needs a dense MLP or gated "
                           f"FFN, not ffn={cfg.ffn!r} with n_experts={cfg.n_experts}")
    if cfg.ffn == "xielu" and (cfg.n_experts or cfg.head_transform or cfg.ple_dim):
        raise LlmarchError("ffn='xielu' holds its learned activation in each dense MLP: not for experts, a head "
                           "transform or per-layer embeddings")
    if (cfg.ffn_gate_multiplier, cfg.ffn_out_multiplier) != (1.0, 1.0) and (cfg.ffn not in GATES or cfg.n_experts):
        raise LlmarchError(f"ffn_gate_multiplier and ffn_out_multiplier scale a gated dense FFN ({', '.join(GATES)}), "
                           f"not ffn={cfg.ffn!r} with n_experts={cfg.n_experts}")
    if cfg.ffn_sparsity and not (0.0 < cfg.ffn_sparsity < 1.0 and cfg.ffn in GATES and not cfg.n_experts):
        raise LlmarchError(f"ffn_sparsity={cfg.ffn_sparsity} must be in [0, 1), on a gated dense FFN "
                           f"({', '.join(GATES)}), not ffn={cfg.ffn!r} with n_experts={cfg.n_experts}")
    if cfg.sub_norm and (cfg.n_experts or cfg.ffn not in (*GATES, "gelu", "gelu_tanh", "relu", "relu2", "silu")):
        raise LlmarchError(f"sub_norm normalises a dense MLP's or GLU's hidden activations, not ffn={cfg.ffn!r} "
                           f"with n_experts={cfg.n_experts}")
    hidden = cfg.ffn_hidden or 4 * cfg.d_model
    if cfg.ffn_groups != 1 and (cfg.ffn_groups <= 0 or cfg.ffn not in FFN_ACTIVATION or cfg.ffn in GATES
                                or cfg.n_experts or cfg.sub_norm or cfg.d_model % cfg.ffn_groups
                                or hidden % cfg.ffn_groups or cfg.bitlinear != "none"):
        raise LlmarchError(f"ffn_groups={cfg.ffn_groups} groups a dense ungated MLP's projections: it must divide "
                           "d_model and ffn_hidden (no experts, sub_norm or BitLinear)")
    if cfg.ffn_learned_scale and cfg.ffn not in GATES:
        raise LlmarchError(f"ffn_learned_scale scales a gated dense FFN ({', '.join(GATES)}), not ffn={cfg.ffn!r}")
    if cfg.expert_swiglu_limit is not None and (cfg.expert_swiglu_limit <= 0 or not cfg.n_experts
                                                or "swiglu_limit" not in FFN_FIELDS.get(cfg.expert_ffn or cfg.ffn, ())):
        raise LlmarchError(f"expert_swiglu_limit={cfg.expert_swiglu_limit} bounds the experts of a clamped kind "
                           f"(expert_ffn or ffn reading swiglu_limit), for n_experts > 0, and must be positive")
    if cfg.swiglu_gate_cap <= 0 or cfg.swiglu_up_cap <= 0:
        raise LlmarchError(f"swiglu_gate_cap and swiglu_up_cap must be positive, got {cfg.swiglu_gate_cap} and "
                           f"{cfg.swiglu_up_cap}")
    if cfg.swiglu_limit <= 0 or cfg.swiglu_alpha <= 0:
        raise LlmarchError(f"swiglu_limit and swiglu_alpha must be positive, got {cfg.swiglu_limit} and "
                           f"{cfg.swiglu_alpha}")


class XIELU(nn.Module):
    """xIELU (Huang 2024, "Deriving Activation Functions Using Integration", arXiv 2411.13010, eq. 7), Apertus's
    activation: alpha_p x^2 + beta x for x > 0, alpha_n (expm1(min(x, eps)) - x) + beta x otherwise, with
    alpha_p = softplus(a_p) and alpha_n = beta + softplus(a_n) learned per layer (init 0.8 each) and beta 0.5."""

    def __init__(self, alpha_p: float = 0.8, alpha_n: float = 0.8, beta: float = 0.5, eps: float = -1e-6):
        super().__init__()
        self.inits = (alpha_p, alpha_n - beta)
        self.alpha_p, self.alpha_n = nn.Parameter(torch.empty(1)), nn.Parameter(torch.empty(1))
        self.register_buffer("beta", torch.tensor(beta))
        self.register_buffer("eps", torch.tensor(eps))
        self.init_ssm()

    @torch.no_grad()
    def init_ssm(self) -> None:
        """The module's own initial values (the hook models/init.init_weights calls after its generic pass,
        which would make these 1-D parameters ones): softplus^-1 of alpha_p and of alpha_n - beta."""
        for p, value in zip((self.alpha_p, self.alpha_n), self.inits):
            if p.device.type != "meta":
                p.fill_(math.log(math.expm1(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha_p, alpha_n = F.softplus(self.alpha_p), self.beta + F.softplus(self.alpha_n)
        return torch.where(x > 0, alpha_p * x * x + self.beta * x,
                           (torch.expm1(torch.minimum(x, self.eps)) - x) * alpha_n + self.beta * x)


class XIELUMLP(MLP):
    """MLP with xIELU (Apertus): its learned scalars under `act_fn`, as transformers names them."""

    def __init__(self, dim: int, hidden: int, bias: bool):
        super().__init__(dim, hidden, "relu", bias)
        del self.act
        self.act_fn = XIELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sub = self._modules
        return sub["down"](sub["act_fn"](sub["up"](x)))


FFNS.register("xielu")(XIELUMLP)
FFNS.register("none")(lambda dim, hidden, bias: None)  # no FFN: the block is its mixer alone (Mamba)
