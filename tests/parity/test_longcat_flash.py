"""LongCat-Flash (`model_type: longcat_flash`) against transformers, through files: a tiny seeded
LongcatFlashForCausalLM (its norms perturbed, its router made decisive and its expert-bias buffer moved off zero, so
that a wrong choice, a missing zero expert or a shortcut added in the wrong place would show), read by from_hf:
logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to
the whole forward (absorbed and expanded latent attention), and a to_hf round trip that transformers loads to the
same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_layers=2, num_attention_heads=4, ffn_hidden_size=96, q_lora_rank=32,
             kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, head_dim=8, v_head_dim=16, moe_topk=2,
             n_routed_experts=4, zero_expert_num=2, expert_ffn_hidden_size=32, routed_scaling_factor=2.0,
             pad_token_id=0)
CASES = {"zero-experts": SMALL,
         # no zero experts, biases on the latent projections and o_proj, top 3, a tied head
         "bias-top3-tied": dict(SMALL, zero_expert_num=0, attention_bias=True, moe_topk=3, tie_word_embeddings=True)}


@torch.no_grad()
def _decisive(hf):
    for name, p in [*hf.named_parameters(), *hf.named_buffers()]:
        if name.endswith("router.classifier.weight"):
            p.mul_(30.0)
        if name.endswith("e_score_correction_bias"):
            p.copy_(torch.randn_like(p) * 0.05)
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = _decisive(transformers.LongcatFlashForCausalLM(transformers.LongcatFlashConfig(**CASES[case]))).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.n_layers, cfg.moe_shortcut, cfg.mla_lora_scale, cfg.zero_experts) == \
        (4, True, True, CASES[case]["zero_expert_num"])
    assert ours.blocks[0].moe is not None and ours.blocks[1].moe is None and ours.blocks[1].adds_shortcut
    if cfg.zero_experts:  # the batch below routes some tokens to a zero expert
        ours(torch.randint(0, 128, (2, 20)))
        assert (ours.blocks[0].moe.routing.experts >= cfg.n_experts).any()
    ids, mask, generated = assert_matches_transformers(hf, ours, "LongcatFlashForCausalLM", tmp_path)
    ones = torch.ones_like(generated)
    with torch.no_grad():
        whole = ours(generated, attention_mask=ones).logits
    for absorb in (True, False):
        for block in ours.blocks:
            block.attn.absorb = absorb
        assert (stepwise_logits(ours, generated, ids.shape[1], ones) - whole).abs().max() <= 1e-4


def test_unsupported_configs_are_refused():
    base = dict(SMALL, model_type="longcat_flash")
    for change, problem in ((dict(hidden_act="gelu"), "hidden_act"), (dict(num_key_value_heads=2), "key_value"),
                            (dict(head_dim=16), "head_dim"), (dict(router_bias=True), "router_bias")):
        with pytest.raises(LlmarchError, match=problem):
            hf_model_config({**base, **change})


def test_shape_counts_as_transformers():
    from llmarch.analysis.accounting import model_facts

    shape = dict(SMALL, num_layers=3, n_routed_experts=8, zero_expert_num=4)
    with torch.device("meta"):
        hf = transformers.LongcatFlashForCausalLM(transformers.LongcatFlashConfig(**shape))
    assert model_facts(hf_model_config({**shape, "model_type": "longcat_flash"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())
