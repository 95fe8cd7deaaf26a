"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): a frozen weight W plus a
trained low-rank update, h = x W^T + s * x A^T B^T, A (r, in), B (out, r), B = 0 at the start so the model is
unchanged until it trains; s = alpha / r (Hu et al. §4.1), or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023,
"A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", Theorem 3.2). Dropout acts on the adapter's
input only (as PEFT does). DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation", eq. 5):
W' = m * (W + s B A) / ||W + s B A||, the norm per output row, m a trained magnitude initialised to ||W||; the
norm is treated as a constant in backward (§4.3), as PEFT does.

llmarch fuses q|k|v into one `qkv_proj` and gate|up into `gate_up`, where Hugging Face (and so PEFT) keeps
separate matrices. One LoRA per output slice keeps both views: slice "q" of qkv_proj has its own A and B, which
are PEFT's q_proj adapter, and a slice left out (PEFT targeting q and v only) has none. An unfused linear has
one slice, "all". Shapes: N any leading dims, I in_features, O out_features, r rank."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRAUpdates(nn.Module):
    """The adapters of one layer, mixed into the layer's class (LoRALinear over nn.Linear here, quantized.py's over
    int4 and int8 weights): per adapted output slice lora_A[name] (r, I) and lora_B[name] (size, r), whose update
    is added to the output of the layer's own product (`base_forward`). `slices`: name -> (start row, rows)."""

    def add_adapters(self, slices: dict[str, tuple[int, int]], rank: int, alpha: float, dropout: float,
                     rslora: bool, per_slice: dict[str, tuple[int, float]] | None, device, dtype) -> None:
        """per_slice: slice -> (rank, alpha) where they differ from `rank` and `alpha` (PEFT's rank_pattern and
        alpha_pattern can give q_proj and v_proj, two slices of our qkv_proj, ranks of their own)."""
        self.slices = dict(slices)
        options = {n: (per_slice or {}).get(n, (rank, alpha)) for n in slices}
        self.ranks = {n: r for n, (r, _) in options.items()}
        self.alphas = {n: a for n, (_, a) in options.items()}
        self.scalings = {n: a / math.sqrt(r) if rslora else a / r for n, (r, a) in options.items()}
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterDict({n: nn.Parameter(torch.empty(self.ranks[n], self.in_features, device=device,
                                                                    dtype=dtype)) for n in slices})
        self.lora_B = nn.ParameterDict({n: nn.Parameter(torch.zeros(size, self.ranks[n], device=device, dtype=dtype))
                                        for n, (_, size) in slices.items()})
        for a in self.lora_A.values():  # PEFT's (and nn.Linear's) default init for A
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.lora_magnitude = None  # DoRA's trained magnitudes (LoRALinear only)
        self.merged, self.enabled = False, True

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta(self, name: str) -> torch.Tensor:
        """s B A for slice `name`, (size, I)."""
        return self.scalings[name] * (self.lora_B[name] @ self.lora_A[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_forward(x)  # (N, O)
        if self.merged or not self.enabled:
            return y
        h = self.lora_dropout(x)
        parts, at = [], 0
        for name, (start, size) in sorted(self.slices.items(), key=lambda item: item[1][0]):
            parts += [y[..., at:start]] if start > at else []
            parts.append(y[..., start:start + size] + self._slice_update(name, x, h, y[..., start:start + size]))
            at = start + size
        parts += [y[..., at:]] if at < self.out_features else []
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def _slice_update(self, name: str, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What slice `name` adds to its rows y of the base output: s h A^T B^T."""
        return (h @ self.lora_A[name].t()) @ self.lora_B[name].t() * self.scalings[name]


class LoRALinear(LoRAUpdates, nn.Linear):
    """An nn.Linear sharing the weight and bias Parameters of the one it replaces (state-dict names and ties of
    the base stay as they were) plus the adapters, and with DoRA lora_magnitude[name] (size,)."""

    @classmethod
    def wrap(cls, linear: nn.Linear, slices: dict[str, tuple[int, int]], rank: int, alpha: float,
             dropout: float = 0.0, rslora: bool = False, dora: bool = False,
             per_slice: dict[str, tuple[int, float]] | None = None) -> LoRALinear:
        w = linear.weight
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        new._forward_pre_hooks, new._forward_hooks = linear._forward_pre_hooks, linear._forward_hooks
        new.add_adapters(slices, rank, alpha, dropout, rslora, per_slice, w.device, w.dtype)
        if dora:
            with torch.no_grad():
                new.lora_magnitude = nn.ParameterDict({n: nn.Parameter(new._row_norm(n)) for n in slices})
        new._before_merge = {}  # slice -> its rows before merge, for an exact unmerge
        new.train(linear.training)
        return new

    def unwrap(self) -> nn.Linear:
        """The plain nn.Linear (same Parameters) without the adapters; a merged adapter stays in the weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight, linear.bias = self.weight, self.bias
        linear._forward_pre_hooks, linear._forward_hooks = self._forward_pre_hooks, self._forward_hooks
        return linear.train(self.training)

    def _row_norm(self, name: str) -> torch.Tensor:
        """||W + s B A|| per output row of slice `name`, (size,), with W unmerged."""
        start, size = self.slices[name]
        return (self.weight[start:start + size] + self.delta(name)).norm(dim=1)

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def _slice_update(self, name: str, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LoRA's update, or with DoRA
        (m / ||W + s B A|| - 1) * h W^T + m / ||W + s B A|| * s h A^T B^T, the base term recomputed from the
        dropped-out input when dropout is on (PEFT's DoraLinearLayer)."""
        lora = super()._slice_update(name, x, h, y)  # (N, size)
        if self.lora_magnitude is None:
            return lora
        start, size = self.slices[name]
        scale = self.lora_magnitude[name] / self._row_norm(name).detach()  # (size,)
        base = y - self.bias[start:start + size] if self.bias is not None else y
        if h is not x:
            base = F.linear(h, self.weight[start:start + size])
        return (scale - 1) * base + scale * lora

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """The weight with the adapters folded in, as a new tensor (the layer is left as it is)."""
        if self.merged:
            return self.weight.detach().clone()
        w = self.weight.detach().clone()
        for name, (start, size) in self.slices.items():
            rows = w[start:start + size]
            update = rows + self.delta(name).to(rows.dtype)
            if self.lora_magnitude is not None:
                update = (self.lora_magnitude[name] / self._row_norm(name))[:, None] * update
            rows.copy_(update)
        return w

    @torch.no_grad()
    def merge(self) -> None:
        """The weight becomes merged_weight(): forward then costs no more than the base layer's. The rows it
        replaces are kept (a copy of the adapted rows), so that `unmerge` restores them bit for bit; a merge
        for good is `remove_lora` after it, which drops them."""
        if self.merged:
            return
        merged = self.merged_weight()
        self._before_merge = {}
        for name, (start, size) in self.slices.items():
            self._before_merge[name] = self.weight[start:start + size].clone()
            self.weight[start:start + size] = merged[start:start + size]
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """The weight exactly as it was before `merge`."""
        if not self.merged:
            return
        for name, (start, size) in self.slices.items():
            self.weight[start:start + size] = self._before_merge[name]
        self._before_merge = {}
        self.merged = False

    def extra_repr(self) -> str:
        kind = "DoRA" if self.lora_magnitude is not None else "LoRA"
        return f"{super().extra_repr()}, {kind} ranks={self.ranks} scalings={self.scalings}"
