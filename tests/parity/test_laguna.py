"""Laguna (`model_type: laguna`) against transformers, through files: a tiny seeded LagunaForCausalLM (1-D parameters
perturbed; its routers made decisive and their expert bias moved) with a full layer and a sliding one with twice
the query heads and its own RoPE, a softplus output gate per head, QK-norms, biases on
q, k, v and o, a dense first FFN then experts routed by soft-capped sigmoid scores beside a shared expert; read by
from_hf: logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding
equal to the whole forward, a to_hf round trip that transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf, routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

LAGUNA = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, sliding_window=6, num_attention_heads_per_layer=[4, 8],
              layer_types=["full_attention", "sliding_attention"], moe_intermediate_size=32,
              shared_expert_intermediate_size=48, num_experts=4, num_experts_per_tok=2, attention_bias=True,
              moe_router_logit_softcapping=0.5, moe_routed_scaling_factor=1.5, pad_token_id=0)


@pytest.fixture(scope="module")
def laguna(tmp_path_factory):
    torch.manual_seed(0)
    hf = routed_apart(transformers.LagunaForCausalLM(transformers.LagunaConfig(**LAGUNA))).eval()
    ours = perturbed_from_hf(hf, tmp_path_factory.mktemp("laguna") / "hf")
    hf.generation_config.eos_token_id = None
    return hf, ours


def test_logits_generation_cached_decoding_and_round_trip(laguna, tmp_path):
    hf, ours = laguna
    cfg = ours.config
    assert cfg.layer_types == ["full_attention", "sliding_attention_heads8"]
    assert (cfg.for_layer(1).n_heads, cfg.for_layer(1).rotary_dim, cfg.rotary_dim) == (8, 16, 8)
    assert (cfg.attn_gate_fn, cfg.router_softcap, cfg.n_shared_experts, cfg.shared_hidden) == ("softplus", 0.5, 1, 48)
    ids, mask, generated = assert_matches_transformers(hf, ours, "LagunaForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_unsupported_configs_are_refused():
    base = dict(LAGUNA, model_type="laguna")
    for change, problem in ((dict(gating="per-element"), "gating"),
                            (dict(moe_apply_router_weight_on_input=True), "moe_apply_router_weight_on_input"),
                            (dict(num_attention_heads_per_layer=[4]), "num_attention_heads_per_layer"),
                            (dict(rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0}}),
                             "rope_type")):
        with pytest.raises(LlmarchError, match=problem):
            hf_model_config({**base, **change})
    cfg = hf_model_config(base)
    for change, problem in ((dict(attn_head_gate=False), "attn_gate_fn='softplus'"),
                            (dict(router_softcap=-1.0), "router_softcap=-1.0 must be positive")):
        with pytest.raises(LlmarchError, match=problem):
            cfg.replace(**change)
