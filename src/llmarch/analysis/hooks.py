"""Looking inside a model through its hook points (layers/hooks.py), with the names TransformerLens uses:
`hook_embed`, `blocks.{i}.hook_resid_pre|mid|post`, `blocks.{i}.attn.hook_q|k|v|pattern|z`,
`blocks.{i}.hook_attn_out|hook_mlp_out`, `ln_final.hook_normalized` (an encoder-decoder's under `encoder.` and
`decoder.`, with `decoder.blocks.{i}.cross_attn.hook_pattern|hook_z` and `hook_cross_out`). A hook point is an
identity module that costs nothing until a hook is attached.

- run_with_hooks: a forward with hooks fn(activation, name) that may return a replacement activation;
- run_with_cache: a forward that keeps the activations at the named points;
- logit_lens: each layer's residual stream read through the final norm and the unembedding (nostalgebraist
  2020), the last layer's being the model's logits;
- patch_residual: activation patching, each (layer, position) of a corrupted run's residual stream replaced
  by the clean run's, and how much of the clean logit difference that restores (Meng et al. 2022, §2.1);
- ablate_heads: logits with chosen attention heads' outputs zeroed.
Attention patterns exist only where they are computed: while a hook watches `hook_pattern`, the attention
layers use the eager kernel, which materialises them (the fused SDPA kernel never does)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import LlmarchError
from ..layers.attention import attention_kernel
from ..layers.hooks import HookPoint

Hook = Callable[[torch.Tensor, str], "torch.Tensor | None"]


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every hook point of the model by its name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


@contextmanager
def hooks(model: nn.Module, fwd_hooks: Iterable[tuple[str, Hook]]):
    """Attach (name, fn) hooks for the duration of the block; fn(activation, name) returns None to leave the
    activation as it is, or a tensor that replaces it downstream."""
    points = hook_points(model)
    handles, wants_pattern = [], False
    try:
        for name, fn in fwd_hooks:
            if name not in points:
                raise LlmarchError(f"no hook point {name!r}; e.g. {', '.join(list(points)[:4])}, ...")
            wants_pattern |= name.endswith("hook_pattern")
            handles.append(points[name].register_forward_hook(lambda m, i, out, fn=fn, name=name: fn(out, name)))
        with _eager_attention(model, wants_pattern):
            yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _eager_attention(model: nn.Module, on: bool):
    """The eager kernel in every attention layer while `on` (it computes the pattern that hook_pattern sees)."""
    # every layer with a swappable kernel and a pattern hook (attention, cross-attention, latent attention)
    layers = [m for m in model.modules() if hasattr(m, "kernel") and hasattr(m, "hook_pattern")] if on else []
    kernels = [m.kernel for m in layers]
    for m in layers:
        m.kernel = attention_kernel("eager", getattr(m, "softcap", None))
    try:
        yield
    finally:
        for m, kernel in zip(layers, kernels):
            m.kernel = kernel


def _logits(model, input_ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids, **kwargs).logits


def run_with_hooks(model, input_ids: torch.Tensor, fwd_hooks: Iterable[tuple[str, Hook]], **kwargs) -> torch.Tensor:
    """The logits of one forward with the hooks attached (kwargs go to the model's forward)."""
    with hooks(model, fwd_hooks):
        return _logits(model, input_ids, **kwargs)


def run_with_cache(model, input_ids: torch.Tensor, names: Iterable[str] | None = None,
                   **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, cache): cache maps each hook point named (default: every one) to its activation, detached.
    Attention patterns are (batch, heads, query, key)."""
    cache: dict[str, torch.Tensor] = {}

    def keep(t: torch.Tensor, name: str) -> None:
        cache[name] = t.detach()

    wanted = list(hook_points(model)) if names is None else list(names)
    logits = run_with_hooks(model, input_ids, [(n, keep) for n in wanted], **kwargs)
    return logits, cache


def _lm(model) -> None:
    if model.config.head != "lm":
        raise LlmarchError("this analysis reads a language-model head (head lm), not a classifier")


def _stack_prefix(model, stack: str | None) -> str:
    """The hook-name prefix of one stack: "" for a single-stack model, "encoder." or "decoder." otherwise."""
    if not model.config.is_encoder_decoder:
        if stack not in (None, ""):
            raise LlmarchError(f"stack={stack!r}: a single-stack model has no encoder or decoder")
        return ""
    if stack not in ("encoder", "decoder"):
        raise LlmarchError(f"stack={stack!r}: an encoder-decoder's stacks are encoder and decoder")
    return stack + "."


def logit_lens(model, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
    """(layers, B, T, V): layer i's residual stream (hook_resid_post) through the final norm and the head; the
    last entry is the model's logits. An encoder-decoder's lens reads the decoder's layers (pass
    decoder_input_ids); an encoder's (BERT) reads its MLM head, transform included."""
    _lm(model)
    prefix = _stack_prefix(model, "decoder" if model.config.is_encoder_decoder else None)
    stack = model.decoder if prefix else model
    n = len(stack.blocks)
    names = [f"{prefix}blocks.{i}.hook_resid_post" for i in range(n)]
    _, cache = run_with_cache(model, input_ids, names, **kwargs)
    with torch.no_grad():
        return torch.stack([_unembed(model, stack.ln_final(cache[name])) for name in names])


