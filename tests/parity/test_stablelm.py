"""StableLM (`model_type: stablelm`) against transformers, through files (as test_dense_families.py does): a tiny
seeded random StableLmForCausalLM (1-D parameters perturbed, so a swapped LayerNorm bias or q/k/v bias cannot
hide), read by from_hf; logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers',
cached decoding equal to the whole forward, and a to_hf round trip that transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, intermediate_size=96)
CASES = {
    # StableLM-3B-4E1T's shape: multi-head attention, no q/k/v biases, two LayerNorms a layer, an untied head,
    # transformers' default partial_rotary_factor 0.25 (4 of each head's 16 dims rotated)
    "3b-style": SMALL,
    # StableLM-2's options: q/k/v biases (1.6B), the parallel residual with one norm (12B, without its per-head
    # qk_layernorm), 2 kv heads, a tied head, half of each head rotated, a RoPE base of 1e5
    "2-parallel-gqa-tied": dict(SMALL, use_qkv_bias=True, use_parallel_residual=True, num_key_value_heads=2,
                                tie_word_embeddings=True,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e5,
                                                 "partial_rotary_factor": 0.5}),
    # StableLM-2-12B's: the parallel residual with a LayerNorm per head on queries and keys (qk_layernorm), each
    # head's gains its own (perturbed apart like every 1-D parameter), GQA
    "2-12b-style": dict(SMALL, use_parallel_residual=True, qk_layernorm=True, num_key_value_heads=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.StableLmForCausalLM(transformers.StableLmConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg, parallel = ours.config, hf.config.use_parallel_residual
    assert (cfg.norm, cfg.ffn, cfg.bias, cfg.qkv_bias, cfg.block, cfg.shared_norm) == \
        ("layernorm", "swiglu", False, hf.config.use_qkv_bias, "parallel" if parallel else "sequential", parallel)
    assert cfg.rotary_dim == (8 if "gqa-tied" in case else 4) and cfg.tie_embeddings == hf.config.tie_word_embeddings
    assert cfg.qk_norm == ("per_head" if hf.config.qk_layernorm else "none")
    ids, mask, generated = assert_matches_transformers(hf, ours, "StableLmForCausalLM", tmp_path)
    full_mask = torch.cat([mask, torch.ones(mask.shape[0], 32, dtype=mask.dtype)], 1)
    with torch.no_grad():
        again = ours(generated, attention_mask=full_mask).logits
    assert torch.equal(again[:, ids.shape[1] - 1:-1].argmax(-1), generated[:, ids.shape[1]:])


def test_other_heads_are_refused():
    base = dict(SMALL, model_type="stablelm")
    with pytest.raises(LlmarchError, match="head_dim=8"):
        hf_model_config({**base, "head_dim": 8})
    agree = hf_model_config({**base, "hidden_dropout": 0.1, "attention_dropout": 0.1})
    differ = hf_model_config({**base, "hidden_dropout": 0.1})
    assert agree.dropout == 0.1 and differ.dropout == 0.0


def test_to_hf_refuses_what_stablelm_cannot_compute(tmp_path):
    import llmarch

    model = llmarch.build("llama-tiny", vocab_size=64, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2,
                          ffn_hidden=64)
    base = model.config
    for change, problem in ((dict(), "norm='layernorm'"),
                            (dict(norm="layernorm", norm_bias=True, qk_norm="head"), "qk_norm 'none' or 'per_head'"),
                            (dict(norm="layernorm", norm_bias=True, block="parallel"), "shared_norm")):
        model.config = base.replace(hf_model_type="stablelm", **change)
        with pytest.raises(LlmarchError, match=problem):
            to_hf(model, tmp_path / "out")
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", [
    dict(vocab_size=50304, hidden_size=2560, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
         intermediate_size=6912),  # StableLM-3B-4E1T, Zephyr-3B: 2,795,443,200
    dict(vocab_size=100352, hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
         intermediate_size=5632, use_qkv_bias=True),  # StableLM-2-1.6B: 1,644,515,328
], ids=["3b-4e1t", "2-1.6b"])
def test_released_shapes_count_as_transformers(shape):
    from llmarch.analysis.accounting import model_facts

    with torch.device("meta"):
        hf = transformers.StableLmForCausalLM(transformers.StableLmConfig(**shape))
    ours = model_facts(hf_model_config({**shape, "model_type": "stablelm"}))["parameters"]
    assert ours == sum(p.numel() for p in hf.parameters())
