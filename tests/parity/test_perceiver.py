"""Perceiver IO (`model_type: perceiver`, transformers' PerceiverForMaskedLM) against transformers, through files: a
tiny seeded model (1-D parameters perturbed, embeddings scaled so the tied head's logits spread) with latents wider
than the inputs and two passes over two self-attention layers, once with transformers' default channels (query
residual on, q.k of the cross-attention as wide as the inputs) and once with qk_channels / v_channels set, the
cross-attention's widths taken from the queries ("q"), no query residual, wider FFNs and gelu_new; read by from_hf:
masked-LM logits on a right-padded batch within 1e-4 (fp32; all max_position_embeddings positions, and the first T of
a shorter batch), and a to_hf round trip that transformers loads to the same logits; llmarch info on the checkpoint.
Other Perceiver heads refused, and a model transformers' layout cannot hold refused by to_hf."""
import json

import pytest
import torch

import llmarch
from llmarch.analysis.accounting import model_facts
from llmarch.cli import main
from llmarch.config import ModelConfig
from llmarch.errors import LlmarchError
from llmarch.interop import to_hf
from llmarch.interop.hf import FAMILIES

from conftest import assert_encoder_round_trip, perturbed

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

POSITIONS = 16
CASES = {"default": {}, "channels": dict(qk_channels=16, v_channels=48, use_query_residual=False,
                                          cross_attention_shape_for_attention="q", self_attention_widening_factor=2,
                                          cross_attention_widening_factor=3, hidden_act="gelu_new")}


def perceiver_config(**more):
    return transformers.PerceiverConfig(
        num_latents=8, d_latents=48, d_model=32, num_blocks=2, num_self_attends_per_block=2,
        num_self_attention_heads=4, num_cross_attention_heads=2, vocab_size=262,
        max_position_embeddings=POSITIONS, initializer_range=0.1, **more)


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    hf = perturbed(transformers.PerceiverForMaskedLM(perceiver_config(**CASES[request.param])))
    with torch.no_grad():
        hf.perceiver.input_preprocessor.embeddings.weight.mul_(5.0)
    folder = tmp_path_factory.mktemp("perceiver")
    hf.save_pretrained(folder / "hf")
    return hf, llmarch.from_hf(folder / "hf"), folder


def batch(T=POSITIONS):
    torch.manual_seed(1)
    ids = torch.randint(0, 262, (2, T))
    mask = torch.ones_like(ids)
    mask[1, T // 2:] = 0  # right-padded
    return ids, mask


def test_masked_lm_logits_and_round_trip(pair):
    hf, ours, folder = pair
    ids, mask = batch()
    inputs = dict(input_ids=ids, attention_mask=mask)
    mine, again = assert_encoder_round_trip(hf, ours, folder / "written", ..., inputs)
    with torch.no_grad():  # the round trip writes transformers' own weights back, bit for bit
        assert torch.equal(again(**inputs).logits, hf(**inputs).logits)
    assert mine.abs().max() > 2  # logits spread, so that 1e-4 is a tight bound
    short, short_mask = batch(11)  # transformers answers all its positions; llmarch the inputs'
    with torch.no_grad():
        want = hf(input_ids=short, attention_mask=short_mask).logits[:, :11]
        assert (ours(short, attention_mask=short_mask).logits - want).abs().max().item() <= 1e-4


def test_config_reloads_and_counts(pair, capsys):
    """The config as saved (no field derived: the top level's n_kv_heads stored) builds the same parts; llmarch info's
    accounting counts the parameters exactly (its FLOPs: test_flops_count_the_latents_not_the_inputs)."""
    assert main(["info", str(pair[2] / "hf")]) == 0
    assert f"{sum(p.numel() for p in pair[1].parameters()):,}" in capsys.readouterr().out
    cfg = ModelConfig.from_dict(pair[1].config.to_dict())
    shapes = {k: v.shape for k, v in pair[1].state_dict().items()}
    assert {k: v.shape for k, v in llmarch.build(cfg).state_dict().items()} == shapes
    facts = model_facts(cfg)
    assert facts["parameters"] == sum(p.numel() for p in pair[1].parameters())
    assert facts["kv_cache_bytes_per_token"] == 0 and facts["flops_per_token"] > 0


def test_flops_count_the_latents_not_the_inputs(pair):
    """llmarch info's training FLOPs per token are within 4% of a forward's counted FLOPs (conftest's
    measured_flops_per_token; 3.4% and 3.1% over, every linear's bias and every norm's gain and bias taken at one
    multiply-add a parameter) at T = context_length inputs: the latent stack over N latents (N/T rows a token), the
    encoding cross-attention N x T, the decoding one T x N. Until 2026-12-07 every latent layer counted once an input
    token and attended over T inputs: 70% and 72% over."""
    from conftest import measured_flops_per_token

    ours = pair[1]
    T = ours.config.context_length
    measured = measured_flops_per_token(ours, torch.randint(0, 262, (1, T)), tokens=T)
    assert abs(model_facts(ours.config)["flops_per_token"] / measured - 1) < 0.04


def test_other_perceivers_refused(pair, tmp_path):
    hf, _, folder = pair
    hf_cfg = json.loads((folder / "hf" / "config.json").read_text())
    for arch in ("PerceiverForImageClassificationLearned", "PerceiverForOpticalFlow",
                 "PerceiverForMultimodalAutoencoding", "PerceiverForSequenceClassification"):
        (tmp_path / "config.json").write_text(json.dumps({**hf_cfg, "architectures": [arch]}))
        with pytest.raises(LlmarchError, match=arch if "Sequence" not in arch else "not supported"):
            llmarch.from_hf(tmp_path)
    with pytest.raises(LlmarchError, match="must be as wide"):
        FAMILIES["perceiver"].to_config({**hf_cfg, "qk_channels": 16, "v_channels": 16})
    contiguous = llmarch.build(pair[1].config.replace(layer_groups_cyclic=False))  # ALBERT's sharing: not Perceiver's
    with pytest.raises(LlmarchError, match="layer groups repeated in order"):
        to_hf(contiguous, tmp_path / "out")
