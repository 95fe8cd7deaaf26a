"""LoRA and DoRA as a transform on a built model (llmarch.adapters)."""
import pytest
import torch

import llmarch
from llmarch.adapters import (LoRAConfig, adapter_state, adapters_off, apply_lora, lora_layers, merge,
                              remove_lora, unmerge)
from llmarch.errors import LlmarchError

TINY = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=48, context_length=32)


def tiny(name="llama-tiny", **extra):
    torch.manual_seed(0)
    return llmarch.build(name, **{**TINY, **extra}).eval()


def ids(vocab=64, shape=(2, 12)):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(1))


def randomize_b(model):
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for b in layer.lora_B.values():
                b.normal_(0, 0.1)
            if layer.lora_magnitude is not None:
                for m in layer.lora_magnitude.values():
                    m.mul_(1.5)


@pytest.mark.parametrize("dora", [False, True])
def test_zero_b_leaves_logits_unchanged(dora):
    model, x = tiny(), ids()
    before = model(x).logits
    apply_lora(model, LoRAConfig(rank=4, targets=("qkv_proj", "o_proj", "gate_up", "down", "lm_head"), dora=dora))
    assert torch.equal(model(x).logits, before) if not dora else torch.allclose(model(x).logits, before, atol=1e-5)


@pytest.mark.parametrize("dora", [False, True])
def test_merge_and_unmerge(dora):
    model, x = tiny(), ids()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, LoRAConfig(rank=4, targets=("qkv_proj", "o_proj", "gate_up", "down"), dora=dora))
    randomize_b(model)
    adapted = model(x).logits
    merge(model)
    assert torch.allclose(model(x).logits, adapted, atol=1e-5)
    assert not torch.allclose(model.blocks[0].attn.qkv_proj.weight, base["blocks.0.attn.qkv_proj.weight"])
    unmerge(model)
    assert torch.allclose(model(x).logits, adapted, atol=1e-6)
    for k, v in base.items():
        assert torch.equal(model.state_dict()[k], v), k  # exactly: merge kept the rows it replaced


def test_only_adapters_get_gradients():
    model, x = tiny(), ids()
    apply_lora(model, LoRAConfig(rank=2, targets=("qkv_proj.q", "qkv_proj.v", "mlp.gate_up")))
    randomize_b(model)
    model.train()
    model(x).logits.sum().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in model.named_parameters() if p.grad is not None}
    assert trainable and all(".lora_" in n for n in trainable)
    qkv = model.blocks[0].attn.qkv_proj
    assert sorted(qkv.lora_A) == ["q", "v"]
    assert qkv.lora_B["q"].shape == (4 * 8, 2) and qkv.lora_B["v"].shape == (2 * 8, 2)


def test_slices_are_independent_loras():
    """The q slice's adapter changes only the q rows of the fused projection's output."""
    model = tiny()
    apply_lora(model, LoRAConfig(rank=2, targets=("qkv_proj.q",)))
    randomize_b(model)
    layer = model.blocks[0].attn.qkv_proj
    h = torch.randn(3, 32)
    delta = layer(h) - torch.nn.functional.linear(h, layer.weight, layer.bias)
    assert delta[:, 32:].abs().max() == 0 and delta[:, :32].abs().max() > 0


def test_scaling_rslora_and_dropout():
    model = tiny()
    apply_lora(model, LoRAConfig(rank=4, alpha=8, rslora=True, dropout=0.1))
    assert model.blocks[0].attn.o_proj.scalings == {"all": 4.0}
    assert isinstance(model.blocks[0].attn.o_proj.lora_dropout, torch.nn.Dropout)


def test_adapters_off_is_the_base_model():
    model, x = tiny(), ids()
    base = model(x).logits
    apply_lora(model)
    randomize_b(model)
    assert not torch.allclose(model(x).logits, base)
    with adapters_off(model):
        assert torch.equal(model(x).logits, base)


