"""Phi-1/1.5/2 (`model_type: phi`) against transformers, through files (as test_dense_families.py does): a tiny
seeded random PhiForCausalLM with perturbed norm gains and biases, saved and loaded with from_hf; logits on a
left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole
forward, and a to_hf round trip that transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import to_hf

from conftest import perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
CASES = {
    # Phi-2's shape: 40% of each head's 20 dims rotated (8), multi-head attention, an untied head with its bias
    "phi-2-style": dict(SMALL, hidden_size=80, partial_rotary_factor=0.4),
    # the variants the format allows: 2 kv heads, qk_layernorm, a tied head (its bias still its own), no factor
    # given (transformers' default, half of each head), a RoPE base of 1e5
    "phi-gqa-qk-tied": dict(SMALL, hidden_size=64, num_key_value_heads=2, qk_layernorm=True,
                            tie_word_embeddings=True, rope_theta=1e5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.PhiForCausalLM(transformers.PhiConfig(**CASES[case])).eval()
    hf.generation_config.eos_token_id = None
    ours = perturbed_from_hf(hf, tmp_path / "hf")  # norm gains and biases off their init: a swapped one shows
    cfg = ours.config
    assert (cfg.block, cfg.shared_norm, cfg.ffn, cfg.head_bias) == ("parallel", True, "gelu_tanh", True)
    assert cfg.rotary_dim == 8 and cfg.qk_norm == ("head" if "qk" in case else "none")  # 20 * 0.4, 16 * 0.5
    ids, mask, generated = assert_matches_transformers(hf, ours, "PhiForCausalLM", tmp_path)
    full_mask = torch.cat([mask, torch.ones(mask.shape[0], 32, dtype=mask.dtype)], 1)
    with torch.no_grad():
        again = ours(generated, attention_mask=full_mask).logits
    assert torch.equal(again[:, ids.shape[1] - 1:-1].argmax(-1), generated[:, ids.shape[1]:])


def test_to_hf_refuses_what_phi_cannot_hold(tmp_path):
    import llmarch

    model = llmarch.build("llama-tiny", vocab_size=64, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2,
                          ffn_hidden=64)
    model.config = model.config.replace(hf_model_type="phi")
    with pytest.raises(LlmarchError, match="model_type phi needs norm='layernorm'"):
        to_hf(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
