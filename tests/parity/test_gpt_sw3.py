"""GPT-SW3 (model_type gpt-sw3, which transformers builds with GPT-2's classes) against transformers, as
test_hf_families checks GPT-2: a GPT-2 checkpoint whose config.json names gpt-sw3 (exact GELU, as GPT-SW3's), on a
left-padded batch (fp32, <= 1e-4), greedy tokens equal to transformers' generate, cached decoding equal to the whole
forward, and a to_hf round trip written as gpt-sw3 that transformers' Auto classes load to the same logits."""
import json

import pytest
import torch

from llmarch.interop import from_hf

from conftest import assert_cached_decoding_and_config_round_trip, perturbed
from test_hf_families import assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")


def test_gpt_sw3_is_gpt2_under_its_own_model_type(tmp_path):
    torch.manual_seed(0)
    conf = transformers.GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                   activation_function="gelu")
    hf = perturbed(transformers.GPT2LMHeadModel(conf))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    file = tmp_path / "hf" / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "model_type": "gpt-sw3"}))
    ours = from_hf(tmp_path / "hf")
    assert ours.config.hf_model_type == "gpt-sw3" and ours.config.ffn == "gelu"
    ids, mask, generated = assert_matches_transformers(hf, ours, "GPT2LMHeadModel", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "gpt-sw3"
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(again).__name__ == "GPT2LMHeadModel"
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert (hf_logits(again, ids, mask) - ours(ids, attention_mask=mask).logits)[mask.bool()].abs().max() <= 1e-4
