"""Kolibri-1 (`model_type: kolibri1`) against transformers, through files: a tiny seeded Kolibri1ForCausalLM (1-D
parameters perturbed; its routers made decisive and their expert bias moved, which here shifts logits, not scores)
with a sliding (RoPE) and a full (no positions) layer, QK-norms, sandwich norms, and on every layer
experts chosen by logit plus bias beside a shared expert; read by from_hf: logits on a left-padded batch within 1e-4
(fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole forward, a to_hf round trip that
transformers loads to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import to_hf

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf, routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

KOLIBRI = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               head_dim=16, sliding_window=6, layer_types=["sliding_attention", "full_attention"],
               moe_intermediate_size=32, shared_expert_intermediate_size=48, num_experts=4, num_experts_per_tok=2,
               norm_topk_prob=True, pad_token_id=0)


def test_logits_generation_cached_decoding_and_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = routed_apart(transformers.Kolibri1ForCausalLM(transformers.Kolibri1Config(**KOLIBRI))).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.norm_placement, cfg.router_bias_on_logits, cfg.n_shared_experts, cfg.shared_hidden) == \
        ("sandwich", True, 1, 48)
    assert (cfg.for_layer(1).positions, cfg.for_layer(0).sliding_window) == ("none", 6)
    ids, mask, generated = assert_matches_transformers(hf, ours, "Kolibri1ForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")
    ours.config = cfg.replace(router_bias_on_logits=False)
    with pytest.raises(LlmarchError, match="router_bias_on_logits"):
        to_hf(ours, tmp_path / "refused")
    ours.config = cfg
    with pytest.raises(LlmarchError, match="router_bias_on_logits adds the expert bias"):
        cfg.replace(router_groups=2)
