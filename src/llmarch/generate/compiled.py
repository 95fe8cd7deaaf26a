"""The compiled decode step (as in gpt-fast): model.step as one fixed-shape graph, (tok (B, 1), slot (1,), mask
(B, S) or None) -> logits (B, 1, V), attending over the whole static cache with the causal mask (kv_len None), so
every position reuses the same graph. Built once per model and kept on it; compiling takes seconds to a minute
(less once inductor's on-disk cache holds the graph), so it pays off for long or repeated generation.

- CUDA: "reduce-overhead" (CUDA graphs: the step replays with no per-kernel launch cost).
- CPU: inductor's C++ wrapper, which calls the graph's kernels from C++ rather than from Python (SmolLM2 on its
  Q4_1 kernels, 2-core Xeon: 89 tokens/s against 82 with the Python wrapper and 61 eager; docs/benchmarks.md).
- CPU, a model with weight-only quantized layers (quant/linear.py) whose decode states are caches indexed by
  slot: the graph is compiled with its weights frozen (inductor's `freezing`: they become constants of the
  graph) and max-autotune's C++ GEMM template, which packs each int8/int4 weight once into its own blocked
  layout and beats torch's weight-only kernels on one row (SmolLM2's int8 layers, 2-core Xeon: 5.2-6.8 ms a
  token against 10.9 for `_weight_int8pack_mm` in the same graph). The packed copies and autotuning cost memory
  and time: SmolLM2 int8's first compiled call took 55-58 s in a process without inductor's cache (12 s with
  it, as without freezing) and its resident memory grew by 200-210 MB (130 MB compiled without freezing);
  docs/benchmarks.md.
- CPU, a float model whose states are caches indexed by slot: its one-row graphs are frozen too, with no packed
  copies (`cpp.weight_prepack` off): the C++ wrapper then no longer passes ~180 weights on every call (SmolLM2
  fp32 on the AMD EPYC: 1.07-1.11x in turns, no more resident memory). Its batches are not frozen: their GEMMs
  would want packed copies (SmolLM2, a batch of two: 1.2 -> 2.5 GB), and without them gain nothing.

Frozen weights bring three duties, all here:
- dynamo guards a frozen graph's tensors by identity, so a decode state allocated anew for every call would
  recompile the step every call. The step keeps the states it decoded in, one set per shape, and the engine
  reuses them (zeroed) for the next call of that shape: they stay allocated after generation (SmolLM2, 512
  slots: 24 MB).
- a frozen graph holds the weights it was compiled with, or packed copies of them, or views of them (a float
  graph's GEMM takes its weight transposed), so a change of the weights (training, load_state_dict, a weight
  replaced under its Parameter) would go unseen. Before each decoding the step reads the sum of the weights'
  version counters (which every in-place write bumps) and their addresses (which a replacement, `.data =`,
  moves); where either changed, a digest of their values: new values compile the step anew. The same values
  keep it (0.6 s for SmolLM2 fp32's digest, against 13 s to compile again from inductor's cache): for_cpu_decoding
  lays a float model's weights out anew each time it passes between a compiled row and eager decoding or a batch.
- inductor's on-disk graph cache keys frozen weights by shape only, yet stores the packed copies: a digest of the
  weights' bytes goes into its key (weights_key)."""
from __future__ import annotations

import contextlib
import hashlib
import types

import torch
from torch import nn

STEP_KEY = "_compiled_decode_step"


def compiled_step(model) -> "CompiledStep":
    """The model's compiled decode step, built on first use and kept in the model's __dict__ (not a submodule:
    no state-dict entries, and deepcopy/pickling of a model that never decoded compiled is unaffected)."""
    step = model.__dict__.get(STEP_KEY)
    if step is None:
        step = model.__dict__[STEP_KEY] = CompiledStep(model)
    return step


def quantized(model) -> bool:
    """Whether the model runs on CPU with weight-only quantized layers (quant/linear.py), the kernels inductor's
    C++ GEMM template replaces: their graphs compile with max-autotune and frozen weights at every batch size."""
    from ..quant.linear import Int4Linear, Int8Linear

    return (next(model.parameters()).device.type == "cpu"
            and any(isinstance(m, (Int8Linear, Int4Linear)) for m in model.modules()))


