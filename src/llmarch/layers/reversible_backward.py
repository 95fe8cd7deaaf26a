"""The reversible backward pass (Gomez et al. 2017, "The Reversible Residual Network", §3, Algorithm 1; Reformer,
Kitaev et al. 2020, §3 "Reversible Transformer"), for a stack of hyper_connection 'reversible' blocks in training
(config reversible_backward). Block i maps its streams (X1, X2) to
    A = X2 + F(X1),    B = X1 + G(A)                      F = dropout(attn(ln1(.))), G = dropout(mlp(ln2(.)))
and returns (B, A) (layers/reversible.py). The forward runs the blocks without recording a graph and keeps only the
last block's streams; the backward walks the blocks from the last, recovering each block's inputs from its outputs,
    X1 = B - G(A),    X2 = A - F(X1),
and back-propagating through G and F recomputed on them, so the activations held between the forward and the
backward do not grow with depth (one block's graph at a time, as transformers' ReformerLayer.backward_pass).

Dropout is replayed: the random state before each sublayer is kept in the forward and restored for its
recomputation (as torch.utils.checkpoint does, in a forked generator, where transformers reseeds the global one
per sublayer). The LSH rotations are fixed per layer (attention_seed), so hashing needs no random state, but the
inputs recovered equal the forward's only up to rounding, where a query near a bucket boundary could hash
otherwise: as transformers does, each layer's buckets are kept from the forward (AttentionContext.hashes) and
sorted by again (B * H * rounds * L integers a layer, against the B * L * d floats of each activation). The
gradients are returned through the function rather than accumulated into .grad inside it (transformers calls
.backward() there), so torch.autograd.grad, gradient accumulation and data parallelism's gradient hooks see them
as any other. Hook points around the streams
(hook_resid_*) are not run on this path; the sublayers' own (hook_attn_out, hook_mlp_out) run in the forward and
again in the recomputation. Under torch.compile the stack runs eagerly (compiled dropout draws from the compiler's
own generator, which the replay does not restore); what surrounds it is compiled."""
from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn


def _rng_state(device: torch.device) -> tuple:
    """The generators dropout on `device` draws from: the CPU's, and the accelerator's when there is one."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextlib.contextmanager
def _replayed(state: tuple, device: torch.device):
    """The generators set to `state` inside, and as they were before afterwards (torch.random.fork_rng)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


class _ReversibleStack(torch.autograd.Function):
    """x (B, T, 2, C): the streams entering the first block -> the streams leaving the last; run: (blocks, their
    contexts, params), params (the blocks' trainable parameters, each once) passed again as inputs so that the
    backward returns their gradients."""

    @staticmethod
    def forward(fctx, x, run, *params):
        blocks, ctxs, _ = run
        device, rng = x.device, []
        x1, x2 = x.unbind(2)
        for block, ctx in zip(blocks, ctxs):
            f_state = _rng_state(device)
            a = x2 + block.attn_branch(x1, ctx)
            g_state = _rng_state(device)
            x1, x2 = x1 + block.mlp_branch(a, ctx), a
            rng.append((f_state, g_state))
        out = torch.stack([x1, x2], dim=2)
        fctx.save_for_backward(out)
        fctx.run, fctx.rng = run, rng
        fctx.autocast = torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type)
        return out

    @staticmethod
    def backward(fctx, grad):
        (out,) = fctx.saved_tensors
        blocks, ctxs, params = fctx.run
        slot = {id(p): j for j, p in enumerate(params)}
        grads: list[torch.Tensor | None] = [None] * len(params)
        device = out.device
        b, a = out.detach().unbind(2)
        grad_b, grad_a = grad.unbind(2)
        enabled, dtype = fctx.autocast
        for block, ctx, (f_state, g_state) in zip(reversed(blocks), reversed(ctxs), reversed(fctx.rng)):
            own = [p for p in block.parameters() if p.requires_grad]
            with torch.enable_grad(), torch.autocast(device.type, dtype=dtype, enabled=enabled):
                a_in = a.detach().requires_grad_()
                with _replayed(g_state, device):
                    g = block.mlp_branch(a_in, ctx)
                grad_in, *grad_own = torch.autograd.grad(g, [a_in, *own], grad_b, allow_unused=True)
                _accumulate(grads, slot, own, grad_own)
                grad_a = grad_a + grad_in
                x1 = (b - g.detach()).requires_grad_()  # X1 = B - G(A)
                with _replayed(f_state, device):
                    f = block.attn_branch(x1, ctx)
                grad_in, *grad_own = torch.autograd.grad(f, [x1, *own], grad_a, allow_unused=True)
                _accumulate(grads, slot, own, grad_own)
            b, a = x1.detach(), a - f.detach()  # X2 = A - F(X1): this block's inputs, the previous block's outputs
            grad_b = grad_b + grad_in
        return (torch.stack([grad_b, grad_a], dim=2), None, *grads)


def _accumulate(grads: list, slot: dict, own: list, new: list) -> None:
    """Adds a block's parameter gradients into the stack's (a parameter of blocks shared across layers sums)."""
    for p, g in zip(own, new):
        if g is not None:
            j = slot[id(p)]
            grads[j] = g if grads[j] is None else grads[j] + g


def reversible_blocks(x: torch.Tensor, blocks: list[nn.Module], ctxs: list) -> torch.Tensor:
    """The reversible blocks over x (B, T, 2, C), each with its context, back-propagated reversibly."""
    if torch.compiler.is_compiling():  # eager under torch.compile: the replayed random state is the eager generators'
        # disabled here, where dynamo traces (once a graph), not by a decorator: torch.compiler.disable imports
        # torch._dynamo, which had added 1.1 s of CPU to every `import llmarch`
        return torch.compiler.disable(_reversible_blocks)(x, blocks, ctxs)
    return _reversible_blocks(x, blocks, ctxs)


def _reversible_blocks(x: torch.Tensor, blocks: list[nn.Module], ctxs: list) -> torch.Tensor:
    params = list({id(p): p for block in blocks for p in block.parameters() if p.requires_grad}.values())
    ctxs = [dataclasses.replace(ctx, hashes={}) for ctx in ctxs]  # each layer's LSH buckets, kept for the backward
    return _ReversibleStack.apply(x, (blocks, ctxs, params), *params)
