"""Parity with transformers for NVIDIA's Dory (`model_type: dory`, DoryForCausalLM): an nGPT decoder on the unit sphere
(norm 'l2', residual_mix 'ngpt', attn_q_gain) whose middle layers loop (recurrence 'loop'). Logits on a left-padded
batch, greedy tokens, cached decoding (each pass over a looped block its own KV cache), a to_hf round trip, the released
two-blocks-per-layer checkpoint layout, and what is refused."""
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

SLIDING, FULL = "sliding_attention", "full_attention"
DORY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, sliding_window=4, n_input_layers=1, n_output_layers=1,
            n_recurrent_loops=3, max_position_embeddings=128, layer_types=[SLIDING, FULL, SLIDING, FULL],
            pad_token_id=0)


@pytest.fixture(scope="module")
def dory(tmp_path_factory):
    """One input layer, two looped three times, one output layer (8 block invocations); every 1-D parameter (the
    rates, s_qk, s_gate, suv, the logit scale) moved off its init."""
    torch.manual_seed(0)
    hf = perturbed(transformers.DoryForCausalLM(transformers.DoryConfig(**DORY)))
    folder = tmp_path_factory.mktemp("dory")
    hf.save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return hf, from_hf(folder / "hf"), folder


def test_dory_config_reads_every_part(dory):
    _, ours, folder = dory
    cfg = ours.config
    assert json.loads((folder / "hf" / "config.json").read_text())["num_hidden_layers"] == 8  # two entries a layer
    assert (cfg.n_layers, cfg.norm, cfg.norm_placement, cfg.residual_mix, cfg.qk_norm, cfg.sub_norm, cfg.attn_q_gain,
            cfg.attn_output_gate) == (4, "l2", "sandwich", "ngpt", "head", True, True, True)
    assert (cfg.recurrence, cfg.loop_prelude, cfg.loop_coda, cfg.loop_count) == ("loop", 1, 1, 3)
    assert ours.recurrence.order() == [0, 1, 2, 1, 2, 1, 2, 3]
    assert [cfg.for_layer(i).sliding_window for i in range(4)] == [4, None, 4, None]
    assert {cfg.for_layer(i).rope_theta for i in range(4)} == {10_000.0, 10_000_000.0}


def test_dory_logits_greedy_cached_decoding_and_round_trip(dory):
    hf, ours, folder = dory
    ids, mask, generated = assert_matches_transformers(hf, ours, "DoryForCausalLM", folder)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, folder / "out")
    assert len(ours.caches()) == 8


def test_dory_released_layout(dory, tmp_path):
    """The released checkpoints' names, each layer two blocks (layers.{2i}.mixer: attention, layers.{2i+1}.mixer:
    the MLP, attn_alpha and mlp_alpha their rates), read to the same logits."""
    hf, _, folder = dory
    pairs = {}
    for name, t in load_file(folder / "hf" / "model.safetensors").items():
        if ".layers." not in name:
            pairs[name] = t
            continue
        _, _, index, rest = name.split(".", 3)
        i = int(index)
        for part, block, new in (("self_attn.", 0, "mixer."), ("mlp.", 1, "mixer."), ("lambda_1", 0, "attn_alpha"),
                                 ("lambda_2", 1, "mlp_alpha")):
            if rest.startswith(part):
                pairs[f"backbone.layers.{2 * i + block}.{new}{rest[len(part):]}"] = t
    assert len(pairs) == len(load_file(folder / "hf" / "model.safetensors"))
    (tmp_path / "released").mkdir()
    save_file(pairs, tmp_path / "released" / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "released" / "config.json").write_text((folder / "hf" / "config.json").read_text())
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert_close_on_real_tokens(from_hf(tmp_path / "released")(ids, attention_mask=mask).logits,
                                    hf_logits(hf, ids, mask), mask)


def test_dory_refuses_what_it_cannot_hold():
    base = {**DORY, "model_type": "dory"}
    with pytest.raises(LlmarchError, match="recurrent_kv_cache_mode"):
        hf_model_config({**base, "recurrent_kv_cache_mode": "last_loop"})
    with pytest.raises(LlmarchError, match="tie_word_embeddings"):
        hf_model_config({**base, "tie_word_embeddings": True})
    with pytest.raises(LlmarchError, match="must equal num_hidden_layers"):
        hf_model_config({**base, "n_recurrent_layers": 3})
    cfg = hf_model_config(base)
    with pytest.raises(LlmarchError, match="loop_count >= 1"):
        cfg.replace(loop_count=0)
    with pytest.raises(LlmarchError, match="norm='l2'"):
        cfg.replace(norm="rmsnorm")
