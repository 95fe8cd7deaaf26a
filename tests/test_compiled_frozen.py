"""The compiled decode step on CPU freezes its weights (generate/compiled.py): a quantized model's, which
inductor's C++ GEMM template packs once, and a float model's at one row. What freezing must not change: the
tokens, and what the graph sees when the weights or the cache change under it."""
import gc
import importlib
import weakref

import torch
from torch._dynamo.utils import counters

import llmarch
from conftest import tiny
from llmarch.quant import quantize


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def test_a_frozen_int8_step_decodes_the_eager_tokens_keeps_its_cache_and_sees_new_weights():
    """Same tokens as eager decoding. A second call of the same shape reuses the step's cache tensors (a frozen
    graph guards them by identity: new ones would recompile it) and compiles nothing. After an in-place change
    of the weights (training, load_state_dict) the step recompiles (a frozen graph holds its own packed copy of
    each weight; the engine compiles it anew when the weights' version changes) and decodes what eager decoding
    does; within one process, where inductor's graph cache would hand back the first graph's packed weights
    without the weights' digest in its key."""
    model = quantize(tiny(vocab_size=128), "int8")
    ids = torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(1))
    eager = llmarch.generate(model, ids, max_new_tokens=10)
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=10, compile=True), eager)
    step = model.__dict__["_compiled_decode_step"]
    assert step.frozen
    cache = next(iter(step.states.values()))[0].k
    before = graphs()
    other = torch.randint(0, 128, (2, 5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(llmarch.generate(model, other, max_new_tokens=8, compile=True),
                       llmarch.generate(model, other, max_new_tokens=8))
    assert graphs() == before
    assert next(iter(step.states.values()))[0].k is cache

    with torch.no_grad():
        model.lm_head.weight.copy_(model.lm_head.weight.flip(0))  # another head: the logits move
    eager_after = llmarch.generate(model, ids, max_new_tokens=10)
    assert not torch.equal(eager_after, eager)
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=10, compile=True), eager_after)
    assert graphs() == before + 1


def test_a_frozen_int4_step_decodes_the_eager_tokens():
    model = quantize(tiny(vocab_size=128), "int4", 32)
    ids = torch.randint(0, 128, (1, 6), generator=torch.Generator().manual_seed(4))
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=8, compile=True),
                       llmarch.generate(model, ids, max_new_tokens=8))
    assert model.__dict__["_compiled_decode_step"].frozen


def test_a_float_step_is_frozen_at_one_row_only_and_sees_its_weights_replaced():
    """A float model's one-row graph freezes its weights (no packed copies: the wrapper just stops passing them on
    every call); a batch's graph does not (its GEMMs would want packed copies). Eager's tokens at both. A weight
    replaced under its Parameter (`.data =`), which no version counter sees: by the same values (as
    for_cpu_decoding's layouts are, between eager and compiled decoding) compiles nothing; by others compiles the
    step anew (the frozen graph of a GEMM held a view of the old tensor) and decodes as eager does."""
    model = tiny(vocab_size=128)
    one = torch.randint(0, 128, (1, 6), generator=torch.Generator().manual_seed(5))
    two = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(6))
    eager = llmarch.generate(model, one, max_new_tokens=8)
    assert torch.equal(llmarch.generate(model, one, max_new_tokens=8, compile=True), eager)
    step = model.__dict__["_compiled_decode_step"]
    assert step.frozen
    assert torch.equal(llmarch.generate(model, two, max_new_tokens=8, compile=True),
                       llmarch.generate(model, two, max_new_tokens=8))
    assert not step.frozen

    before = graphs()
    model.lm_head.weight.data = model.lm_head.weight.data.clone()
    assert torch.equal(llmarch.generate(model, one, max_new_tokens=8, compile=True), eager)
    assert step.frozen and graphs() == before
    model.lm_head.weight.data = model.lm_head.weight.data.flip(0).clone()  # another head: the logits move
    eager_after = llmarch.generate(model, one, max_new_tokens=8)
    assert not torch.equal(eager_after, eager)
    assert torch.equal(llmarch.generate(model, one, max_new_tokens=8, compile=True), eager_after)
    assert graphs() == before + 1


def test_each_models_step_has_its_own_recompile_budget():
    """dynamo counts recompiles per code object, up to recompile_limit (8; an error under fullgraph): a step
    shared by every model ran out once a process had compiled a dozen small models (a test session did). Each
    model's step is its own copy. (The limit lowered to 2 here, so that three models show it.)"""
    ids = torch.ones(1, 3, dtype=torch.long)
    with torch._dynamo.config.patch(recompile_limit=2):
        for width in range(3):
            model = tiny(vocab_size=97 + width, n_layers=1)
            assert torch.equal(llmarch.generate(model, ids, max_new_tokens=2, compile=True),
                               llmarch.generate(model, ids, max_new_tokens=2))


def test_a_step_past_the_recompile_limit_starts_a_fresh_copy():
    """Each batch size, cache length and padded-or-not is a graph of its own, and one more than dynamo's
    recompile_limit is an error under fullgraph (a ninth batch size failed with FailOnRecompileLimitHit; a chat
    with a 128k-context model would at its tenth cache length). Past the limit the step starts a fresh copy, which
    drops the old graphs; a shape setup_cache did not count (another guard failing) is caught at the call."""
    model = tiny(vocab_size=128, n_layers=1)
    with torch._dynamo.config.patch(recompile_limit=2):
        for batch in (1, 2, 3, 1):
            ids = torch.randint(0, 128, (batch, 4), generator=torch.Generator().manual_seed(batch))
            assert torch.equal(llmarch.generate(model, ids, max_new_tokens=3, compile=True),
                               llmarch.generate(model, ids, max_new_tokens=3))
        step = model.__dict__["_compiled_decode_step"]
        assert step.shapes == {(3, 64, False), (1, 64, False)}  # tiny: a context of 64
        old = weakref.ref(step.fn.__wrapped__)
        step.shapes.clear()  # as if the last two shapes had not been counted: dynamo's limit is hit at the call
        ids = torch.randint(0, 128, (2, 4), generator=torch.Generator().manual_seed(5))
        assert torch.equal(llmarch.generate(model, ids, max_new_tokens=3, compile=True),
                           llmarch.generate(model, ids, max_new_tokens=3))
        assert step.shapes == {(2, 64, False)}  # the copy the call started has compiled the call's shape
    # the old copies and their graphs are gone: none in the module's globals (a shared globals dict kept every
    # graph dynamo compiled), the last copy collected
    gc.collect()
    assert old() is None
    assert not [k for k in vars(importlib.import_module("llmarch.generate.compiled")) if k.startswith("__compiled_fn")]


def test_a_fresh_copy_of_a_frozen_step_drops_the_kept_states():
    """The states a frozen step keeps serve the graphs that guard them; a fresh copy (past the recompile limit)
    drops both, so a long chat does not hold a cache of every length it passed through. (setup_cache alone:
    torch.compile compiles at the first call, which a frozen graph makes slow without inductor's cache.)"""
    from llmarch.generate.compiled import compiled_step

    step = compiled_step(quantize(tiny(vocab_size=128, n_layers=1), "int8"))
    with torch._dynamo.config.patch(recompile_limit=2):
        for batch in (1, 2, 1, 3):
            step.setup_cache(batch, 64)
    assert step.frozen and [key[0] for key in step.states] == [3] and step.shapes == {(3, 64, False)}
