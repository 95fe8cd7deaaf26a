"""Continuous batching (generate/batch.py): requests of different lengths that join a running batch at
different steps, leave it, and make it move left (the pointer at the cache's end) and right (a prompt longer
than the pointer), each get the greedy tokens `generate` gives them alone, for every kind of decode state."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.generate import generate
from llmarch.generate.batch import RunningBatch
from llmarch.models import TransformerLM
from llmarch.presets import resolve

SMALL = dict(n_layers=2, vocab_size=300, context_length=48)
MODELS = {
    "llama-tiny": dict(d_model=64, n_heads=4, n_kv_heads=2, ffn_hidden=128),
    "alibi-tiny": {},
    "gemma3-tiny": dict(n_layers=6, layer_overrides={"sliding_attention": {"sliding_window": 8}}),  # windows
    "mamba-tiny": {},
    "mamba2-tiny": {},
    "hyena-tiny": {},  # a history indexed by slot
    "hybrid-tiny": {},
    "gated-deltanet-tiny": {},
    "griffin-tiny": dict(n_layers=3, layer_types=["recurrent", "recurrent", "attention"], sliding_window=8),
    "performer": dict(attention="performer"),  # a linear-attention state
    "chunked": dict(attention="chunked", attention_chunk=8),  # a ring of one chunk's slots
}


def tiny(name: str) -> TransformerLM:
    torch.manual_seed(0)
    over = dict(MODELS[name])
    preset = "llama-tiny" if name in ("performer", "chunked") else name
    return TransformerLM(resolve(preset, **{**SMALL, **over}))


def run_batch(model, prompts, news, rows, join_every):
    """Requests join (one every join_every steps, when a row is free) and leave when done; -> each one's new
    greedy tokens, and the directions the batch moved."""
    batch = RunningBatch(model, rows)
    moves = []
    shift = batch._shift
    batch._shift = lambda n: (moves.append(n), shift(n))
    outs = [[] for _ in prompts]
    row_of, waiting, tok, step = {}, list(range(len(prompts))), torch.zeros(rows, dtype=torch.long), 0
    while waiting or row_of:
        if waiting and batch.free_rows() and step % join_every == 0:
            i, r = waiting.pop(0), batch.free_rows()[0]
            states, logits = batch.prefill(prompts[i])
            batch.join(r, states, len(prompts[i]))
            tok[r] = int(logits.argmax())
            outs[i].append(int(tok[r]))
            row_of[r] = i
        for r, i in list(row_of.items()):
            if len(outs[i]) == news[i]:
                batch.leave(r)
                del row_of[r]
        step += 1
        if row_of:
            logits = batch.decode(tok)
            for r, i in row_of.items():
                tok[r] = int(logits[r].argmax())
                outs[i].append(int(tok[r]))
    batch.close()
    return outs, moves


@pytest.mark.parametrize("name", list(MODELS))
def test_joining_requests_decode_as_alone(name):
    model = tiny(name)
    g = torch.Generator().manual_seed(1)
    lengths = [3, 20, 5, 30, 1, 12]
    news = [20, 9, 25, 12, 30, 10]
    prompts = [torch.randint(0, 300, (n,), generator=g).tolist() for n in lengths]
    alone = [generate(model, [p], n)[0][len(p):] for p, n in zip(prompts, news)]
    outs, moves = run_batch(model, prompts, news, rows=3, join_every=3)
    assert outs == alone
    assert any(n > 0 for n in moves) and any(n < 0 for n in moves)  # moved left at the end, right for a prompt


def test_rows_are_checked():
    model = tiny("llama-tiny")
    with pytest.raises(LlmarchError, match="at least one row"):
        RunningBatch(model, 0)
    with pytest.raises(LlmarchError, match="3 parallel token streams"):  # MusicGen's codebooks: not one text stream
        RunningBatch(TransformerLM(resolve("llama-tiny", **{**SMALL, "codebooks": 3})), 1)
    batch = RunningBatch(model, 1)
    states, _ = batch.prefill([1, 2])
    batch.join(0, states, 2)
    with pytest.raises(LlmarchError, match="taken"):
        batch.join(0, states, 2)
    with pytest.raises(LlmarchError, match="1 to 48 tokens"):
        batch.prefill([])
