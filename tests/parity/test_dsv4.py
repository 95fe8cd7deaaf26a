"""DeepSeek-V4 (`model_type: deepseek_v4`) against transformers, through files: a tiny seeded DeepseekV4ForCausalLM
of sliding-window layers (a window of 8 where the padded batch's rows hold 13 and 20 tokens and generation 32 more;
3 hyper-connection streams; a hash-routed first layer with a random token table, a score-routed second one), its
1-D parameters perturbed (norm gains, sinks, the hyper-connections' biases and scales), its router made decisive and
its expert bias moved, its hyper-connection maps scaled up, read by from_hf: logits on a left-padded batch within
1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole forward, and a to_hf round
trip that transformers loads to the same logits. Compressed layers (CSA, HCA) are refused. HY-V4's case below."""
import pytest
import torch

from llmarch.analysis.accounting import model_facts
from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, routed_apart, stepwise_logits
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V4 = dict(vocab_size=128, hidden_size=64, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
          head_dim=32, q_lora_rank=24, partial_rotary_factor=0.25, num_experts_per_tok=2, n_routed_experts=4,
          n_shared_experts=1, hc_mult=3, hc_sinkhorn_iters=5, sliding_window=8, o_groups=2, o_lora_rank=16,
          layer_types=["sliding_attention"] * 2, mlp_layer_types=["hash_moe", "moe"], pad_token_id=0,
          swiglu_limit=0.5, routed_scaling_factor=1.7, max_position_embeddings=128)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    hf = routed_apart(transformers.DeepseekV4ForCausalLM(transformers.DeepseekV4Config(**V4))).eval()
    with torch.no_grad():
        for name, b in hf.named_buffers():
            if name.endswith("tid2eid"):  # zeros at init: every token to expert 0
                b.copy_(torch.randint(0, V4["n_routed_experts"], b.shape))
        for name, p in hf.named_parameters():  # the hyper-connections' 0.02-init maps made decisive
            if name.endswith(("hc.fn", "hc_head.hc_fn")):
                p.mul_(25.0)
    hf.generation_config.eos_token_id = None
    folder = tmp_path_factory.mktemp("dsv4")
    return hf, perturbed_from_hf(hf, folder / "hf"), folder


def test_logits_generation_cache_and_round_trip(pair):
    hf, ours, folder = pair
    cfg = ours.config
    assert (cfg.mixer, cfg.hyper_connection, cfg.hc_streams, cfg.router_hash_layers) == ("shared_kv", "mhc", 3, 1)
    ids, mask, generated = assert_matches_transformers(hf, ours, "DeepseekV4ForCausalLM", folder)
    ones = torch.ones_like(generated)
    with torch.no_grad():
        whole = ours(generated, attention_mask=ones).logits
    assert (stepwise_logits(ours, generated, ids.shape[1], ones) - whole).abs().max() <= 1e-4


def test_hash_routing_reads_the_table(pair):
    """The hash layer's table decides its experts: another table moves the logits away from transformers'."""
    hf, ours, _ = pair
    ids, mask = padded_batch(128)
    router = ours.blocks[0].mlp.router
    table = router.tid2eid.clone()
    try:
        with torch.no_grad():
            router.tid2eid.copy_((table + 1) % 4)
            assert (ours(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask))[mask.bool()].abs().max() > 1e-3
    finally:
        router.tid2eid.copy_(table)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


def test_unsupported_configs_are_refused():
    base = dict(V4, model_type="deepseek_v4")
    for change, problem in ((dict(layer_types=["sliding_attention", "heavily_compressed_attention"]), "compressed"),
                            (dict(layer_types=None), "compressed"),
                            (dict(mlp_layer_types=["moe", "hash_moe"]), "mlp_layer_types"),
                            (dict(norm_topk_prob=False), "norm_topk_prob"),
                            (dict(scoring_func="tanh"), "scoring_func")):
        with pytest.raises(LlmarchError, match=problem):
            hf_model_config({**base, **change})


def test_shape_counts_as_transformers():
    with torch.device("meta"):
        hf = transformers.DeepseekV4ForCausalLM(transformers.DeepseekV4Config(**V4))
    assert model_facts(hf_model_config({**V4, "model_type": "deepseek_v4"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())


# HY-V4 (`model_type: hy_v4`): GLM-5's latent attention with DeepSeek Sparse Attention (index_topk 6 of up to 52 keys;
# the indexer's RoPE on its last dims; 8 indexer heads, so ReLU's exact ties at 0 stay rare: the two sides break ties
# differently), a shared-indexer middle layer, sinks and output gates, ihc hyper-connections with a post gain of 1.5,
# a dense first layer, then clamped routed experts beside unclamped shared ones (their weights scaled up so that
# the clamp bites)
HY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
          num_attention_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
          v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, index_topk=6,
          index_head_dim=16, index_n_heads=8, hc_mult=3, hc_magnitude=1.5, swiglu_limit=0.5,
          indexer_types=["full", "shared", "full"], max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
          eos_token_id=2)


def test_hy_v4_logits_generation_cache_and_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = routed_apart(transformers.HYV4ForCausalLM(transformers.HYV4Config(**HY))).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("hc.fn", "hc_head.hc_fn")):
                p.mul_(25.0)
            if "mlp." in name and name.endswith(("gate_up_proj", "gate_proj.weight", "up_proj.weight")):
                p.mul_(50.0)  # the 0.006 init's pre-activations would stay inside the clamp (swiglu_limit 0.5)
    hf.generation_config.eos_token_id = None
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    cfg = ours.config
    assert (cfg.hyper_connection, cfg.hc_post_gain, cfg.expert_ffn, cfg.ffn) == ("ihc", 1.5, "swiglu_limited", "swiglu")
    assert cfg.for_layer(1).dsa_shared and not cfg.is_moe_layer(0)
    ids, mask, generated = assert_matches_transformers(hf, ours, "HYV4ForCausalLM", tmp_path)
    ones = torch.ones_like(generated)
    with torch.no_grad():
        whole = ours(generated, attention_mask=ones).logits
    assert (stepwise_logits(ours, generated, ids.shape[1], ones) - whole).abs().max() <= 1e-4


def test_hy_v4_refusals():
    base = dict(HY, model_type="hy_v4")
    for change, problem in ((dict(swiglu_limit=0.0), "swiglu_limit"),
                            (dict(layer_types=["sliding"] * 3), "layer_types"),
                            (dict(indexer_types=["shared", "full", "full"]), "indexer_types")):
        with pytest.raises(LlmarchError, match=problem):
            hf_model_config({**base, **change})
