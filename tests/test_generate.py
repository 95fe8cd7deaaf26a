import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.generate import sample
from llmarch.generate.engine import Engine

from conftest import tiny


def greedy_by_recompute(model, ids, n):
    ids = torch.tensor([ids])
    for _ in range(n):
        ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return ids[0].tolist()


@pytest.mark.parametrize("base", ["gpt-tiny", "llama-tiny"])
def test_greedy_generate_equals_recompute_and_batches_of_any_length(base):
    model = tiny(base, n_kv_heads=2 if base == "llama-tiny" else None)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [3], [40, 41, 42]]
    rows = llmarch.generate(model, prompts, max_new_tokens=10)
    for prompt, row in zip(prompts, rows):
        assert row == greedy_by_recompute(model, prompt, 10)


def test_tensor_in_tensor_out_and_streaming():
    model = tiny()
    x = torch.randint(0, 97, (2, 5))
    seen = []
    out = llmarch.generate(model, x, max_new_tokens=6, on_tokens=lambda t: seen.append(t.clone()))
    assert out.shape == (2, 11) and torch.equal(out[:, :5], x)
    assert torch.equal(torch.stack(seen, 1), out[:, 5:])


def test_stops_at_eos_and_at_context_end():
    model = tiny()
    first = llmarch.generate(model, [[1, 2, 3]], max_new_tokens=1)[0][-1]
    rows = llmarch.generate(model, [[1, 2, 3]], max_new_tokens=20, eos_id=first)
    assert rows[0] == [1, 2, 3, first]
    long = llmarch.generate(model, [list(range(60))], max_new_tokens=50)
    assert len(long[0]) == 64  # the context holds 64 tokens


def test_prompt_longer_than_context_and_bad_ids():
    model = tiny()
    with pytest.raises(LlmarchError, match="longer than the model's context_length"):
        llmarch.generate(model, [list(range(65))], max_new_tokens=1)
    with pytest.raises(LlmarchError, match="out of range"):
        llmarch.generate(model, [[1, 500]], max_new_tokens=1)
    with pytest.raises(LlmarchError, match="at least one token"):
        llmarch.generate(model, [[]], max_new_tokens=1)


def test_sampling_is_seeded_and_respects_top_k_top_p():
    model = tiny()
    a = llmarch.generate(model, [[1, 2]], max_new_tokens=8, temperature=1.0, seed=3)
    b = llmarch.generate(model, [[1, 2]], max_new_tokens=8, temperature=1.0, seed=3)
    assert a == b
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 10.0]]).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample(logits, 1.0, top_k=2, generator=g).tolist()) <= {3, 4}
    # p(4) ~ 0.9992: nucleus 0.5 keeps only token 4
    assert set(sample(logits, 1.0, top_p=0.5, generator=g).tolist()) == {4}
    flat = torch.zeros(2000, 4)
    counts = torch.bincount(sample(flat, 1.0, top_p=0.6, generator=g), minlength=4)
    assert (counts > 0).sum() == 3  # 3 of 4 equal tokens are needed to reach mass 0.6
    assert torch.equal(sample(logits[:1], 0.0), torch.tensor([4]))


@pytest.mark.parametrize("base, overrides", [
    ("gpt-tiny", {}),
    ("llama-tiny", dict(n_kv_heads=2)),  # GQA and RoPE
    ("llama-tiny", dict(block="parallel", rope_fraction=0.5)),  # parallel block, partial rotary
    ("gpt-tiny", dict(norm_placement="post", position_offset=2)),
    ("llama-tiny", dict(positions="t5_relative", attn_scale=1.0)),  # a score bias instead of a causal mask
    ("gpt-tiny", dict(head_scale=True)),  # the head's d^-0.5 rescale (T5 v1.0's)
])
def test_the_engine_step_equals_the_model_forward(base, overrides):
    """The engine's prefill then one decode step per token (what generate runs) against the full (uncached)
    forward: the same logits at every position."""
    model = tiny(base, **overrides)
    x = torch.randint(0, 97, (2, 20))
    full = model(x).logits
    with torch.inference_mode(), Engine(model, 2, 20) as engine:
        steps = [engine.prefill(x[:, :12])] + [engine.decode(x[:, t]) for t in range(12, 19)]
    assert (torch.stack(steps, 1) - full[:, 11:19]).abs().max() < 1e-5
    assert model.training is False and model.blocks[0].seq_mixer.cache is None  # the engine cleans up


def test_generate_decodes_without_dropout_and_gives_the_training_flag_back():
    """A model with dropout decodes as in eval mode whether it is training, evaluating, or evaluating with one
    block left training; a training model trains again afterwards, every module."""
    model = tiny("gpt-tiny", dropout=0.5).eval()
    x = torch.randint(0, 97, (1, 6))
    want = llmarch.generate(model, x, max_new_tokens=8)
    model.blocks[1].train()
    assert torch.equal(llmarch.generate(model, x, max_new_tokens=8), want)
    model.train()
    assert torch.equal(llmarch.generate(model, x, max_new_tokens=8), want)
    assert all(m.training for m in model.modules())


