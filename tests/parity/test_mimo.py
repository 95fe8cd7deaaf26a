"""MiMo-V2-Flash (`model_type: mimo_v2_flash`) against transformers, through files: a tiny seeded
MiMoV2FlashForCausalLM (1-D parameters perturbed, sinks included; its routers made decisive and their expert bias
moved) with values narrower than queries and keys (v_head_dim 16 beside head_dim 24), a value scale, a full (dense
FFN) and a sliding layer (twice the KV heads, sinks), each type its own RoPE base and fraction, the second's FFN
DeepSeek-V3-routed experts in two groups; read by from_hf: logits on a left-padded batch within 1e-4 (fp32), 32
greedy tokens equal to transformers', cached decoding equal to the whole forward, a to_hf round trip that
transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf, routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

MIMO = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, head_dim=24, v_head_dim=16, attention_value_scale=0.6, sliding_window=6,
            layer_types=["full_attention", "sliding_attention"], moe_intermediate_size=32,
            n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=1.5,
            attention_bias=True, pad_token_id=0,
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 50000.0,
                                                "partial_rotary_factor": 0.334},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0,
                                                   "partial_rotary_factor": 0.5}})


@pytest.fixture(scope="module")
def mimo(tmp_path_factory):
    torch.manual_seed(0)
    hf = routed_apart(transformers.MiMoV2FlashForCausalLM(transformers.MiMoV2FlashConfig(**MIMO))).eval()
    ours = perturbed_from_hf(hf, tmp_path_factory.mktemp("mimo") / "hf")
    hf.generation_config.eos_token_id = None
    return hf, ours


def test_logits_generation_cached_decoding_and_round_trip(mimo, tmp_path):
    hf, ours = mimo
    cfg = ours.config
    sliding = cfg.for_layer(1)
    assert (cfg.head_dim, cfg.value_dim, cfg.attn_value_multiplier, cfg.moe_dense_first) == (24, 16, 0.6, 1)
    assert (sliding.n_kv_heads, sliding.attn_sinks, sliding.rotary_dim, cfg.rotary_dim) == (2, True, 12, 8)
    assert ours.blocks[0].attn.sinks is None and ours.blocks[1].attn.sinks is not None
    ids, mask, generated = assert_matches_transformers(hf, ours, "MiMoV2FlashForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_value_width_sizes_every_cache(mimo):
    ours = mimo[1]
    for bounded in (False, True):  # the whole KV cache, and the sliding layer's ring
        ours.setup_cache(2, 40, bounded=bounded)
        try:
            caches = [b.attn.cache for b in ours.blocks]
            assert [tuple(c.k.shape[1::2]) + (c.v.shape[-1],) for c in caches] == [(1, 24, 16), (2, 24, 16)]
            assert caches[1].is_ring == bounded
        finally:
            ours.clear_cache()
    per_token = sum(b.attn.cache_bytes(torch.float32, 40)[0] for b in ours.blocks)
    assert per_token == 4 * (1 + 2) * (24 + 16)


def test_unsupported_configs_are_refused():
    base = dict(MIMO, model_type="mimo_v2_flash")
    for change, problem in ((dict(layer_types=["full_attention", "chunked_attention"]), "layer_types"),
                            (dict(rope_parameters={"full_attention": {"rope_type": "yarn", "factor": 2.0}}),
                             "rope_type"),
                            (dict(mlp_layer_types=["sparse", "dense"]), "mlp_layer_types")):
        with pytest.raises(LlmarchError, match=problem):
            hf_model_config({**base, **change})
    cfg = hf_model_config(base)
    for change, problem in ((dict(attention="strided"), "needs values as wide as q and k"),
                            (dict(attn_output_gate=True), "value_dim=16"),
                            (dict(value_dim=0), "value_dim must be a positive integer")):
        with pytest.raises(LlmarchError, match=problem):
            cfg.replace(layer_types=None, layer_overrides=None, **change)
