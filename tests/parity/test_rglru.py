"""RecurrentGemma (`model_type: recurrent_gemma`, Griffin's recurrent block with the RG-LRU: layers/rglru.py)
against transformers, through files: a tiny seeded RecurrentGemmaForCausalLM (1-D parameters perturbed; width 48,
so sqrt(d) rounds differently in bfloat16; w_init_variance_scale 1, so that logits are O(1) and a
wrong activation shows; lru_width 64 != hidden_size; 4 gate blocks; block_types recurrent,
recurrent, attention over 4 layers; a window of 8 with one KV head and half of each head rotated) read by from_hf:
logits within 1e-4 (fp32), 32 greedy tokens equal to transformers' generate (20-token prompts: past the window in
prefill and decoding), cached decoding equal to the whole forward, and a to_hf round trip that transformers loads
to the same logits and that reads back to the same config.

Unpadded batches only: transformers' RecurrentGemma does not support left padding (its convolution reads the pads'
projections into a row's first real tokens, so a padded row differs from the row alone, which
test_left_padding_is_kept_out checks); llmarch keeps padding out and is tested against its own unpadded rows."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=1, attention_window_size=8, lru_width=64, block_types=["recurrent", "recurrent",
                                                                                      "attention"],
            w_init_variance_scale=1.0)  # 100x the default: gates, convolution and embeddings big enough to matter


def tiny(tmp_path, **overrides):
    torch.manual_seed(0)
    hf = transformers.RecurrentGemmaForCausalLM(transformers.RecurrentGemmaConfig(**{**BASE, **overrides})).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf").eval()
    hf.generation_config.eos_token_id = None
    return hf, ours


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_logits_generation_cache_and_round_trip(tied, tmp_path):
    hf, ours = tiny(tmp_path, tie_word_embeddings=tied, attention_bias=not tied)
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(4)] == ["rglru", "rglru", "attention", "rglru"]
    assert (cfg.embed_multiplier, cfg.lru_width, cfg.ffn_hidden, cfg.tie_embeddings) == (6.9375, 64, 48, tied)
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (2, 20))
    mine = logits(ours, ids)
    assert (mine - logits(hf, ids)).abs().max() <= 1e-4

    theirs = hf.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, max_new_tokens=32), theirs)

    full = logits(ours, theirs)
    # a prompt, then one token per call: the whole forward's logits
    assert (stepwise_logits(ours, theirs, 20) - full).abs().max() <= 1e-4

    to_hf(ours, tmp_path / "out")
    again = transformers.RecurrentGemmaForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert (logits(again, ids) - mine).abs().max() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_left_padding_is_kept_out(tmp_path):
    """llmarch: a left-padded row's logits and greedy tokens are those of the row alone (the recurrence resets at
    its first real token; the pads enter neither the convolution nor the state). transformers: not so, even with
    position ids counted from the first real token, which is why the parity test above feeds unpadded rows."""
    hf, ours = tiny(tmp_path)
    torch.manual_seed(1)
    ids = torch.randint(1, 128, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    alone = ids[1:, 7:]
    padded = logits(ours, ids, attention_mask=mask)
    assert (padded[1, 7:] - logits(ours, alone)[0]).abs().max() <= 1e-4
    assert (padded[0] - logits(ours, ids[:1])[0]).abs().max() <= 1e-4
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=12)
    assert torch.equal(generated[1, 7:], llmarch.generate(ours, alone, max_new_tokens=12)[0])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    theirs = logits(hf, ids, attention_mask=mask, position_ids=pos)
    assert (theirs[1, 7:] - logits(hf, alone)[0]).abs().max() > 1e-3


def test_what_llmarch_cannot_hold_is_named():
    hf = {**BASE, "model_type": "recurrent_gemma"}
    with pytest.raises(LlmarchError, match="hidden_activation 'gelu'"):
        hf_model_config({**hf, "hidden_activation": "gelu"})
    with pytest.raises(LlmarchError, match="rope_type 'linear'"):
        hf_model_config({**hf, "rope_parameters": {"rope_type": "linear", "factor": 2.0}})
    with pytest.raises(LlmarchError, match="block_types"):
        hf_model_config({**hf, "block_types": ["recurrent", "mlp"]})
    with pytest.raises(LlmarchError, match="lru_width=60 must be a positive multiple of n_heads=8"):
        hf_model_config({**hf, "lru_width": 60, "num_attention_heads": 8, "num_key_value_heads": 1})
    cfg = hf_model_config(hf)
    with pytest.raises(LlmarchError, match="needs embed_multiplier=6.9375"):
        to_hf(llmarch.build(cfg.replace(embed_multiplier=1.0)), "/nonexistent")


def test_recurrentgemma_2b_preset_counts_as_transformers():
    """google/recurrentgemma-2b's config.json (26 layers 2560 wide, 10 heads, one KV head, lru_width 2560,
    intermediate_size 15360, 256,000 tokens): read by llmarch, it is the recurrentgemma-2b preset's shape, and
    llmarch's model (on the meta device) has transformers' parameter count."""
    hf = transformers.RecurrentGemmaConfig(hidden_size=2560, intermediate_size=15360, num_hidden_layers=26,
                                           num_attention_heads=10, num_key_value_heads=1, vocab_size=256000)
    cfg = hf_model_config({**hf.to_dict(), "model_type": "recurrent_gemma"})
    preset = llmarch.preset("recurrentgemma-2b")
    assert cfg.replace(name=preset.name, lru_width=None, eos_id=None) == preset
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        theirs = transformers.RecurrentGemmaForCausalLM(hf).num_parameters()
    assert ours == theirs == 2_682_862_080
