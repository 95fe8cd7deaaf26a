"""Efficient attention kinds (layers/sparse_attention.py, layers/linear_attention.py): each mask-based kind
computed blockwise equals dense attention under the equivalent explicit mask (fp32, 1e-5), bidirectional
and causal, with padding; linear attention's chunked and recurrent forms equal its quadratic form;
performer's error against softmax attention falls as features grow; every causal kind is causal; models
with each kind train and decode with a cache as a full recomputation does."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import llmarch
from llmarch.models import TransformerLM
from llmarch.layers.linear_attention import EluFeatures, FavorFeatures, LinearState, linear_attention
from llmarch.layers.sparse_attention import (BigBird, FixedStrided, SlidingWindow, blockwise_attention,
                                             flex_sparse_attention, row_mask)

PATTERNS = {
    "sliding_window": lambda causal: SlidingWindow(window=11, block=8),
    "strided": lambda causal: FixedStrided(stride=8, summary=3),
    "block_sparse": lambda causal: BigBird(block=8, n_global=1, n_random=2, max_blocks=16, seed=3, causal=causal),
}


def qkv(B=2, H=4, K=2, L=70, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, L, D, generator=g), torch.randn(B, K, L, D, generator=g),
            torch.randn(B, K, L, D, generator=g))


@pytest.mark.parametrize("kind", sorted(PATTERNS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_blockwise_equals_dense_attention_with_the_explicit_mask(kind, causal, padded):
    q, k, v = qkv()
    L = q.shape[2]
    pattern = PATTERNS[kind](causal)
    pad = None
    if padded:  # left padding, as generation batches have
        pad = torch.ones(2, L, dtype=torch.bool)
        pad[1, :9] = False
    mask = row_mask(pattern, torch.arange(L), L, causal, pad)
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    got = blockwise_attention(q, k, v, pattern, causal, None, pad)
    assert (got - dense).abs().max() < 1e-5
    # the pattern really is sparse: most pairs are excluded
    assert mask.float().mean() < (0.6 if causal else 0.7)


def test_patterns_are_what_the_papers_draw():
    i = torch.arange(32)
    q, k = i[:, None], i[None, :]
    window = SlidingWindow(window=3, block=8).allowed(q, k)
    assert window[10].nonzero().flatten().tolist() == [8, 9, 10, 11, 12]
    fixed = FixedStrided(stride=8, summary=2).allowed(q, k)
    assert fixed[10].nonzero().flatten().tolist() == [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 22, 23, 30, 31]
    bird = BigBird(block=4, n_global=1, n_random=1, max_blocks=8, seed=0, causal=False)
    adj = bird.adjacency
    assert adj[0].all() and adj[:, 0].all()  # the global block sees and is seen by every block
    assert adj.diagonal().all() and adj.diagonal(1).all() and adj.diagonal(-1).all()  # the band
    assert (adj[2:].sum(1) <= 1 + 3 + 1).all() and (adj[2:].sum(1) >= 4).all()  # + one random block each
    again = BigBird(block=4, n_global=1, n_random=1, max_blocks=8, seed=0, causal=False).adjacency
    assert torch.equal(adj, again)  # fixed by the seed


def _quadratic_linear(fq, fk, v, causal):
    scores = fq @ fk.transpose(-1, -2)
    if causal:
        scores = scores.tril()
    return (scores @ v) / scores.sum(-1, keepdim=True)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_chunked_and_recurrent_forms_equal_the_quadratic_form(causal):
    q, k, v = qkv(K=4, L=37)
    phi = EluFeatures()
    fq, fk = phi(q, True), phi(k, False)
    expected = _quadratic_linear(fq, fk, v, causal)
    assert (linear_attention(fq, fk, v, causal, chunk=8) - expected).abs().max() < 1e-5
    if causal:  # token by token with a carried state: the recurrent (RNN) form
        state = LinearState(2, 4, 16, 16, "cpu")
        steps = [linear_attention(fq[:, :, t:t + 1], fk[:, :, t:t + 1], v[:, :, t:t + 1], True, state)
                 for t in range(37)]
        assert (torch.cat(steps, dim=2) - expected).abs().max() < 1e-5


def test_performer_approaches_softmax_attention_as_features_grow():
    q, k, v = qkv(B=1, H=2, K=2, L=32, D=16, seed=1)
    q, k = q * 0.5, k * 0.5
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = []
    for m in (8, 32, 128, 512, 2048):
        trials = []
        for seed in range(6):
            phi = FavorFeatures(16, m, 16 ** -0.5, seed)
            trials.append((linear_attention(phi(q, True), phi(k, False), v, False) - exact).abs().mean())
        errors.append(torch.stack(trials).mean().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.25 * errors[0]


KINDS = {"sliding_window": dict(attention="sliding_window", sliding_window=6),
         "strided": dict(attention="strided", strided_summary=2), "block_sparse": dict(attention="block_sparse",
                                                                                      global_blocks=1,
                                                                                      random_blocks=1),
         "linear": dict(attention="linear"), "performer": dict(attention="performer", performer_features=32),
         # one chunk covers these short sequences: prefill is then exactly what decoding attends to
         "lsh": dict(attention="lsh", attention_block=64, lsh_buckets=4, lsh_rounds=2)}


def kind_model(kind, **kw):
    torch.manual_seed(0)
    cfg = {**dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, context_length=64,
                  attention_block=4), **KINDS[kind], **kw}
    if kind == "lsh":
        cfg["n_kv_heads"] = 4  # keys are the queries
    return llmarch.build("gpt-tiny", **cfg).eval()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_causal_kind_is_causal(kind):
    model = kind_model(kind)
    ids = torch.randint(0, 61, (2, 40))
    changed = ids.clone()
    changed[:, 25:] = torch.randint(0, 61, (2, 15))
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert (a[:, :25] - b[:, :25]).abs().max() < 1e-5
    assert (a[:, 25:] - b[:, 25:]).abs().max() > 1e-3  # the future did change what follows it


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cached_decoding_equals_full_recomputation(kind):
    """Prefill then one token at a time (a KV cache, or the recurrent state of linear kinds) gives the
    logits of one forward over the whole sequence; left-padded batched generation equals each row alone."""
    model = kind_model(kind)
    ids = torch.randint(0, 61, (2, 30))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_cache(2, 30)
        try:
            steps = [model(ids[:, :12], input_pos=torch.arange(12), kv_len=12).logits]
            steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(12, 30)]
        finally:
            model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
    prompts = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [3, 4, 5]]
    batched = llmarch.generate(model, prompts, max_new_tokens=12)
    assert batched == [llmarch.generate(model, [p], max_new_tokens=12)[0] for p in prompts]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bidirectional_kinds_in_an_encoder(kind):
    """The same kinds in an encoder (bert-tiny): padding does not change the real tokens' outputs."""
    torch.manual_seed(0)
    model = llmarch.build("bert-tiny", **{**dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, context_length=64,
                                              attention_block=4), **KINDS[kind]}).eval()
    ids = torch.randint(0, 61, (1, 20))
    padded = torch.cat([ids, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 20), torch.zeros(1, 7)], dim=1).long()
    with torch.no_grad():
        a = model(ids).logits
        b = model(padded, attention_mask=mask).logits[:, :20]
    assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["linear", "sliding_window"])