def _unembed(model, h: torch.Tensor) -> torch.Tensor:
    if model.config.is_encoder_decoder:
        return model.lm_head(h * model.config.d_model ** -0.5 if model.config.head_scale else h)
    return model._head(h, None)


def logit_difference(logits: torch.Tensor, right: int, wrong: int, position: int = -1) -> torch.Tensor:
    """logit(right) - logit(wrong) at one position (default the last), per batch row."""
    return logits[:, position, right] - logits[:, position, wrong]


def patch_residual(model, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor, right: int, wrong: int,
                   point: str = "hook_resid_pre", position: int = -1, stack: str | None = None,
                   progress: Callable[[int], None] | None = None, **kwargs) -> torch.Tensor:
    """(layers, positions): the corrupted run with blocks.{layer}.{point} at one position set to the clean
    run's, scored as (patched - corrupted) / (clean - corrupted) logit difference of `right` over `wrong` at
    output `position` (1: fully restored, 0: no effect). Both prompts must have the same length. An
    encoder-decoder's prompts are sources, patched in stack "encoder" (the default) or "decoder"; kwargs
    (decoder_input_ids) go to both runs. progress, if given, is called with 1 after each patched run."""
    _lm(model)
    if model.config.is_encoder_decoder and stack is None:
        stack = "encoder"
    prefix = _stack_prefix(model, stack)
    if clean_ids.shape != corrupted_ids.shape:
        raise LlmarchError(f"clean and corrupted prompts differ in shape: {tuple(clean_ids.shape)} vs "
                           f"{tuple(corrupted_ids.shape)}")
    blocks = getattr(model, stack).blocks if prefix else model.blocks
    names = [f"{prefix}blocks.{i}.{point}" for i in range(len(blocks))]
    clean_logits, clean = run_with_cache(model, clean_ids, names, **kwargs)
    base = logit_difference(_logits(model, corrupted_ids, **kwargs), right, wrong, position)
    span = logit_difference(clean_logits, right, wrong, position) - base
    T = clean[names[0]].shape[1]  # the patched stack's length (an encoder-decoder's decoder: the target's)
    out = torch.zeros(len(names), T)
    for i, name in enumerate(names):
        for t in range(T):
            def patch(act: torch.Tensor, _name: str, t=t, name=name) -> torch.Tensor:
                act = act.clone()
                act[:, t] = clean[name][:, t]
                return act

            patched = run_with_hooks(model, corrupted_ids, [(name, patch)], **kwargs)
            if progress is not None:
                progress(1)
            out[i, t] = ((logit_difference(patched, right, wrong, position) - base) / span).mean()
    return out


def ablate_heads(model, input_ids: torch.Tensor, heads: Iterable[tuple[int, int]], stack: str | None = None,
                 **kwargs) -> torch.Tensor:
    """Logits with the outputs of the (layer, head) pairs zeroed before the output projection (hook_z); an
    encoder-decoder's heads are in stack "encoder" or "decoder" (self-attention)."""
    prefix = _stack_prefix(model, stack)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def zero(heads_here: list[int]) -> Hook:
        def fn(z: torch.Tensor, name: str) -> torch.Tensor:  # (B, T, H, D)
            z = z.clone()
            z[:, :, heads_here] = 0
            return z
        return fn

    return run_with_hooks(model, input_ids, [(f"{prefix}blocks.{i}.attn.hook_z", zero(h)) for i, h in by_layer.items()],
                          **kwargs)


def linear_probe(features: torch.Tensor, labels: torch.Tensor, steps: int = 200, lr: float = 0.1,
                 train_fraction: float = 0.75, seed: int = 0) -> dict[str, float]:
    """A logistic-regression probe on cached activations (N, d) -> labels (N,): trained with Adam on the first
    train_fraction of a seeded shuffle, accuracy reported on both parts."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    x, y = features[order].float(), labels[order]
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cut = int(len(y) * train_fraction)
    probe = nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(probe(x[:cut]), y[:cut])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (probe(x).argmax(-1) == y).float()
    return {"train_accuracy": acc[:cut].mean().item(), "test_accuracy": acc[cut:].mean().item()}
