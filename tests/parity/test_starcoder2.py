"""StarCoder2 against transformers, through files (as test_dense_families.py does): a tiny seeded random
Starcoder2ForCausalLM (1-D parameters perturbed, so a swapped norm bias or projection bias cannot hide), read by
from_hf; logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached
decoding equal to the whole forward, and a to_hf round trip that transformers loads with the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=96, bos_token_id=1, eos_token_id=2)
CASES = {
    # the released models' shape: GQA, biases everywhere, tanh-GELU, a tied head, a window on every layer; the
    # window of 8 keys is shorter than the 13-20-token prompts, so it binds in prefill and in decoding
    "windowed-tied": dict(COMMON, sliding_window=8, rope_parameters={"rope_type": "default", "rope_theta": 1e5}),
    # no linear biases (the LayerNorms keep theirs), an untied head, exact GELU, no window, head_dim != d / heads
    "unbiased-untied": dict(COMMON, use_bias=False, tie_word_embeddings=False, hidden_act="gelu", head_dim=24),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.Starcoder2ForCausalLM(transformers.Starcoder2Config(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.norm, cfg.norm_bias, cfg.block, cfg.bias, cfg.qkv_bias) == ("layernorm", True, "sequential",
                                                                           hf.config.use_bias, hf.config.use_bias)
    assert cfg.sliding_window == hf.config.sliding_window and cfg.tie_embeddings == hf.config.tie_word_embeddings
    ids, mask, generated = assert_matches_transformers(hf, ours, "Starcoder2ForCausalLM", tmp_path)
    full_mask = torch.cat([mask, torch.ones(mask.shape[0], 32, dtype=mask.dtype)], 1)
    with torch.no_grad():
        again = ours(generated, attention_mask=full_mask).logits
    assert torch.equal(again[:, ids.shape[1] - 1:-1].argmax(-1), generated[:, ids.shape[1]:])


def test_the_three_dropouts_are_llmarchs_one_where_they_agree():
    base = dict(COMMON, model_type="starcoder2")
    agree = hf_model_config({**base, "attention_dropout": 0.1, "residual_dropout": 0.1, "embedding_dropout": 0.1})
    differ = hf_model_config({**base, "attention_dropout": 0.0, "residual_dropout": 0.1, "embedding_dropout": 0.1})
    assert agree.dropout == 0.1 and differ.dropout == 0.0


def test_to_hf_refuses_what_starcoder2_cannot_compute(tmp_path):
    torch.manual_seed(0)
    hf = transformers.Starcoder2ForCausalLM(transformers.Starcoder2Config(**CASES["unbiased-untied"])).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    for change, problem in ((dict(qkv_bias=True), "qkv_bias equal to bias"), (dict(ffn="swiglu"), "ungated ffn"),
                            (dict(qk_norm="head"), "qk_norm='none'")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match=problem):
            to_hf(ours, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        ours.config = from_hf(tmp_path / "hf").config
