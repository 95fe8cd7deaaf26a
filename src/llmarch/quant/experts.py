"""A mixture of experts' stacked weights, quantized per expert: each expert's (rows, C) input and (C, I) down
projection becomes its own Int8Linear / Int4Linear, so expert e's scales are its own. Dispatch is
layers/moe.py's (assignments sorted by expert, one product pair per expert over its slice, index_add back);
under torch.compile every expert runs on every token weighted by its routing weight (static shapes)."""
from __future__ import annotations

import torch
from torch import nn

from ..layers.moe import Experts


class QuantExperts(Experts):
    """Experts whose `gate_up`/`up` and `down` are ModuleLists of quantized linears (state names
    `{in_name}.{e}.*`, `down.{e}.*`); the biases stay stacked Parameters as in Experts."""

    def __init__(self, experts: Experts, make_linear, fitted: tuple | None = None):
        """make_linear(weight, bias, fitted, part) -> the quantized linear, part its name here (`down.3`).
        fitted: a calibrated method's ([per expert, what it fitted for the input projection, or None], [...
        for the down projection]) (quant/gptq.py fit); None: round-to-nearest throughout."""
        nn.Module.__init__(self)
        self.gated, self.act, self.in_name = experts.gated, experts.act, experts.in_name
        self.input_weighted = experts.input_weighted  # Llama 4's E(w x) (layers/moe.py)
        self.n_experts = experts.down.shape[0]
        fit_in, fit_down = fitted or ([None] * self.n_experts, [None] * self.n_experts)
        self.register_module(self.in_name, nn.ModuleList(make_linear(w, None, f, f"{self.in_name}.{e}")
                                                         for e, (w, f) in enumerate(zip(experts.w_in.unbind(0),
                                                                                        fit_in))))
        self.down = nn.ModuleList(make_linear(w, None, f, f"down.{e}")
                                  for e, (w, f) in enumerate(zip(experts.down.unbind(0), fit_down)))
        self.in_bias, self.down_bias = experts.in_bias, experts.down_bias

    def forward(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """x (N, C), weights and experts (N, k) -> (N, C), as Experts.forward."""
        N, k = experts.shape
        if torch.compiler.is_compiling():
            return self.all_experts(x, weights, experts)
        flat = experts.reshape(-1)
        order = flat.argsort(stable=True)
        tokens = order // k
        counts = torch.bincount(flat, minlength=self.n_experts + 1)[:self.n_experts]
        w = weights.reshape(-1)[order, None].to(x.dtype)
        if self.input_weighted:
            return torch.zeros_like(x).index_add_(0, tokens, self.looped(x[tokens] * w, counts))
        return torch.zeros_like(x).index_add_(0, tokens, self.looped(x[tokens], counts) * w)

    def _expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        h = self.w_in[e](x)
        if self.in_bias is not None:
            h = h + self.in_bias[e].to(h.dtype)
        y = self.down[e](self._hidden(h))
        return y if self.down_bias is None else y + self.down_bias[e].to(y.dtype)

    def looped(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        pieces, start = [], 0
        for e, n in enumerate(counts.tolist()):
            if n:
                pieces.append(self._expert(e, xs[start:start + n]))
                start += n
        pieces.append(xs.new_zeros(xs.shape[0] - start, xs.shape[1]))  # dropped assignments
        return torch.cat(pieces)

    def all_experts(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        combine = x.new_zeros(x.shape[0], self.n_experts + 1).scatter_add_(1, experts, weights.to(x.dtype))
        chosen = x.new_zeros(x.shape[0], self.n_experts + 1).scatter_(1, experts, 1.0)
        y = torch.zeros_like(x)
        for e in range(self.n_experts):
            w = combine[:, e:e + 1]
            y = y + (chosen[:, e:e + 1] * self._expert(e, x * w) if self.input_weighted else w * self._expert(e, x))
        return y
