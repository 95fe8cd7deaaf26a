"""Zamba (`model_type: zamba`) against transformers, through files as the other families' parity tests: a tiny seeded
random ZambaForCausalLM (1-D parameters perturbed) of Mamba layers split into two slices (n_mamba_heads, with
in_proj biases, whose x and gate rows alternate) and hybrid layers running one shared transformer block (GQA, no
positions). Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached
decoding equal to the whole forward, a to_hf round trip that transformers loads with the same logits and that
reads back to the same config; the parameter count equals transformers' (the shared block's weights held once)."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, hidden_size=32, num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2,
            n_mamba_heads=2, mamba_d_state=8, intermediate_size=48, mamba_proj_bias=True, initializer_range=0.1,
            layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "hybrid"])


def test_logits_generation_and_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = transformers.ZambaForCausalLM(transformers.ZambaConfig(**BASE)).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(5)] == ["mamba", "shared_block", "mamba", "shared_block", "shared_block"]
    assert (cfg.ssm_heads, cfg.shared_block_mixer, cfg.positions) == (2, "mamba", "none")
    assert sum(p.numel() for p in ours.parameters()) == hf.num_parameters()
    ids, mask, _ = assert_matches_transformers(hf, ours, "ZambaForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    with torch.no_grad():  # a prompt, then one token per step, equals the whole left-padded forward
        full = ours(ids, attention_mask=mask).logits
    steps = stepwise_logits(ours, ids, 9, mask)
    assert (steps - full)[mask.bool()].abs().max() < 1e-4


@pytest.mark.parametrize("change,problem", [
    (dict(tie_word_embeddings=False), "unties the shared block"),
    (dict(hidden_mamba_act="gelu"), "hidden_mamba_act"),
    (dict(attention_hidden_size=48), "attention_hidden_size"),
    (dict(n_mamba_heads=3), "n_mamba_heads"),
])
def test_what_llmarch_cannot_hold_is_named(change, problem):
    with pytest.raises(LlmarchError, match=problem):
        hf_model_config({**BASE, "model_type": "zamba", **change})


def test_zamba_7b_shape_counts_as_transformers():
    """transformers' default ZambaConfig (Zamba-7B's shape: 76 layers 3712 wide, a hybrid layer every 6th, 16 heads
    over the 7424-wide concatenation, Mamba of 2 slices and a state of 16, MLP 14848, 32,000 tokens): llmarch's
    model (built on the meta device) has transformers' parameter count."""
    hf = transformers.ZambaConfig()
    cfg = hf_model_config({**hf.to_dict(), "model_type": "zamba"})
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        assert ours == transformers.ZambaForCausalLM(hf).num_parameters() > 6e9
