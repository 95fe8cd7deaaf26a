"""Per-layer types (config.layer_types / layer_overrides): each block is built from its type's config, a type
with its own rotary positions gets its own tables, and the model stays causal, decodes from its caches as its
full forward, and saves and loads."""
import pytest
import torch

import llmarch
from llmarch.checkpoint import save_model
from llmarch.errors import LlmarchError

# Gemma-3-like: sliding layers with a local RoPE base, a full layer with the global one; SmolLM3-like: NoPE
TYPES = dict(layer_types=["local", "local", "global", "nope"],
             layer_overrides={"local": {"sliding_window": 6, "rope_theta": 10000.0},
                              "nope": {"positions": "none"}})
BASE = dict(vocab_size=61, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, context_length=64, rope_theta=1e6)


def build():
    torch.manual_seed(0)
    return llmarch.build("llama-tiny", **BASE, **TYPES).eval()


def test_each_block_is_built_from_its_layer_type():
    model = build()
    cfg = model.config
    assert [cfg.for_layer(i).attention for i in range(4)] == ["sliding_window", "sliding_window", "full", "full"]
    assert [cfg.for_layer(i).rope_theta for i in range(4)] == [1e4, 1e4, 1e6, 1e6]
    assert set(model.layer_positions) == {"local", "nope"}
    assert model.blocks[0].attn.kind.__class__.__name__ != model.blocks[2].attn.kind.__class__.__name__


def test_layer_types_change_the_logits_and_decode_from_the_cache():
    model = build()
    plain = llmarch.build("llama-tiny", **BASE).eval()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 61, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
        assert (full - plain(ids).logits).abs().max() > 1e-3  # the types do something
        model.setup_cache(2, 24)
        steps = [model(ids[:, :16], input_pos=torch.arange(16), kv_len=16).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(16, 24)]
        model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def test_nope_layers_are_layers_without_positions():
    """Every layer NoPE is the same model as positions 'none' throughout."""
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **dict(BASE, n_layers=2), layer_types=["n", "n"],
                          layer_overrides={"n": {"positions": "none"}}).eval()
    with torch.no_grad():  # sharp attention, so that positions matter
        for block in model.blocks:
            block.attn.qkv_proj.weight.mul_(20)
    plain = llmarch.build("llama-tiny", **dict(BASE, n_layers=2), positions="none").eval()
    plain.load_state_dict(model.state_dict())
    rope = llmarch.build("llama-tiny", **dict(BASE, n_layers=2)).eval()
    rope.load_state_dict(model.state_dict())
    ids = torch.randint(0, 61, (1, 10))
    with torch.no_grad():
        assert (model(ids).logits - plain(ids).logits).abs().max() == 0
        assert (model(ids).logits - rope(ids).logits).abs().max() > 1e-3


def test_saved_and_loaded_with_the_types(tmp_path):
    model = build()
    save_model(model, tmp_path / "m")
    loaded = llmarch.load(tmp_path / "m")
    ids = torch.randint(0, 61, (1, 20))
    with torch.no_grad():
        assert (loaded(ids).logits - model(ids).logits).abs().max() == 0
    assert loaded.config.layer_types == TYPES["layer_types"]


@pytest.mark.parametrize("bad, message", [
    (dict(layer_types=["a"]), "layer_types has 1 entries for n_layers=4"),
    (dict(layer_types=["a"] * 4, layer_overrides={"b": {}}), "names type 'b'"),
    (dict(layer_types=["a"] * 4, layer_overrides={"a": {"d_model": 8}}), "sets d_model, which cannot vary"),
    (dict(layer_types=["a"] * 4, layer_overrides={"a": {"positions": "learned"}}), "rope and none only"),
    (dict(layer_overrides={"a": {}}), "needs layer_types"),
    (dict(layer_types="aaaa"), "layer_types must be a list"),
])
def test_bad_layer_types_are_one_line_errors(bad, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.build("llama-tiny", **BASE, **bad)
