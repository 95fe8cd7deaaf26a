"""Qwen4-Exp's text model (`qwen4_exp_text`) against transformers, through files: a tiny seeded random model (a Gated
DeltaNet layer and a QSA-indexed attention layer with partial RoPE, experts with a gated shared expert, two
hyper-connection streams; every 1-D parameter moved off its zero or one init, routers made decisive) compared on a
left-padded batch (fp32, max |dlogit| <= 1e-4), greedy generation of 32 tokens, cached decoding equal to the whole
forward, and the to_hf round trip. The indexer keeps 2 blocks of 2 tokens besides the newest, so most queries of
the 13- and 20-token rows drop keys: the same weights with dense attention are far from transformers' logits."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_equals_whole, perturbed, routed_apart
from test_hf_families import assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
CONFIG = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
              linear_value_head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
              shared_expert_intermediate_size=32, layer_types=["linear_attention", "indexed_attention"],
              hc_count=2, hc_lowrank=8, indexer_n_heads=8, indexer_kv_heads=1, indexer_head_dim=16,
              indexer_budget=4, indexer_compress_ratio=2, eos_token_id=1,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qwen4_exp")
    torch.manual_seed(0)
    hf = transformers.Qwen4ExpForCausalLM(transformers.Qwen4ExpTextConfig(**CONFIG)).eval()
    hf = routed_apart(perturbed(hf))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp / "hf")
    return hf, from_hf(tmp / "hf"), tmp


def test_logits_generation_cached_decoding_and_round_trip(models):
    hf, ours, tmp = models
    cfg = ours.config
    assert (cfg.attention, cfg.hc_streams, cfg.final_norm, cfg.rope_fraction) == ("qsa", 2, False, 0.5)
    ids, mask, _ = assert_matches_transformers(hf, ours, "Qwen4ExpForCausalLM", tmp)
    assert_cached_equals_whole(ours, ids, 12, mask)


def test_without_the_indexer_the_logits_differ(models):
    """Dense attention on the same weights moves the logits far past the tolerance: the selection is tested."""
    hf, ours, _ = models
    dense = llmarch.build(ours.config.replace(attention="full")).eval()
    dense.load_state_dict({k: v for k, v in ours.state_dict().items() if ".qsa_" not in k})
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert (dense(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask))[mask.bool()].abs().max() > 1e-2


@pytest.mark.parametrize("change, words", [({"ple_layer_ids": [1]}, "ple_layer_ids"),
                                           ({"output_gate_type": "sigmoid"}, "output_gate_type"),
                                           ({"indexer_budget": None}, "indexer_budget")])
def test_unsupported_configs_are_refused(change, words):
    hf = {**CONFIG, "model_type": "qwen4_exp_text", **change}
    with pytest.raises(LlmarchError, match=words):
        hf_model_config(hf, "config.json")


# dots.llm3 Note's text model: an indexed, a full and a sliding-window latent-attention layer (window 5, its own RoPE
# base), DeepSeek-V3's grouped sigmoid router (4 experts in 2 groups, 1 kept), a dense first FFN; no pad_token_id
# (its zero embedding row would give the indexer all-zero scores, whose top-k ties transformers breaks its own way)
DOTS = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16,
            head_dim=24, v_head_dim=12, moe_intermediate_size=16, shared_experts_intermediate_size=16,
            n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, n_group=2, topk_group=1,
            routed_scaling_factor=1.5, index_topk=6, index_head_dim=16, index_n_heads=8, sliding_window=5,
            max_position_embeddings=128, pad_token_id=None, bos_token_id=1, eos_token_id=2, per_layer_config={},
            layer_types=["indexed_attention", "full_attention", "sliding_attention"])


@pytest.fixture(scope="module")
def dots(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dots3_note")
    torch.manual_seed(0)
    hf = routed_apart(perturbed(transformers.Dots3NoteForCausalLM(transformers.Dots3NoteTextConfig(**DOTS)).eval()))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp / "hf")
    return hf, from_hf(tmp / "hf"), tmp


def test_dots3_logits_generation_cached_decoding_and_round_trip(dots):
    hf, ours, tmp = dots
    cfg = ours.config
    assert [b.attn.indexer is not None for b in ours.blocks] == [True, False, False]
    assert [cfg.for_layer(i).sliding_window for i in range(3)] == [None, None, 5]
    ids, mask, _ = assert_matches_transformers(hf, ours, "Dots3NoteForCausalLM", tmp)
    assert_cached_equals_whole(ours, ids, 12, mask)


def test_dots3_without_the_indexer_or_the_window_the_logits_differ(dots):
    hf, ours, _ = dots
    ids, mask = padded_batch(128)
    theirs = hf_logits(hf, ids, mask)
    for dense_cfg in (ours.config.replace(dsa_topk=None), ours.config.replace(layer_overrides={
            k: {**v, "attention": "full", "sliding_window": None} for k, v in ours.config.layer_overrides.items()})):
        dense = llmarch.build(dense_cfg).eval()
        dense.load_state_dict({k: v for k, v in ours.state_dict().items() if k in dense.state_dict()})
        with torch.no_grad():
            assert (dense(ids, attention_mask=mask).logits - theirs)[mask.bool()].abs().max() > 1e-2


@pytest.mark.parametrize("change, words", [({"per_layer_config": {"2": {"kv_lora_rank": 8}}}, "swa_"),
                                           ({"model_type": "dots3_note"}, "vision and audio"),
                                           ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "RoPE scaling")])
def test_dots3_unsupported_configs_are_refused(change, words):
    with pytest.raises(LlmarchError, match=words):
        hf_model_config({**DOTS, "model_type": "dots3_note_text", **change}, "config.json")


@pytest.mark.parametrize("kind, conf_cls, model_cls, config", [
    ("qwen4_exp_text", "Qwen4ExpTextConfig", "Qwen4ExpForCausalLM", CONFIG),
    ("dots3_note_text", "Dots3NoteTextConfig", "Dots3NoteForCausalLM", DOTS)])
def test_parameter_count_equals_transformers(kind, conf_cls, model_cls, config):
    from llmarch.analysis import model_facts

    with torch.device("meta"):
        hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**config))
    ours = model_facts(hf_model_config({**config, "model_type": kind}))["parameters"]
    assert ours == sum(p.numel() for p in hf.parameters())
