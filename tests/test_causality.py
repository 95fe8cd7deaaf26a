"""Every causal attention kind and every sequence mixer, whichever is registered: a later token never changes
an earlier position's logits, and cached decoding (a prompt, then one token at a time) gives the logits of one
forward over the whole sequence. New kinds and mixers are picked up from the registries."""
import pytest
import torch

import llmarch
from llmarch.layers import ATTENTION_KINDS, MIXERS
from llmarch.layers.attention_kinds import windowed_kinds

L = 96  # with attention_block 8: 12 blocks, so sparse patterns and LSH's chunks really split the sequence
BASE = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, context_length=128, attention_block=8,
            ssm_head_dim=16, performer_features=32, lsh_buckets=4, lsh_rounds=2, attention_chunk=20)
# what a mixer needs beyond BASE: the mixture of attention heads routes among experts (n_heads = k x kv heads);
# CCA with grouped keys (its residual paths mix each key head with its group of queries); DeepSeek-V4's attention
# (one key/value head, a compressed query), here with its mhc hyper-connections too
NEEDS = {"moa": dict(n_experts=4, experts_per_token=2, n_kv_heads=2), "cca": dict(n_kv_heads=2, cca_group_conv=3),
         "shared_kv": dict(n_kv_heads=1, q_lora_rank=16, o_groups=2, attn_sinks=True, hyper_connection="mhc",
                           hc_streams=3)}
# what an attention kind needs beyond BASE: ProphetNet's n-gram attention runs over the predicting stream the stack
# appends (ngram_streams), placed by absolute positions; Reformer's sorted LSH chunks are causal only within one chunk
# (beyond it, where later tokens hash decides which earlier keys share a query's chunk: attention_kinds/reformer.py),
# so its sequences here fit one chunk
KIND_NEEDS = {"ngram": dict(ngram_streams=2, positions="learned"), "lsh_chunks": dict(attention_chunk=L)}
CASES = [("attention", kind) for kind in ATTENTION_KINDS.names()
         if not ATTENTION_KINDS[kind].bidirectional_only] + \
        [(mixer, "full") for mixer in MIXERS.names() if mixer != "attention" and not MIXERS[mixer].bidirectional_only]


def build(mixer: str, kind: str):
    torch.manual_seed(0)
    window = dict(sliding_window=12) if kind in windowed_kinds() else {}
    needs = ATTENTION_KINDS[kind].needs_positions  # disentangled attention reads its relative embeddings
    positions = dict(positions=needs) if needs else {}
    return llmarch.build("llama-tiny", **{**BASE, **NEEDS.get(mixer, {}), **KIND_NEEDS.get(kind, {})}, mixer=mixer,
                         attention=kind, **window, **positions).eval()


@pytest.mark.parametrize("mixer, kind", CASES)
def test_the_future_leaves_earlier_logits_unchanged(mixer, kind):
    model = build(mixer, kind)
    torch.manual_seed(1)
    ids = torch.randint(0, 61, (2, L))
    changed = ids.clone()
    changed[:, 60:] = torch.randint(0, 61, (2, L - 60))
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert (a[:, :60] - b[:, :60]).abs().max() < 1e-5
    assert (a[:, 60:] - b[:, 60:]).abs().max() > 1e-3  # the change does reach what follows it


@pytest.mark.parametrize("mixer, kind", CASES)
def test_cached_decoding_equals_the_full_forward(mixer, kind):
    model = build(mixer, kind)
    torch.manual_seed(2)
    ids = torch.randint(0, 61, (2, 48))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_cache(2, 48)
        steps = [model(ids[:, :40], input_pos=torch.arange(40), kv_len=40).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(40, 48)]
        model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