def test_state_names_of_the_base_unchanged_and_remove():
    model, x = tiny(), ids()
    names = set(model.state_dict())
    apply_lora(model, LoRAConfig(rank=2))
    state = model.state_dict()
    assert names <= set(state)
    assert set(adapter_state(model)) == set(state) - names
    assert "blocks.0.attn.qkv_proj.lora_A.k" in state
    randomize_b(model)
    adapted = model(x).logits
    merge(model)
    remove_lora(model)
    assert set(model.state_dict()) == names and not lora_layers(model)
    assert torch.allclose(model(x).logits, adapted, atol=1e-5)


@pytest.mark.parametrize("preset,target", [("mamba-tiny", "in_proj"), ("gated-deltanet-tiny", "in_proj_qkvz"),
                                           ("gated-deltanet-tiny", "mixer.out_proj")])
def test_recurrent_mixers_projections(preset, target):
    model = llmarch.build(preset, vocab_size=64, d_model=32, n_layers=2, context_length=32).eval()
    x = ids()
    before = model(x).logits
    apply_lora(model, LoRAConfig(rank=2, targets=(target,)))
    assert lora_layers(model)
    assert torch.equal(model(x).logits, before)
    randomize_b(model)
    model.train()
    model(x).logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_tied_head_cannot_merge():
    model = tiny(tie_embeddings=True)
    apply_lora(model, LoRAConfig(rank=2, targets=("lm_head",)))
    with pytest.raises(LlmarchError, match="tied"):
        merge(model)


@pytest.mark.parametrize("config,message", [
    (LoRAConfig(targets=("nothing_here",)), "matches no linear layer"),
    (LoRAConfig(rank=0), "rank must be positive"),
    (LoRAConfig(rank=33, targets=("o_proj",)), "exceeds the width"),
])
def test_bad_configs(config, message):
    with pytest.raises(LlmarchError, match=message):
        apply_lora(tiny(), config)


def moe():
    torch.manual_seed(0)
    return llmarch.build("mixtral-tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                         context_length=32).eval()


def test_moe_experts_stacked_weights(tmp_path):
    from llmarch.adapters import adapters, merged_state
    from llmarch.checkpoint import load_model, save_model

    model, x = moe(), ids()
    base = model(x).logits
    names = set(model.state_dict())
    apply_lora(model, LoRAConfig(rank=2, targets=("experts.gate_up", "experts.down", "qkv_proj")))
    assert "blocks.0.mlp.experts.gate_up" in adapters(model) and "blocks.1.mlp.experts.down" in adapters(model)
    assert torch.equal(model(x).logits, base)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.train()
    model(x).logits.sum().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("experts" in n for n in trainable) and all(".lora_" in n for n in trainable)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    model.eval()
    adapted = model(x).logits
    assert set(merged_state(model)) == names
    save_model(model, tmp_path / "m")  # folded in: a plain mixtral checkpoint
    assert torch.allclose(load_model(tmp_path / "m")(x).logits, adapted, atol=1e-5)
    merge(model)
    assert torch.allclose(model(x).logits, adapted, atol=1e-5)
    unmerge(model)
    with adapters_off(model):
        assert torch.equal(model(x).logits, base)
    remove_lora(model)
    assert set(model.state_dict()) == names and torch.allclose(model(x).logits, base, atol=1e-5)


def test_moe_experts_refuse_dora():
    with pytest.raises(LlmarchError, match="DoRA on stacked expert"):
        apply_lora(moe(), LoRAConfig(rank=2, targets=("experts.down",), dora=True))


def test_held_layers_are_left_out():
    """TrOCR's decoder holds a cross-attention it never runs (held_cross_width): a pattern reaching it adapts the
    self-attention's o_proj alone, and one naming only the held layers is refused (an adapter there trains nothing)."""
    model = tiny(held_cross_width=24)
    assert "blocks.0.cross_attn.o_proj" in dict(model.named_modules())
    apply_lora(model, LoRAConfig(rank=2, targets=("o_proj",)))
    assert sorted(lora_layers(model)) == ["blocks.0.attn.o_proj", "blocks.1.attn.o_proj"]
    with pytest.raises(LlmarchError, match="never runs"):
        apply_lora(tiny(held_cross_width=24), LoRAConfig(rank=2, targets=("cross_attn.q_proj",)))
