"""A sliding window's KV cache as a ring of w slots (layers/ring_cache.py) in generate's eager decoding: the same
logits at every step as the whole-context cache, for a model of window layers only, Gemma 3's local/global mix,
gpt-oss's sinks, left-padded rows and beam search; the ring layers hold w slots, not the context."""
import pytest
import torch

import llmarch
from llmarch.generate.engine import Engine
from llmarch.layers.kv_cache import KVCache
from llmarch.layers.ring_cache import RingKVCache

from conftest import tiny

def preset(name: str, **overrides):
    torch.manual_seed(0)
    return llmarch.build(name, context_length=64, **overrides).eval()


CASES = {  # windows of 8 (shorter than the 13-token prompts and the 43 positions decoded)
    "window": lambda: tiny("llama-tiny", sliding_window=8, context_length=64),
    "gemma3": lambda: preset("gemma3-tiny", layer_overrides={"sliding_attention": {"sliding_window": 8}}),
    "gpt-oss": lambda: preset("gpt-oss-tiny", layer_overrides={"sliding_attention": {"sliding_window": 8}}),
}


def step_logits(model, prompt, mask, steps: int, bounded: bool) -> list[torch.Tensor]:
    """Logits after the prompt and after each of `steps` greedy tokens, through the engine."""
    B, P = prompt.shape
    slot_mask = None if mask is None else torch.cat([mask, torch.ones(B, steps, dtype=mask.dtype)], 1)
    with torch.inference_mode(), Engine(model, B, P + steps, slot_mask, bounded=bounded) as engine:
        out = [engine.prefill(prompt)]
        states = model.caches()
        for _ in range(steps):
            out.append(engine.decode(out[-1].argmax(-1)))
    return out, states


@pytest.mark.parametrize("case", CASES)
def test_the_ring_decodes_as_the_whole_cache(case):
    model = CASES[case]().eval()
    torch.manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (2, 13))
    mask = torch.ones_like(prompt)
    mask[1, :5] = 0  # row 1 left-padded
    for m in (None, mask):
        full, full_states = step_logits(model, prompt, m, 30, bounded=False)
        ring, ring_states = step_logits(model, prompt, m, 30, bounded=True)
        worst = max((a - b).abs().max().item() for a, b in zip(full, ring))
        assert worst < 1e-5, (case, worst)
    windowed = [i for i in range(model.config.n_layers) if model.config.for_layer(i).sliding_window]
    assert windowed and all(isinstance(ring_states[i], RingKVCache) for i in windowed)
    assert all(type(s) is KVCache for i, s in enumerate(ring_states) if i not in windowed)
    w = model.config.for_layer(windowed[0]).sliding_window
    assert ring_states[windowed[0]].nbytes * (13 + 30) == full_states[windowed[0]].nbytes * w


def test_generate_keeps_w_slots_and_the_same_tokens():
    """llmarch.generate (eager: ring; compiled: the static cache) gives the same greedy and beam outputs as
    decoding with the whole cache, and speculative decoding (which rewinds) still works on a window model."""
    model = CASES["window"]().eval()
    torch.manual_seed(2)
    prompt = torch.randint(0, model.config.vocab_size, (1, 10))
    seen = []
    original = Engine.__init__

    def spy(self, *args, bounded=False, **kwargs):
        seen.append(bounded)
        original(self, *args, bounded=bounded, **kwargs)

    Engine.__init__ = spy
    try:
        greedy = llmarch.generate(model, prompt, max_new_tokens=24)
        beams = llmarch.generate(model, prompt, max_new_tokens=12, num_beams=3)
    finally:
        Engine.__init__ = original
    assert seen == [True, True]
    ids = prompt[0].tolist()
    for _ in range(24):  # the whole forward, no cache at all
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert greedy[0].tolist() == ids
    assert llmarch.generate(model, [prompt[0].tolist()], max_new_tokens=24, prompt_lookup=3)[0] == ids
    assert beams.shape == (1, 22)


def test_a_running_batch_holds_rings():
    """The server's running batch keeps a window layer's ring too (put_row, shift and rows on the ring:
    tests/test_continuous_batching.py decodes gemma3-tiny's windows of 8 there as generate does alone)."""
    from llmarch.generate.batch import RunningBatch

    model = CASES["window"]()
    batch = RunningBatch(model, 3)
    assert all(isinstance(s, RingKVCache) and s.k.shape[0] == 3 and s.k.shape[2] == 8 for s in batch.states)
    batch.close()
