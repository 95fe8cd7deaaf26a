"""Mixture-of-experts parity with transformers in fp32: Switch Transformers (top-1, capacity dropping, an
encoder-decoder), Mixtral and Qwen3-MoE (top-k): logits within 1e-4, router logits of every MoE layer and
the auxiliary losses (load balancing, router z-loss) equal to transformers' to 1e-5. Logits and generation
of the decoder-only families are also covered by test_hf_families.py."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import to_hf
from llmarch.models.routing import router_losses, routings

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V = 99


def _randomise_norms(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("mlp.gate.weight"):  # transformers' 0.02 init leaves near-uniform routing
                p.mul_(20.0)


def _save(hf, path):
    _randomise_norms(hf)
    hf.save_pretrained(path)
    return llmarch.from_hf(path)


@pytest.fixture(scope="module")
def switch(tmp_path_factory):
    """4 encoder and 4 decoder layers, experts on layers 1 and 3; capacity 3 tokens per expert per sequence,
    so an 11-token source over 4 experts must drop some."""
    torch.manual_seed(0)
    cfg = transformers.SwitchTransformersConfig(
        vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=4, num_decoder_layers=4, num_heads=4, num_experts=4,
        num_sparse_encoder_layers=2, num_sparse_decoder_layers=2, expert_capacity=3, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, dropout_rate=0.0, decoder_start_token_id=0)
    hf = transformers.SwitchTransformersForConditionalGeneration(cfg).eval()
    return hf, _save(hf, tmp_path_factory.mktemp("switch"))


def batch(B=3, S=11, T=7, padded=True):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(3, V - 2, (B, S), generator=g)
    mask = torch.ones_like(src)
    if padded:
        mask[1, 7:] = 0
        mask[2, 4:] = 0
    return src, mask, torch.randint(3, V - 2, (B, T), generator=g)


def test_switch_logits_router_logits_and_losses(switch):
    hf, ours = switch
    cfg = ours.config
    assert (cfg.n_experts, cfg.experts_per_token, cfg.moe_period, cfg.moe_offset, cfg.expert_capacity) == (4, 1, 2, 1, 3)
    src, mask, tgt = batch()
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt, output_router_logits=True)
        got = ours(src, tgt, attention_mask=mask)
    assert (ref.logits - got.logits).abs().max().item() <= 1e-4
    found = routings(ours)
    dropped = sum(int((~r.kept).sum()) for r in found["encoder"] if r.kept is not None)
    assert dropped > 0  # the capacity really binds
    for stack, theirs in (("encoder", ref.encoder_router_logits), ("decoder", ref.decoder_router_logits)):
        assert len(found[stack]) == len(theirs) == 2
        for r, t in zip(found[stack], theirs):
            torch.testing.assert_close(r.logits, t, rtol=1e-5, atol=1e-5)
    losses = router_losses(ours)
    assert abs(losses["z"].item() - (ref.encoder_z_loss + ref.decoder_z_loss).item()) <= 1e-5
    assert abs(losses["aux"].item() - (ref.encoder_aux_loss + ref.decoder_aux_loss).item()) <= 1e-5


def test_switch_generation_and_round_trip(switch, tmp_path):
    hf, ours = switch
    src, mask, tgt = batch()
    with torch.no_grad():
        expected = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=10, do_sample=False,
                               eos_token_id=None, decoder_start_token_id=0, pad_token_id=0)
    got = llmarch.generate(ours, src, attention_mask=mask, max_new_tokens=10, eos_id=None)
    assert got.tolist() == expected.tolist()
    to_hf(ours, tmp_path)
    back = transformers.SwitchTransformersForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert (back(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
                - ours(src, tgt, attention_mask=mask).logits).abs().max().item() <= 1e-4


DECODERS = {
    "mixtral": lambda: transformers.MixtralForCausalLM(transformers.MixtralConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.02)),
    "qwen3_moe": lambda: transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, moe_intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True)),
}


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_decoder_router_logits_and_aux_loss(family, tmp_path):
    torch.manual_seed(0)
    hf = DECODERS[family]().eval()
    ours = _save(hf, tmp_path)
    ids = batch(padded=False)[0]
    with torch.no_grad():
        ref = hf(ids, output_router_logits=True, labels=ids)
        got = ours(ids)
    assert (ref.logits - got.logits).abs().max().item() <= 1e-4
    found = routings(ours)[""]
    assert len(found) == len(ref.router_logits) == 2
    for r, t in zip(found, ref.router_logits):
        torch.testing.assert_close(r.logits.reshape(t.shape), t, rtol=1e-5, atol=1e-5)
    assert abs(router_losses(ours)["aux"].item() - ref.aux_loss.item()) <= 1e-5
    assert ours.config.router_aux_loss_weight == hf.config.router_aux_loss_coef


def test_mixtral_8x7b_preset_matches_transformers_count():
    with torch.device("meta"):
        hf = transformers.MixtralForCausalLM(transformers.MixtralConfig())
        assert sum(p.numel() for p in llmarch.build("mixtral-8x7b", device="meta").parameters()) \
            == hf.num_parameters() == 46_702_792_704
