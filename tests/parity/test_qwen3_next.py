"""Qwen3-Next against transformers, through files: a tiny seeded random model with both layer types (Gated DeltaNet
and gated full attention) and mixtures of experts with a gated shared expert, compared on a left-padded batch
(fp32, max |dlogit| <= 1e-4) with prompts longer than transformers' 64-token chunk, greedy generation of 32
tokens, cached decoding equal to the full forward, and the to_hf round trip."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf

from test_hf_families import assert_close_on_real_tokens, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
CONFIG = dict(vocab_size=128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, intermediate_size=96, linear_num_key_heads=2, linear_num_value_heads=4,
              linear_key_head_dim=16, linear_value_head_dim=8, num_experts=4, num_experts_per_tok=2,
              moe_intermediate_size=32, shared_expert_intermediate_size=32,
              layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"])


def perturb(hf):
    """Non-trivial norm gains, decays and step sizes; a router far from uniform."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("mlp.gate.weight"):
                p.normal_(0, 0.4)
    return hf


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qwen3_next")
    torch.manual_seed(0)
    hf = perturb(transformers.Qwen3NextForCausalLM(transformers.Qwen3NextConfig(**CONFIG)).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp / "hf")
    return hf, from_hf(tmp / "hf"), tmp


def test_config_reads_both_layer_types(models):
    _, ours, _ = models
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(4)] == ["gated_deltanet", "attention"] * 2
    assert (cfg.norm, cfg.attn_output_gate, cfg.rope_fraction, cfg.shared_expert_gate) == \
        ("rmsnorm_offset", True, 0.25, True)


@pytest.mark.parametrize("lengths", [(20, 13), (80, 67)])  # the second: more than one 64-token chunk
def test_logits_on_a_left_padded_batch(models, lengths):
    hf, ours, _ = models
    ids, mask = padded_batch(128, lengths)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(mine, hf_logits(hf, ids, mask), mask)


def test_greedy_generation(models):
    hf, ours, _ = models
    ids, mask = padded_batch(128)
    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=32), theirs)


def test_cached_decoding_equals_the_full_forward(models):
    _, ours, _ = models
    ids, mask = padded_batch(128, (24, 17))
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        ours.setup_cache(2, 24)
        steps = [ours(ids[:, :16], attention_mask=mask, input_pos=torch.arange(16), kv_len=16).logits]
        steps += [ours(ids[:, t:t + 1], attention_mask=mask, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                  for t in range(16, 24)]
        ours.clear_cache()
    assert_close_on_real_tokens(torch.cat(steps, dim=1), full, mask)


def test_to_hf_round_trip(models):
    _, ours, tmp = models
    to_hf(ours, tmp / "out")
    again = transformers.Qwen3NextForCausalLM.from_pretrained(tmp / "out").eval()
    ids, mask = padded_batch(128)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(hf_logits(again, ids, mask), mine, mask)


def test_the_published_preset_is_transformers_shape():
    """qwen3-next-80b-a3b's exported config builds a transformers model (on the meta device) of exactly our
    parameter count, and reads back as the same config."""
    from llmarch.interop import FAMILIES

    cfg = llmarch.preset("qwen3-next-80b-a3b")
    family = FAMILIES["qwen3_next"]
    hf_cfg = transformers.Qwen3NextConfig(**{k: v for k, v in family.from_config(cfg).items()
                                             if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        hf = transformers.Qwen3NextForCausalLM(hf_cfg)
    assert sum(p.numel() for p in hf.parameters()) == 79_674_391_296
    assert family.to_config(hf_cfg.to_dict()).replace(name=cfg.name) == cfg