def test_gpt_tiny_trains_with_the_kind(kind, tmp_path):
    from llmarch.train import TrainConfig, train

    tc = TrainConfig(steps=40, batch_size=8, eval_every=10, eval_tokens=2048, lr=3e-3, tokenizer="byte")
    extra = dict(sliding_window=16) if kind == "sliding_window" else {}
    cfg = llmarch.resolve("gpt-tiny", n_layers=2, context_length=64, vocab_size=257, attention=kind, **extra)
    vals = list(train(cfg, tc, tmp_path, verbose=False).val_losses.values())
    assert vals[-1] < vals[0] - 0.1


def test_causal_longformer_with_global_tokens_is_causal_and_decodes_from_a_cache():
    """A decoder with Longformer attention: the global tokens (in the prompt) see and are seen by every
    earlier token; changing the future changes no past logit; cached decoding equals recomputation."""
    torch.manual_seed(0)
    model = llmarch.build("gpt-tiny", vocab_size=61, d_model=32, n_layers=2, n_heads=4, context_length=64,
                          attention="longformer", sliding_window=5, attention_block=4).eval()
    ids = torch.randint(0, 61, (2, 30))
    glob = torch.zeros_like(ids)
    glob[:, 2], glob[1, 9] = 1, 1
    changed = ids.clone()
    changed[:, 20:] = torch.randint(0, 61, (2, 10))
    with torch.no_grad():
        full = model(ids, global_attention_mask=glob).logits
        assert (full[:, :20] - model(changed, global_attention_mask=glob).logits[:, :20]).abs().max() < 1e-5
        assert (full - model(ids).logits).abs().max() > 1e-3  # the global tokens matter
        model.setup_cache(2, 30)
        try:
            steps = [model(ids[:, :12], input_pos=torch.arange(12), kv_len=12, global_attention_mask=glob).logits]
            steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1,
                            global_attention_mask=glob).logits for t in range(12, 30)]
        finally:
            model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


