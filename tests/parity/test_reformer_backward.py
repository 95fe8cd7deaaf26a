"""Reformer's reversible backward (config reversible_backward, layers/reversible_backward.py) in fp32: the gradients
of every parameter equal plain autograd's through stored activations, with dropout replayed and without, with LSH
(hashed: longer than its chunk) and local layers; they equal transformers' own reversible backward
(ReformerModelWithLMHead in train mode, dropout 0); the activations autograd holds do not grow with depth; and a
training run goes through it."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import perturbed_from_hf

import llmarch
from llmarch.interop.hf import FAMILIES
from llmarch.interop.mapping import export_state
from llmarch.models import stack
from llmarch.errors import LlmarchError
from llmarch.train import TrainConfig, train
from llmarch.transforms import for_training

V, L = 97, 32


def hf_model() -> transformers.ReformerModelWithLMHead:
    """Training needs transformers' axial shape to multiply to the sequence length (4 x 8 = L)."""
    torch.manual_seed(0)
    hf = transformers.ReformerModelWithLMHead(transformers.ReformerConfig(
        vocab_size=V, hidden_size=32, num_attention_heads=2, attention_head_size=8,
        attn_layers=["local", "lsh", "lsh", "local"], axial_pos_shape=[4, 8], axial_pos_embds_dim=[12, 20],
        max_position_embeddings=L, feed_forward_size=48, num_buckets=4, num_hashes=2, hash_seed=7,
        lsh_attn_chunk_length=8, local_attn_chunk_length=4, is_decoder=True, hidden_dropout_prob=0.0,
        local_attention_probs_dropout_prob=0.0, lsh_attention_probs_dropout_prob=0.0, pad_token_id=0,
        eos_token_id=None))
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() > 1:
                p.add_(torch.randn_like(p) * 0.1)
    return hf


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    hf = hf_model()
    return hf, perturbed_from_hf(hf, tmp_path_factory.mktemp("reformer"))


def ids() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(1, V, (2, L))


def grads(model, x: torch.Tensor, seed: int = 5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A training step's loss (next-token cross-entropy) and every parameter's gradient."""
    model.train().zero_grad()
    torch.manual_seed(seed)
    logits = model(x).logits
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def variant(model, **fields):
    """The model's weights under a config with `fields` changed."""
    other = llmarch.build(dataclasses.replace(model.config, **fields))
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_gradients_equal_plain_autograd(pair, dropout):
    """Dropout 0.2 in every sublayer and on the embeddings, the same masks in both (the same seed before each step):
    the reversible backward replays each sublayer's masks in its recomputation."""
    _, ours = pair
    assert ours.config.reversible_backward  # what a Reformer checkpoint implies
    rev, plain = variant(ours, dropout=dropout), variant(ours, dropout=dropout, reversible_backward=False)
    x = ids()
    loss, g = grads(rev, x)
    plain_loss, want = grads(plain, x)
    assert torch.equal(loss, plain_loss) and g.keys() == want.keys() == dict(rev.named_parameters()).keys()
    assert max((g[n] - want[n]).abs().max().item() for n in want) <= 1e-5
    if dropout:  # the masks were drawn: the loss differs from the one without dropout
        assert (loss - grads(ours, x)[0]).abs() > 1e-3


def test_gradients_equal_transformers(pair):
    """transformers' _ReversibleFunction runs on the CPU in train mode; its gradients named as ours."""
    hf, ours = pair
    x = ids()
    hf.train().zero_grad()
    theirs = hf(x, labels=x).loss
    theirs.backward()
    loss, g = grads(ours, x)
    assert (loss - theirs).abs() <= 1e-5
    cfg = ours.config
    mine = export_state(g, FAMILIES["reformer"].rules_for(cfg), cfg)
    want = {n: p.grad for n, p in hf.named_parameters() if p.grad is not None}
    assert mine.keys() == want.keys()
    gap = max((mine[n] - want[n]).abs().max().item() for n in want)
    assert gap <= 1e-4, gap


def test_recomputation_hashes_as_the_forward(pair):
    """The buckets are kept from the forward: rotations changed between the forward and the backward (which would
    sort every LSH layer otherwise in a recomputation that hashed again) leave the gradients as they were."""
    _, ours = pair
    x = ids()
    _, want = grads(ours, x)
    lsh = [b.attn.kind for b in ours.blocks if b.attn.kind.name == "lsh_chunks"]
    kept = [kind.rotations for kind in lsh]
    ours.zero_grad()
    logits = ours(x).logits
    for kind in lsh:
        kind.rotations = torch.randn_like(kind.rotations)
    try:
        F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten()).backward()
    finally:
        for kind, rot in zip(lsh, kept):
            kind.rotations = rot
    assert max((p.grad - want[n]).abs().max().item() for n, p in ours.named_parameters()) <= 1e-5


def saved_activation_bytes(model, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward in a training forward, counted once per storage,
    parameters left out."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x).logits
    del logits
    return sum(seen.values())


@pytest.mark.parametrize("reversible", [True, False])
def test_activation_memory_independent_of_depth(pair, reversible):
    _, ours = pair
    cfg = ours.config
    saved = {n: saved_activation_bytes(llmarch.build(dataclasses.replace(
        cfg, n_layers=n, layer_types=["local", "lsh"] * (n // 2), reversible_backward=reversible)), ids())
        for n in (2, 8)}
    if reversible:
        assert saved[2] == saved[8]
    else:
        assert saved[8] > saved[2] * 2


def test_training_runs_through_it(pair, tmp_path, corpus, monkeypatch):
    """`llmarch train` on a tiny reformer config (byte tokens): its steps go through the reversible backward."""
    calls = []
    real = stack.reversible_blocks
    monkeypatch.setattr(stack, "reversible_blocks", lambda *a: calls.append(1) or real(*a))
    cfg = dataclasses.replace(pair[1].config, vocab_size=260, n_layers=2, layer_types=["local", "lsh"], dropout=0.1)
    tc = TrainConfig(steps=2, batch_size=2, eval_every=2, eval_tokens=128, tokenizer="byte", data=corpus)
    result = train(cfg, tc, tmp_path / "run", verbose=False)
    assert len(calls) >= 2 and all(torch.isfinite(torch.tensor(list(result.losses.values()))))
    assert llmarch.load(result.checkpoint).config.reversible_backward


def test_refusals(pair):
    """FSDP gathers a block's shards in hooks around its forward, which the reversible stack does not call; blocks
    that are not reversible have no inputs to recompute."""
    with pytest.raises(LlmarchError, match="reversible_backward"):
        for_training(pair[1], "fsdp", torch.device("cpu"))
    with pytest.raises(LlmarchError, match="reversible_backward"):
        llmarch.resolve("llama-tiny", reversible_backward=True)
