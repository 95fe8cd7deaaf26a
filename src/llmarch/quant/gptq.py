"""GPTQ (Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", Algorithm 1): int4 in groups, in rtn.py's format (W ~ (q - 8) s + zero), or int8 with one scale
per output channel (W ~ s q, int8_gptq), each layer's columns quantized in order while the error of each is
spread over the columns not yet quantized, weighted by the inverse Hessian of the layer's reconstruction error
||X W^T - X W_q^T||^2, H = 2 X^T X over calibration tokens.

Per layer: H dampened by 1% of its mean diagonal (§4 "Cholesky reformulation"), the upper Cholesky factor U of
H^-1 (H^-1 = U^T U), then for column j: q_j = quant(w_j), e = (w_j - q_j) / U_jj, w_{j+1:} -= e U_{j, j+1:};
updates stay inside a block of 128 columns and reach the later columns once per block ("lazy batch updates").
Act-order (the reference implementation's `act_order` with `static_groups`): columns are quantized in
decreasing H_jj, the inputs that carry most energy first while the most columns remain to absorb their error;
so that groups stay contiguous (the int4 kernel's layout, with no permutation index), every group's range is
fitted before any column moves, on the layer's original weights. Without act-order (`act_order=False`), a
group's range is fitted when the quantizer reaches its first column (the paper's grouping). Either way the range
is min..max shrunk by the factor of least error (the reference's `mse` option, group_range). On SmolLM2-135M at
G 64 (docs/benchmarks.md) the perplexity was 11.48 plain, 11.37 with the fitted ranges, 10.71 with act-order.

Over a model, blocks are quantized one after another: block i's calibration inputs come out of blocks 0..i-1
already quantized (the reference implementation's sequential order), so each block compensates the error the
earlier ones made. A block's linear layers all see the block's inputs through the unquantized block, in one
forward pass; the LM head sees the final norm's output. A mixture's experts are fitted one by one, each on
the tokens the router sent it in that pass: its input projection on those tokens, its down projection on their
hidden activations (an expert that saw no calibration token keeps round-to-nearest)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError

DAMP = 0.01  # of the mean diagonal of H, added to its diagonal (the paper's lambda)
BLOCK = 128  # columns per lazy batch update
SHRINKS = [1 - 0.025 * i for i in range(20)]  # candidate ranges for a group, as fractions of its min..max
SEQUENCE = 512  # calibration tokens per sequence (the model's context length if shorter)
BATCH = 8  # calibration sequences per forward pass


@torch.no_grad()
def int4_gptq(w: torch.Tensor, H: torch.Tensor, group_size: int,
              act_order: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (N, K), H (K, K) = X^T X of the layer's inputs (any positive scale) -> codes uint8 (N, K) in [0, 15],
    scales and zeros fp32 (N, K / G), as rtn.int4_rtn gives them. act_order: columns in decreasing H_jj, with
    every group's range fitted beforehand on the unchanged weights (the reference's static groups), so the
    groups stay contiguous."""
    N, K = w.shape
    w = w.float().masked_fill(H.diagonal() == 0, 0)  # _solve's dead columns, zero before any range is fitted
    scales = torch.empty(N, K // group_size)
    lows = torch.empty(N, K // group_size)
    if act_order:
        for g in range(K // group_size):
            lows[:, g], scales[:, g] = group_range(w[:, g * group_size:(g + 1) * group_size])

    def column(j: int, Wb: torch.Tensor, i: int) -> torch.Tensor:
        if not act_order and j % group_size == 0:
            lows[:, j // group_size], scales[:, j // group_size] = group_range(Wb[:, i:i + group_size])
        lo, s = lows[:, j // group_size], scales[:, j // group_size]
        return ((Wb[:, i] - lo) / s).round().clamp(0, 15), lo, s

    codes = _solve(w, H, column, act_order, max(BLOCK, group_size))  # a group starts and ends in one block
    return codes.to(torch.uint8), scales, lows + 8 * scales


@torch.no_grad()
def int8_gptq(w: torch.Tensor, H: torch.Tensor, scale_dtype: torch.dtype = torch.float32,
              act_order: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """w (N, K), H (K, K) -> codes int8 (N, K) in [-127, 127] and scales (N,) in `scale_dtype`, rtn.int8_rtn's
    format (W ~ s q, symmetric, one scale per output channel, as the int8 kernel takes it). Each row's scale is
    fixed before any column moves (rtn.int8_scales, on the unchanged weights), so act-order needs no static
    groups: the whole row is one group. The scale is rounded to the dtype the kernel multiplies by before any
    code is chosen: each column's error, which the later columns absorb, must be the one the layer will make."""
    from .rtn import int8_scales

    scales = int8_scales(w.float().masked_fill(H.diagonal() == 0, 0), scale_dtype)
    s = scales.float()
    zero = torch.zeros_like(s)

    def column(j: int, Wb: torch.Tensor, i: int) -> torch.Tensor:
        return (Wb[:, i] / s).round().clamp(-127, 127), zero, s

    return _solve(w, H, column, act_order, BLOCK).to(torch.int8), scales


def _solve(w: torch.Tensor, H: torch.Tensor, column, act_order: bool, block: int) -> torch.Tensor:
    """Algorithm 1 over w (N, K) with the Hessian H (K, K): column(j, Wb, i) quantizes column j of w, found at
    column i of the current block Wb (N, block), to codes q (N,), lowest values lo and steps s with
    w_q = lo + q s; returns the codes (N, K) as floats, in w's column order."""
    W = w.float().clone()
    N, K = W.shape
    H = H.double().clone()
    dead = H.diagonal() == 0  # an input that is always zero: its column cannot matter, so it is quantized as 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H.diagonal().add_(DAMP * H.diagonal().mean())
    codes = torch.empty(N, K)
    order = list(range(K))
    if act_order:
        perm = H.diagonal().argsort(descending=True)
        W, H, order = W[:, perm], H[perm][:, perm], perm.tolist()
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
    for b0 in range(0, K, block):
        b1 = min(b0 + block, K)
        Wb, Ub, E = W[:, b0:b1].clone(), U[b0:b1, b0:b1], torch.empty(N, b1 - b0)
        for i in range(b1 - b0):
            j = order[b0 + i]  # the column's place in w
            q, lo, s = column(j, Wb, i)
            codes[:, j] = q
            E[:, i] = (Wb[:, i] - (lo + q * s)) / Ub[i, i]
            Wb[:, i:] -= E[:, i:i + 1] * Ub[i:i + 1, i:]  # column i's error spread over the block's later columns
        W[:, b1:] -= E @ U[b0:b1, b1:]  # the block's errors reach the columns after it at once
    return codes


def group_range(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g (N, G) -> each row's lowest code value and step (N,): the range [min, max] shrunk towards its middle by
    the factor (of SHRINKS) whose round-to-nearest error sum |w - w_q|^2.4 is least (the reference
    implementation's `mse` option: clipping a few outlying weights buys a finer grid for the rest)."""
    lo0, hi0 = g.amin(dim=1), g.amax(dim=1)
    mid, half = (hi0 + lo0) / 2, (hi0 - lo0) / 2
    best = torch.full_like(lo0, float("inf"))
    lo_best, s_best = lo0, ((hi0 - lo0) / 15).clamp(min=1e-12)
    for p in SHRINKS:
        lo, s = mid - p * half, (2 * p * half / 15).clamp(min=1e-12)
        q = ((g - lo[:, None]) / s[:, None]).round().clamp(0, 15)
        err = (g - lo[:, None] - q * s[:, None]).abs().pow(2.4).sum(dim=1)
        better = err < best
        best, lo_best, s_best = torch.where(better, err, best), torch.where(better, lo, lo_best), \
            torch.where(better, s, s_best)
    return lo_best, s_best


def calibration_ids(tok, tokens: int, context_length: int, seed: int = 0) -> torch.Tensor:
    """(S, T) token ids: `tokens` // T windows of T = min(512, context_length, tokens) tokens drawn at random
    from the TRAINING split of the embedded corpus (never the held-out split perplexity is measured on)."""
    from ..data.dataset import load_data

    if tokens < 1:
        raise LlmarchError(f"calibration tokens must be at least 1, got {tokens}")
    T = min(SEQUENCE, context_length, tokens)
    arr = load_data(None, tok).train
    if len(arr) < tokens:
        raise LlmarchError(f"the corpus's training split has {len(arr)} tokens, fewer than the {tokens} "
                           "calibration tokens asked for")
    starts = torch.randint(0, len(arr) - T + 1, (tokens // T,), generator=torch.Generator().manual_seed(seed))
    return torch.stack([torch.as_tensor(arr[s:s + T].astype("int64")) for s in starts.tolist()])


class _Recorder(nn.Module):
    """Stands in for a block during one forward pass: records what the block would receive, returns x."""

    def __init__(self, block: nn.Module, calls: list):
        super().__init__()
        self.seq_mixer, self.calls = block.seq_mixer, calls  # the stack reads its blocks' mixers' caches

    def forward(self, x: torch.Tensor, ctx):
        self.calls.append((x, ctx))
        return x


@contextmanager
def _recording(model: nn.Module):
    """The model's blocks swapped for recorders (and restored after): a forward pass then costs the embeddings
    and the final norm, and leaves each block's context and block 0's input."""
    blocks = list(model.blocks)
    calls = [[] for _ in blocks]
    for i, c in enumerate(calls):
        model.blocks[i] = _Recorder(blocks[i], c)
    try:
        yield calls
    finally:
        for i, block in enumerate(blocks):
            model.blocks[i] = block


def _hessians(linears: dict[str, nn.Linear], moes: dict, run) -> tuple[dict, dict]:
    """X^T X of each linear's inputs over everything `run()` feeds them; and for each mixture's experts
    (layers/moe.py Experts), per expert e, ([X_e^T X_e of its input projection], [the same of its down
    projection]), X_e the tokens routed to e (None where none was)."""
    H = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for name, m in linears.items()}
    HE = {name: ([None] * m.down.shape[0], [None] * m.down.shape[0]) for name, m in moes.items()}

    def hook(name):
        def fn(module, args, output):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            H[name] += (x.T @ x).double()
        return fn

    def expert_hook(name):
        def fn(module, args, output):
            x, _, experts = args  # (N, C), routing weights, (N, k) expert ids (E: dropped)
            for e, (h_in, h_down) in enumerate(zip(*HE[name])):
                xe = x[(experts == e).any(-1)].float()
                if not len(xe):
                    continue
                bias = None if module.in_bias is None else module.in_bias[e].float()
                he = module._hidden(F.linear(xe, module.w_in[e].float(), bias))
                HE[name][0][e] = (0 if h_in is None else h_in) + (xe.T @ xe).double()
                HE[name][1][e] = (0 if h_down is None else h_down) + (he.T @ he).double()
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in linears.items()]
    handles += [m.register_forward_hook(expert_hook(name)) for name, m in moes.items()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return H, HE


def solver(scheme):
    """The scheme's GPTQ: a function (w (N, K), H (K, K)) -> (what the layer is built from: int4 codes, scales
    and zeros, or int8 codes and scales; the weight they stand for, (N, K) fp32)."""
    from .rtn import int4_dequantize

    if scheme.int4:
        def solve(w, H):
            fitted = int4_gptq(w, H, scheme.group_size)
            return fitted, int4_dequantize(*fitted)
    else:
        def solve(w, H):
            codes, scales = int8_gptq(w, H, scheme.dtype)
            return (codes, scales), codes.float() * scales.float()[:, None]
    return solve


def _fit_expert(w: torch.Tensor, H: torch.Tensor | None, solve, fits) -> tuple | None:
    """One expert's weight (a view into its stack) fitted on its Hessian and overwritten in place with the
    values it stands for; None (round-to-nearest later) without a Hessian or where `fits` turns it down."""
    if H is None or not fits(w):
        return None
    fitted, w_q = solve(w, H)
    w.copy_(w_q.to(w.dtype))
    return fitted


@torch.no_grad()
def fit(model: nn.Module, targets: dict[str, nn.Linear], ids: torch.Tensor, solve, moes: dict | None = None,
        fits_expert=lambda w: True) -> dict:
    """A decoder-only or encoder-only TransformerLM. GPTQ over the model's blocks in order, on calibration ids
    (S, T), by `solve` (solver's): name -> what solve fitted, for each of `targets` (the linears apply.py will
    replace by fitted ones; the LM head among them if quantized); and for each of `moes` (name -> Experts),
    name -> ([what solve fitted for each expert's input projection], [... its down projection]), None for an
    expert that saw no calibration token or a weight `fits_expert` turns down. The blocks' weights are left
    holding their quantized values (the next block's inputs need them)."""
    moes = moes or {}
    batches = ids.split(BATCH)
    states = []
    with _recording(model) as calls:
        for b in batches:
            model.run(model.embed(b))  # the stack without the head: the logits are not needed
        for n, b in enumerate(batches):  # this batch's block-0 input and every block's context
            states.append((calls[0][n][0], [c[n][1] for c in calls]))
    fitted = {}
    for i, block in enumerate(model.blocks):
        prefix = f"blocks.{i}."
        linears = {name: m for name, m in targets.items() if name.startswith(prefix)}
        block_moes = {name: m for name, m in moes.items() if name.startswith(prefix)}
        H, HE = _hessians(linears, block_moes, lambda: [block(x, ctxs[i]) for x, ctxs in states])
        for name, m in linears.items():
            fitted[name], w_q = solve(m.weight, H[name])
            m.weight.data = w_q.to(m.weight.dtype)
        for name, m in block_moes.items():
            fitted[name] = tuple([_fit_expert(w, h, solve, fits_expert) for w, h in zip(stack.unbind(0), hs)]
                                 for stack, hs in ((m.w_in, HE[name][0]), (m.down, HE[name][1])))
        states = [(block(x, ctxs[i]), ctxs) for x, ctxs in states]
    head = targets.get("lm_head")
    if head is not None:
        if getattr(model, "head_transform", None) is not None:
            return fitted  # a transform between the norm and the head: the head keeps round-to-nearest
        H = torch.zeros(head.in_features, head.in_features, dtype=torch.float64)
        for x, _ in states:  # the head's inputs, without computing its (large) output
            h = model.ln_final(x).reshape(-1, x.shape[-1]).float()
            H += (h.T @ h).double()
        fitted["lm_head"] = solve(head.weight, H)[0]  # its weight (maybe tied) is left as it is
    return fitted
