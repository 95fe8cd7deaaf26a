"""Mellum 2 (`model_type: mellum`) against transformers, through files: a tiny seeded MellumForCausalLM (1-D
parameters perturbed, its routers made decisive) with a sliding and a full layer, each type its own RoPE base,
QK-norms, biases on q, k, v and o, a dense first FFN then softmax-routed experts; read by from_hf: logits on a
left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole
forward, a to_hf round trip that transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf, routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

MELLUM = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, sliding_window=6, attention_bias=True,
              layer_types=["sliding_attention", "full_attention"], mlp_layer_types=["dense", "sparse"],
              moe_intermediate_size=32, num_experts=4,
              num_experts_per_tok=2, norm_topk_prob=True, pad_token_id=0,
              rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 50000.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})


def test_logits_generation_cached_decoding_and_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = routed_apart(transformers.MellumForCausalLM(transformers.MellumConfig(**MELLUM))).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.rope_theta, cfg.for_layer(0).rope_theta, cfg.for_layer(0).sliding_window) == (50000.0, 100.0, 6)
    assert (cfg.moe_dense_first, cfg.qk_norm, cfg.o_bias) == (1, "head", True)
    ids, mask, generated = assert_matches_transformers(hf, ours, "MellumForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_defaults_and_refusals():
    base = dict(MELLUM, model_type="mellum")
    del base["mlp_layer_types"], base["rope_parameters"]
    cfg = hf_model_config(base)
    assert (cfg.moe_dense_first, cfg.rope_theta, cfg.for_layer(0).rope_theta) == (0, 500000.0, 10000.0)
    with pytest.raises(LlmarchError, match="mlp_layer_types"):
        hf_model_config({**base, "mlp_layer_types": ["sparse", "dense"]})