def test_hooks_see_every_decoded_token_and_windows_narrower_than_the_context():
    """There is one path for a decoded token: hooks attached anywhere see the prefill and each decode step, and
    a sliding window narrower than the generated length decodes what recomputation gives."""
    model = tiny()
    seen = []
    handle = model.blocks[0].hook_resid_pre.register_forward_hook(lambda mod, args, out: seen.append(out.shape[1]))
    row = llmarch.generate(model, [[5, 6, 7]], max_new_tokens=4)[0]
    handle.remove()
    assert seen == [3, 1, 1, 1]  # the prefill, then each decoded token but the last
    assert row == greedy_by_recompute(model, [5, 6, 7], 4)
    shapes = []  # a decoded token's queries reach the hook as (B, T, H, D), as a prompt's do
    handle = model.blocks[1].attn.hook_q.register_forward_hook(lambda mod, args, out: shapes.append(out.shape))
    assert llmarch.generate(model, [[5, 6, 7]], max_new_tokens=3)[0] == row[:6]
    handle.remove()
    assert [tuple(s) for s in shapes] == [(1, 3, 4, 16), (1, 1, 4, 16), (1, 1, 4, 16)]
    narrow = tiny(sliding_window=4)
    assert llmarch.generate(narrow, [[5, 6, 7]], max_new_tokens=8)[0] == greedy_by_recompute(narrow, [5, 6, 7], 8)


def _host_reads(model, ids, n: int, **kwargs) -> int:
    """How many times generate reads a tensor's value on the host (bool, item, tolist, numpy, int, float):
    each is a device sync on a GPU."""
    calls = []
    names = ("__bool__", "item", "tolist", "numpy", "__int__", "__float__", "__index__")
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def counting(name):
        def read(self, *args, **kw):
            calls.append(name)
            return originals[name](self, *args, **kw)
        return read

    try:
        for name in names:
            setattr(torch.Tensor, name, counting(name))
        llmarch.generate(model, ids, max_new_tokens=n, **kwargs)
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
    return len(calls)


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 0}])
def test_the_decode_loop_reads_nothing_back_to_the_host(kwargs):
    """The host reads (syncs on a GPU) of a whole generate call do not grow with the number of new tokens: none
    happen inside the decode loop (greedy or sampled, no eos_id)."""
    model = tiny("llama-tiny")
    ids = torch.randint(0, 97, (2, 5))
    assert _host_reads(model, ids, 3, **kwargs) == _host_reads(model, ids, 12, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA sync debug mode needs a GPU")
def test_the_cuda_decode_loop_makes_no_synchronizing_call():
    """On a GPU, torch's sync debug mode warns at each synchronizing call: a whole generate call warns as often
    for 12 new tokens as for 3."""
    import warnings

    model = tiny("llama-tiny").cuda()
    ids = torch.randint(0, 97, (2, 5), device="cuda")
    llmarch.generate(model, ids, max_new_tokens=2)  # warm-up: lazy initialisations may sync once

    def syncs(n: int) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                llmarch.generate(model, ids, max_new_tokens=n)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)

    assert syncs(3) == syncs(12)


def test_stop_sequences_end_a_row_and_eos_still_does():
    """A row ends once its new tokens end with a stop sequence (kept), the others run on; as tensors, an ended
    row holds the fill id after its end. Stops that never occur change nothing."""
    model = tiny()
    prompts = [[5, 6, 7], [40, 41]]
    free = llmarch.generate(model, prompts, max_new_tokens=10)
    first_new = free[0][3:5]  # row 0's first two new tokens, as a stop sequence
    stopped = llmarch.generate(model, prompts, max_new_tokens=10, stop=[first_new])
    assert stopped[0] == free[0][:5]
    new = free[1][2:]
    ends = [j + 2 for j in range(len(new) - 1) if new[j:j + 2] == first_new]
    assert stopped[1] == (free[1][:2 + ends[0]] if ends else free[1])  # row 1 runs on to its own end, if any
    assert llmarch.generate(model, prompts, max_new_tokens=10, stop=[[96, 96, 96, 96]]) == free
    eos = free[1][3]
    assert llmarch.generate(model, prompts, max_new_tokens=10, eos_id=eos)[1] == free[1][:free[1].index(eos, 2) + 1]
    with pytest.raises(LlmarchError, match="stop sequences"):
        llmarch.generate(model, prompts, max_new_tokens=4, stop=[[]])


def test_a_seeded_row_samples_what_it_samples_alone():
    """With a seed, each row draws from a generator of its own: a prompt's sampled tokens do not depend on the
    other prompts of its batch, nor on its place (one generator for the batch gave three different answers)."""
    torch.manual_seed(0)
    model = llmarch.build("gpt-tiny", vocab_size=64, n_layers=1, d_model=32, n_heads=2, context_length=64).eval()
    p, q = [5, 9, 13], [7, 7, 2, 30, 1]
    alone = llmarch.generate(model, [p], 20, temperature=1.0, seed=3)[0]
    assert llmarch.generate(model, [p, q], 20, temperature=1.0, seed=3)[0] == alone
    assert llmarch.generate(model, [q, p], 20, temperature=1.0, seed=3)[1] == alone
    assert llmarch.generate(model, [p], 20, temperature=1.0, seed=4)[0] != alone