class CompiledStep:
    def __init__(self, model):
        self.model = model
        self.freezable = next(model.parameters()).device.type == "cpu"  # until a state it cannot keep
        self.quantized = quantized(model)
        # whether the present shape's graph freezes the weights: a quantized model's at every batch, a float
        # model's at one row. Frozen, the weights are constants of the graph rather than ~180 inputs that
        # inductor's C++ wrapper passes on every call (SmolLM2 fp32, AMD EPYC: 1.07-1.11x, in turns); a one-row
        # graph has no GEMM (SplitLinear's dot products), so nothing to pack. A float batch would be GEMMs on packed
        # copies of every weight (SmolLM2: 1.2 -> 2.5 GB), so it is not frozen.
        self.frozen = False
        self.fn = None
        self.states: dict = {}  # freezable: (batch, max_len, dtype, device) -> the decode states kept for reuse
        self.weights = None  # freezable: the weights' versions and addresses when last compared
        self.digest = ""  # freezable: the digest of the weights the step was compiled at (weights_key)
        self.shapes: set = set()  # (batch, max_len, masked) the present copy of the step has had (setup_cache)
        self.shape = None  # the last of them
        self.checked = False  # whether this decoding's first step has run, under all of dynamo's guards
        self.hooks: tuple = ()  # the modules' forward (pre-)hooks the present copy was traced with

    def _drop(self) -> None:
        """Forget the present copy and its graphs. Dynamo keeps a copy's compiled graphs on its code object and in
        its globals (`__compiled_fn_*`): reset_code clears the first, and each copy's own globals dict goes with
        it (a shared one kept every graph ever compiled, and, frozen, the weights each had packed)."""
        if self.fn is not None:
            torch._dynamo.reset_code(self.fn.__wrapped__.__code__)
        self.fn, self.shapes = None, set()

    def _compile(self, digest: str = "") -> None:
        """A compiled copy of _step with its own code object: dynamo keeps compiled graphs, and counts recompiles
        against its limit of 8 (an error under fullgraph), per code object, and one shared by every model's step
        ran out within one test session. Frozen: `digest` is the weights' (weights_key)."""
        self._drop()
        cuda = next(self.model.parameters()).device.type == "cuda"
        options = None if cuda else {"cpp_wrapper": True}
        if self.freezable:
            # inductor's graph cache keys frozen weights by their shapes alone, yet keeps the packed copies the
            # template made of them: a second model of the same shapes (or this one after a change of its
            # weights) got the first one's weights back (torch 2.13; tests/test_compiled_frozen.py). A pass
            # that changes nothing but whose uuid is a digest of the weights puts their values in the key.
            options["post_grad_custom_post_pass"] = weights_key(digest)
            if self.quantized:
                options.update(max_autotune=True, max_autotune_gemm_backends="CPP,ATEN")
        step = types.FunctionType(_step.__code__.replace(), dict(_step.__globals__), _step.__name__)
        self.fn = torch.compile(step, fullgraph=True, dynamic=False, options=options,
                                mode="reduce-overhead" if cuda else None)

    def setup_cache(self, batch: int, max_len: int, masked: bool = False) -> None:
        """The model's decode states for `batch` rows of max_len slots (Stack.setup_cache); masked: the rows are
        left-padded (the step takes a mask). Frozen, the kept ones of that shape, zeroed; a model whose states are
        not all modules indexed by slot (KV caches), which the step writes in place, is not frozen. Frozen, a step
        compiled anew when the weights' version changed (its graphs, and their packed weights, dropped with the
        old one).

        Each (batch, max_len, masked) is a graph of its own, and dynamo allows a copy of the step
        `recompile_limit` graphs (8), fullgraph making one more an error: a chat with a long-context model
        outgrows nine cache lengths (one per power of two from 256: a 128k context has ten), a caller may vary
        the batch. A shape beyond the limit starts a fresh copy with none; the old graphs (and, frozen, their
        packed weights and kept states) go with the old one, so memory stays bounded, at the price of compiling
        again a shape that comes back."""
        model = self.model
        w = next(model.parameters())
        key = (batch, max_len, w.dtype, w.device)
        self.shape = (batch, max_len, masked)
        hooks = tuple(id(h) for m in model.modules() for h in (*m._forward_pre_hooks.values(),
                                                               *m._forward_hooks.values()))
        if hooks != self.hooks:  # dynamo does not guard hooks (skip_nnmodule_hook_guards): a graph traced with
            self._drop()  # other hooks would run as it was traced
            self.hooks = hooks
        if self.shape not in self.shapes and len(self.shapes) >= torch._dynamo.config.recompile_limit:
            self._drop()
            self.states.clear()  # kept for graphs that guard them: those go, and so would the memory they hold
        kept = self.states.get(key) if self.freezable else None
        if kept is None:
            model.setup_cache(batch, max_len)
            if self.freezable:
                kept = model.caches()
                if all(isinstance(s, nn.Module) and getattr(s, "by_slot", False) for s in kept):
                    self.states[key] = kept
                else:
                    self.freezable = False
                    self._drop()
        else:
            for state in kept:
                for t in state.buffers():
                    t.zero_()
            model.set_caches(kept, max_len)
        self.frozen = self.freezable and (batch == 1 or self.quantized)
        if not self.freezable:
            if self.fn is None:
                self._compile()
        else:
            skip = {id(t) for s in kept for t in s.buffers()}
            weights = [t for t in (*model.parameters(), *model.buffers()) if id(t) not in skip]
            # in-place writes bump the version counters; a weight replaced under its Parameter (`.data =`: a
            # cast, for_cpu_decoding's layouts) moves. Either way the values decide: the same ones (a layout that
            # came back) keep the graphs
            state = (sum(t._version for t in weights), tuple(t.data_ptr() for t in weights))
            if self.fn is None or state != self.weights:
                now = digest(weights)
                if self.fn is None or now != self.digest:
                    self.digest = now
                    self._compile(now)
                self.weights = state
        self.shapes.add(self.shape)
        self.checked = False

    def __call__(self, tok: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        try:
            return self._call(tok, slot, mask)
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            # over the limit for a reason setup_cache does not count (a guard on something else): a fresh copy,
            # which compiles this call's shape (its kept states stay: this call decodes in them)
            self._compile(self.digest)
            self.shapes.add(self.shape)
            return self._call(tok, slot, mask)

    def _call(self, tok: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The first step of a decoding (after setup_cache) runs under all of dynamo's guards, which check the
        model as the graph was traced (its weights' dtypes, shapes and strides, modules, hooks, flags) and compile
        anew where it changed; the steps after it only under the guards that tell this copy's graphs apart (one
        per cache shape): between two steps of one decoding only the cache's contents and the step's inputs
        change, never their shapes. Dynamo's guards on the ~300 tensors of SmolLM2 cost about a tenth of an int8
        step on the AMD EPYC (98.6 tokens/s with them, 110 without). A model changed in the middle of a
        decoding (from a stream's consumer) is not seen until the next one."""
        if not self.frozen:
            with _guards(skip=self.checked):
                out = self.fn(self.model, tok, slot, mask)
        else:
            # freezing is read while dynamo traces (torch._dynamo.utils.is_parameter_freezing), so per call, not in
            # the compile options
            # a float graph's GEMMs (a batch's, which is not frozen, or a BLAS's one-row product where no split
            # pays) would run on packed copies of the weights: the weights stay as they are (weight_prepack)
            with torch._inductor.config.patch(freezing=True, **{"cpp.weight_prepack": self.quantized}), \
                    _guards(skip=self.checked):
                out = self.fn(self.model, tok, slot, mask)
        self.checked = True
        return out


def _guards(skip: bool):
    """A context under which dynamo runs only the guards that tell a function's graphs apart (skip), or the
    caller's stance left as it is (all of them, unless the caller chose otherwise); all of them before torch 2.7
    (the package allows 2.4), whose set_stance lacks the choice."""
    if not skip:
        return contextlib.nullcontext()
    try:
        return torch.compiler.set_stance("default", skip_guard_eval_unsafe=skip)
    except (AttributeError, TypeError):
        return contextlib.nullcontext()


def weights_key(digest: str):
    """A post-grad pass that leaves the graph as it is; its uuid, which inductor's cache key takes, is the digest
    of the weights the graph freezes (none for a graph that does not). (Built here: torch._inductor takes about
    a second to import.)"""
    from torch._inductor.custom_graph_pass import CustomGraphPass

    class WeightsKey(CustomGraphPass):
        def __call__(self, graph) -> None:
            pass

        def uuid(self) -> str:  # read while the graph compiles: an unfrozen graph's key needs no digest
            return digest if torch._inductor.config.freezing else ""

    return WeightsKey()


def digest(tensors) -> str:
    """A digest of the tensors' bytes, in order (blake2b: SmolLM2's 237 MiB of int8 and fp32 weights in 0.25 s
    on the 2-core Xeon, against about 45 s to compile the step again)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _step(model, tok, slot, mask):
    return model.step(tok, slot, None, mask, None).logits