@pytest.mark.parametrize("causal", [False, True])
def test_lsh_with_one_chunk_is_softmax_over_the_keys_sharing_a_bucket(causal):
    """Reformer's rounds merged with the log N_ij correction: exactly softmax attention over the keys that
    share a bucket with the query in some round (self at -1e5), which is what decoding attends to."""
    from llmarch.layers.lsh_attention import LSH, lsh_attention, shared_keys, union_mask

    q, _, v = qkv(K=4, L=40)
    pad = torch.ones(2, 40, dtype=torch.bool)
    pad[1, :7] = False
    lsh = LSH(16, n_buckets=4, n_rounds=3, chunk=64, seed=0)
    keys = shared_keys(q)
    mask = union_mask(lsh, keys, keys, torch.arange(40), causal, pad)
    dense = F.scaled_dot_product_attention(q, keys, v, attn_mask=mask, scale=0.25)
    real = pad[:, None, :, None].expand_as(dense)
    assert (lsh_attention(q, v, lsh, causal, 0.25, pad) - dense)[real].abs().max() < 1e-5
    assert torch.isinf(mask).float().mean() > 0.3  # buckets do exclude keys


def test_lsh_approaches_full_attention_as_rounds_grow():
    from llmarch.layers.lsh_attention import LSH, SELF, lsh_attention, shared_keys

    q, _, v = qkv(B=1, H=2, K=2, L=32, D=16, seed=2)
    keys = shared_keys(q)
    full_mask = torch.zeros(32, 32).fill_diagonal_(SELF)  # full attention with LSH's shared keys and self rule
    full = F.scaled_dot_product_attention(q, keys, v, attn_mask=full_mask, scale=0.25)
    errors = []
    for rounds in (1, 2, 4, 8, 16):
        trials = [(lsh_attention(q, v, LSH(16, 4, rounds, 64, seed), False, 0.25) - full).abs().mean()
                  for seed in range(5)]
        errors.append(torch.stack(trials).mean().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.1 * errors[0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # FlexAttention warns when run without torch.compile
@pytest.mark.parametrize("kind", sorted(PATTERNS))
@pytest.mark.parametrize("causal", [False, True])
def test_flex_attention_path_equals_blockwise(kind, causal):
    """The CUDA path (FlexAttention with the pattern as a mask_mod) run unfused on CPU, forward: the same
    attention as the blockwise path, padding included."""
    q, k, v = qkv(L=64)
    pattern = PATTERNS[kind](causal)
    pad = torch.ones(2, 64, dtype=torch.bool)
    pad[1, :9] = False
    flex = flex_sparse_attention(q, k, v, pattern, causal, None, pad, compiled=False)
    assert (flex - blockwise_attention(q, k, v, pattern, causal, None, pad)).abs().max() < 1e-5


def test_sliding_window_decode_step_reads_only_the_window():
    """One decoded token attends over the last `window` cache slots only (its cost is bounded by the window,
    not the context), and gives the logits of the full forward."""
    cfg = llmarch.resolve("llama-tiny", n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=64,
                          context_length=32, sliding_window=4, attn_impl="eager")
    torch.manual_seed(0)
    model = TransformerLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 12))
    widths = []
    model.blocks[0].attn.hook_pattern.register_forward_hook(lambda m, i, o: widths.append(o.shape[-1]))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_cache(1, 12)
        model(ids[:, :11], input_pos=torch.arange(11), kv_len=11)
        step = model(ids[:, 11:], input_pos=torch.tensor([11]), kv_len=12).logits
        model.clear_cache()
    assert widths[-1] == 4 and (step[0, -1] - full[0, -1]).abs().max() < 1e-5
