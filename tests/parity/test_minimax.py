"""MiniMax-01 against transformers, through files: a tiny seeded random model with both layer types (lightning
attention over blocks of 8, so a prompt spans several; GQA full attention with RoPE), Mixtral's experts routed
apart, DeepNorm's residual alpha and a beta off 1, compared on a left-padded batch (fp32, max |dlogit| <= 1e-4),
greedy generation of 32 tokens, cached decoding (lightning's fixed-size state) equal to the full forward, and the
to_hf round trip."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES, from_hf

from conftest import assert_cached_equals_whole, routed_apart
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
SCALES = {f"{p}_{w}_factor": v for p in ("full_attn", "linear_attn", "mlp") for w, v in (("alpha", 1.7), ("beta", 0.9))}
CONFIG = dict(vocab_size=128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, block_size=8,
              layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"], **SCALES)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("minimax")
    torch.manual_seed(0)
    hf = routed_apart(transformers.MiniMaxForCausalLM(transformers.MiniMaxConfig(**CONFIG)).eval())
    with torch.no_grad():  # norm gains (the lightning output norm's too) off their ones
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp / "hf")
    return hf, from_hf(tmp / "hf"), tmp


def test_config(models):
    _, ours, _ = models
    cfg = ours.config
    assert [cfg.for_layer(i).attention for i in range(4)] == ["lightning", "full"] * 2
    assert (cfg.norm_placement, cfg.residual_alpha, cfg.residual_multiplier, cfg.attention_block, cfg.n_experts) == \
        ("normed_residual", 1.7, 0.9, 8, 4)


def test_matches_transformers(models, tmp_path):
    hf, ours, _ = models
    assert_matches_transformers(hf, ours, "MiniMaxForCausalLM", tmp_path)


def test_longer_prompts_and_another_block(models):
    """40-token prompts (5 of transformers' blocks); ours computed in blocks of 16 give the same logits."""
    hf, ours, _ = models
    ids, mask = padded_batch(128, (40, 29))
    with torch.no_grad():
        theirs = hf_logits(hf, ids, mask)
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, theirs, mask)
        other = llmarch.build(ours.config.replace(attention_block=16)).eval()
        other.load_state_dict(ours.state_dict())
        assert_close_on_real_tokens(other(ids, attention_mask=mask).logits, theirs, mask)


def test_cached_decoding_equals_the_full_forward(models):
    _, ours, _ = models
    ids, mask = padded_batch(128, (24, 17))
    assert_cached_equals_whole(ours, ids, 16, mask)


def test_unequal_residual_factors_are_refused():
    hf = dict(transformers.MiniMaxConfig(**{**CONFIG, "mlp_alpha_factor": 2.0}).to_dict())
    with pytest.raises(LlmarchError, match="residual alpha factors that differ"):
        FAMILIES["minimax"].to_config(hf)
