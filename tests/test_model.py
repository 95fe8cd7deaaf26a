import pytest
import torch
import torch.nn.functional as F

from llmarch import LlmarchError

from conftest import tiny

VARIANTS = [("llama-tiny", dict(n_kv_heads=4)),  # MHA
            ("llama-tiny", dict(n_kv_heads=2)),  # GQA
            ("llama-tiny", dict(n_kv_heads=1)),  # MQA
            ("gpt-tiny", dict()),  # learned positions, LayerNorm, tied head
            ("gpt-tiny", dict(block="parallel", positions="rope"))]


@pytest.mark.parametrize("base, kw", VARIANTS)
def test_causality(base, kw):
    model = tiny(base, **kw)
    x = torch.randint(0, 97, (1, 24))
    y = x.clone()
    y[0, 11:] = torch.randint(0, 97, (13,))
    a, b = model(x).logits, model(y).logits
    assert torch.equal(a[:, :11], b[:, :11])
    assert not torch.allclose(a[:, 11:], b[:, 11:])


@pytest.mark.parametrize("sliced", [False, True])  # True: attention reads only the filled slots (kv_len)
@pytest.mark.parametrize("base, kw", VARIANTS)
def test_kv_cache_decode_equals_full_recompute(base, kw, sliced):
    model = tiny(base, **kw)
    x = torch.randint(0, 97, (2, 20))
    full = model(x).logits
    model.setup_cache(2, 24)
    steps = [model(x[:, :8], input_pos=torch.arange(8), kv_len=8 if sliced else None).logits]
    for t in range(8, 20):
        steps.append(model(x[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1 if sliced else None).logits)
    model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5


@pytest.mark.parametrize("base, kw", VARIANTS)
def test_left_padded_batch_matches_unpadded_rows(base, kw):
    """A short prompt left-padded in a batch gives the same logits (prefill and cached decode) as alone."""
    model = tiny(base, **kw)
    long, short = torch.randint(0, 97, (1, 12)), torch.randint(0, 97, (1, 7))
    pad = 5
    batch = torch.cat([long, torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1)])
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, :pad] = 0
    alone = model(torch.cat([short, torch.randint(0, 97, (1, 4))], 1)).logits
    model.setup_cache(2, 16)
    pre = model(batch, attention_mask=mask, input_pos=torch.arange(12)).logits
    assert (pre[1, pad:] - alone[0, :7]).abs().max() < 1e-5
    assert (pre[0] - model_full(model, long)[0]).abs().max() < 1e-5
    nxt = torch.cat([torch.randint(0, 97, (1, 1)), alone.new_zeros(1, 1, dtype=torch.long)])
    follow = torch.randint(0, 97, (1, 1))
    nxt = torch.tensor([[5], [int(follow)]])
    step = model(nxt, attention_mask=mask, input_pos=torch.tensor([12])).logits
    model.clear_cache()
    ref = model(torch.cat([short, follow], 1)).logits
    assert (step[1, 0] - ref[0, -1]).abs().max() < 1e-5


def model_full(model, x):
    cache = [b.attn.cache for b in model.blocks]
    for b in model.blocks:
        b.attn.cache = None
    out = model(x).logits
    for b, c in zip(model.blocks, cache):
        b.attn.cache = c
    return out


@pytest.mark.parametrize("base", ["gpt-tiny", "llama-tiny"])
def test_overfits_one_batch(base):
    torch.manual_seed(0)
    model = tiny(base).train()
    x = torch.randint(0, 97, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.cross_entropy(model(x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_bad_token_ids_and_lengths():
    model = tiny()
    with pytest.raises(LlmarchError, match="token id 97 out of range"):
        model(torch.tensor([[1, 97]]))
    with pytest.raises(LlmarchError, match="longer than context_length"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(LlmarchError, match="integer tensor"):
        model(torch.zeros(1, 3))


def test_inputs_no_part_reads_are_refused():
    """Boxes, language or task ids given to a model without tables for them were dropped without a word. (Token
    types are not refused: transformers ignores them where nothing reads them, as tokenizers hand them to all.)"""
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(LlmarchError, match="no box embeddings"):
        tiny()(ids, bbox=torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(LlmarchError, match="neither language embeddings"):
        tiny()(ids, lang_ids=torch.tensor([0]))
    with pytest.raises(LlmarchError, match="no task-type embeddings"):
        tiny()(ids, task_type_ids=torch.zeros_like(ids))
    boxes = tiny(box_vocab_size=16)
    assert boxes(ids, bbox=torch.ones(1, 3, 4, dtype=torch.long)).logits.shape == (1, 3, 97)
    assert tiny(lang_vocab_size=3)(ids, lang_ids=torch.tensor([2])).logits.shape == (1, 3, 97)
    assert tiny(task_type_vocab_size=2)(ids, task_type_ids=torch.ones_like(ids)).logits.shape == (1, 3, 97)
    as_tokens = tiny(type_ids_from_tokens=True)  # GPT-2's family: a type is a token's row, added
    with torch.no_grad():
        assert torch.equal(as_tokens(ids, token_type_ids=torch.zeros_like(ids)).logits,
                           as_tokens(ids, token_type_ids=torch.zeros_like(ids)).logits)
        assert not torch.allclose(as_tokens(ids).logits, as_tokens(ids, token_type_ids=torch.ones_like(ids)).logits)
    with pytest.raises(LlmarchError, match="token_type_ids .* must have input_ids' shape"):
        as_tokens(ids, token_type_ids=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(LlmarchError, match="token id 97 out of range"):
        as_tokens(ids, token_type_ids=torch.full_like(ids, 97))


def test_hook_points_see_activations():
    model = tiny(attention="eager")
    seen = {}
    names = ["hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.0.attn.hook_pattern",
             "blocks.0.attn.hook_q", "blocks.0.hook_mlp_out", "ln_final.hook_normalized"]
    modules = dict(model.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda m, i, o, name=name: seen.update({name: o.shape}) and None)
    model(torch.randint(0, 97, (2, 10)))
    assert seen["blocks.0.attn.hook_pattern"] == (2, 4, 10, 10)
    assert seen["blocks.0.attn.hook_q"] == (2, 10, 4, 16)
    assert set(seen) == set(names)


def test_bidirectional_models_refuse_left_to_right_use(tmp_path):
    import llmarch
    from llmarch.train import TrainConfig, train

    model = tiny("bert-tiny")
    with pytest.raises(LlmarchError, match="bidirectional"):
        llmarch.generate(model, [[1, 2]], max_new_tokens=2)
    with pytest.raises(LlmarchError, match="bidirectional"):
        train(model.config, TrainConfig(steps=1, tokenizer="byte", data=__file__), tmp_path, verbose=False)
