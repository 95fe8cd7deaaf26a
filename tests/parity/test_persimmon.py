"""Persimmon (`model_type: persimmon`) against transformers, through files: a tiny seeded PersimmonForCausalLM (its
1-D parameters perturbed: LayerNorm gains and biases, the shared QK LayerNorms, every projection's bias), read by
from_hf: logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding
equal to the whole forward, and a to_hf round trip that transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             pad_token_id=0)
CASES = {
    # Persimmon-8B's options: QK LayerNorm, half of each head rotated (transformers' default), squared ReLU
    "8b-style": SMALL,
    # without QK-norm, a quarter of each head rotated, a RoPE base of 25000, a tied head
    "no-qk-norm-tied": dict(SMALL, qk_layernorm=False, tie_word_embeddings=True,
                            rope_parameters={"rope_type": "default", "rope_theta": 25000.0,
                                             "partial_rotary_factor": 0.25}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.PersimmonForCausalLM(transformers.PersimmonConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.ffn, cfg.norm, cfg.bias) == ("relu2", "layernorm", True)
    assert cfg.qk_norm == ("head" if hf.config.qk_layernorm else "none")
    assert cfg.rotary_dim == (4 if "tied" in case else 8)
    ids, mask, generated = assert_matches_transformers(hf, ours, "PersimmonForCausalLM", tmp_path)
    ones = torch.ones_like(generated)
    with torch.no_grad():
        whole = ours(generated, attention_mask=ones).logits
    assert (stepwise_logits(ours, generated, ids.shape[1], ones) - whole).abs().max() <= 1e-4


def test_unsupported_configs_are_refused():
    with pytest.raises(LlmarchError, match="hidden_act"):
        hf_model_config(dict(SMALL, model_type="persimmon", hidden_act="gelu_new"))


def test_released_shape_counts_as_transformers():
    from llmarch.analysis.accounting import model_facts

    shape = dict(vocab_size=262144, hidden_size=4096, intermediate_size=16384, num_hidden_layers=36,
                 num_attention_heads=64)  # Persimmon-8B
    with torch.device("meta"):
        hf = transformers.PersimmonForCausalLM(transformers.PersimmonConfig(**shape))
    assert model_facts(hf_model_config({**shape, "model_type": "persimmon"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())
