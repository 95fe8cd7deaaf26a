"""Chunked attention (layers/attention_kinds/chunked.py; Llama 4's RoPE layers): a whole unpadded sequence runs
blockwise over the keys each query block gathers; that equals attention under the dense definition (the keys of
the query's own chunk, causal or not) whatever the chunk and block sizes, and a left-padded row is chunked from its
first real token."""
import pytest
import torch
import torch.nn.functional as F

from llmarch.layers.attention_kinds.chunked import Chunks
from llmarch.layers.sparse_attention import blockwise_attention


def dense(q, k, v, chunk, causal, pos):
    """Attention over the keys j with pos[j] // chunk == pos[i] // chunk (and j <= i causal), by definition."""
    i, j = torch.arange(q.shape[2])[:, None], torch.arange(k.shape[2])[None, :]
    allowed = (pos[:, :, None] // chunk == pos[:, None, :] // chunk) & ((j <= i) if causal else True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])


@pytest.mark.parametrize("chunk, block", [(20, 8), (8, 20), (8, 8), (5, 3), (64, 8)])
@pytest.mark.parametrize("causal", [True, False])
def test_blockwise_equals_the_dense_definition(chunk, block, causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 45, 8) for _ in range(3))
    out = blockwise_attention(q, k, v, Chunks(chunk, block), causal, None)
    assert (out - dense(q, k, v, chunk, causal, torch.arange(45)[None])).abs().max() < 1e-5


def test_padded_rows_are_chunked_from_their_first_real_token():
    from llmarch.layers.attention_kinds.chunked import ChunkedKind
    import llmarch

    cfg = llmarch.resolve("llama-tiny", attention="chunked", attention_chunk=4)
    kind = ChunkedKind(cfg, 0)
    pad = torch.tensor([[True] * 10, [False] * 3 + [True] * 7])
    rows = kind.rows(torch.arange(10), 10, pad)[:, 0]  # (B, T, S)
    assert rows[0, 5].tolist() == [False] * 4 + [True] * 2 + [False] * 4  # positions 4, 5 of chunk [4, 8)
    # row 1's slot 8 is position 5: its chunk holds positions 4, 5, at slots 7, 8
    assert rows[1, 8].tolist() == [False] * 7 + [True] * 2 + [False]
    assert rows[1, 1].tolist() == [False, True] + [False] * 8  # a padded query sees itself only


@pytest.mark.parametrize("chunk", [4, 8])
def test_decoding_keeps_one_chunk_of_slots(chunk):
    """generate's eager decoding (bounded) keeps a ring of `chunk` slots on a chunked layer, and gives the same
    logits at every step as the whole cache, left-padded rows included (their chunks count from their first real
    token, so the two rows' chunk boundaries fall at different slots)."""
    from test_ring_cache import step_logits

    from conftest import tiny
    from llmarch.layers.ring_cache import RingKVCache

    model = tiny("llama-tiny", attention="chunked", attention_chunk=chunk, context_length=64).eval()
    torch.manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (2, 11))
    mask = torch.ones_like(prompt)
    mask[1, :3] = 0
    for m in (None, mask):
        full, full_states = step_logits(model, prompt, m, 25, bounded=False)
        ring, ring_states = step_logits(model, prompt, m, 25, bounded=True)
        worst = max((a - b).abs().max().item() for a, b in zip(full, ring))
        assert worst < 1e-5, worst
    assert all(isinstance(s, RingKVCache) and s.k.shape[2] == chunk for s in ring_states)
    assert ring_states[0].nbytes * (11 + 25) == full_states[0].nbytes * chunk
