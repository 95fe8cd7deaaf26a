"""BitNet b1.58 (`model_type: bitnet`) against transformers, through files: a tiny seeded BitNetForCausalLM (its
1-D parameters, the four RMSNorms of each layer and the final one, perturbed, so a missing sub-norm cannot hide),
read by from_hf: logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached
decoding equal to the whole forward, and a to_hf round trip that transformers loads to the same logits. Both of
what transformers computes: a checkpoint without quantization_config (full-precision nn.Linear projections) and
one whose quantization_config asks for AutoBitLinear online (ternary weights by absmean, 8-bit activations by
absmax, at every call). transformers' quantizers are @torch.compile'd: they run eagerly here (same arithmetic)."""
import json

import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config
from llmarch.layers.bitlinear import BitLinear

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=96, pad_token_id=0)
ONLINE = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
CASES = {"full-precision": SMALL, "online-bias-tied": dict(SMALL, attention_bias=True, tie_word_embeddings=True)}


@pytest.fixture(autouse=True)
def _eager():
    with torch._dynamo.config.patch(disable=True):
        yield


def _reference(case, tmp_path):
    """transformers' model of `case`, and llmarch's read from the same files."""
    torch.manual_seed(0)
    hf = transformers.BitNetForCausalLM(transformers.BitNetConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    if case.startswith("online"):
        path = tmp_path / "hf" / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "quantization_config": ONLINE}))
        hf = transformers.BitNetForCausalLM.from_pretrained(tmp_path / "hf").eval()
        down = hf.model.layers[0].mlp.down_proj
        assert type(down).__name__ == "AutoBitLinear" and down.online_quant
        ours = llmarch.from_hf(tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    return hf, ours


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf, ours = _reference(case, tmp_path)
    cfg = ours.config
    assert (cfg.ffn, cfg.sub_norm, cfg.qkv_bias, cfg.o_bias) == ("relu2_glu", True, "bias" in case, "bias" in case)
    assert cfg.bitlinear == ("online" if case.startswith("online") else "none")
    assert isinstance(ours.blocks[0].mlp.down, BitLinear) == case.startswith("online")
    ids, mask, generated = assert_matches_transformers(hf, ours, "BitNetForCausalLM", tmp_path)
    with torch.no_grad():
        whole = ours(generated, attention_mask=torch.ones_like(generated)).logits
    steps = stepwise_logits(ours, generated, ids.shape[1], torch.ones_like(generated))
    assert (steps - whole).abs().max() <= 1e-4


def test_online_quantization_changes_the_logits(tmp_path):
    """The online checkpoint's logits are not the full-precision ones: the rounding is computed, not skipped."""
    hf, ours = _reference("online-bias-tied", tmp_path)
    plain = llmarch.build(ours.config.replace(bitlinear="none")).eval()
    plain.load_state_dict(ours.state_dict())
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert (plain(ids, attention_mask=mask).logits - ours(ids, attention_mask=mask).logits).abs().max() > 1e-2


def test_unsupported_checkpoints_are_refused():
    base = dict(SMALL, model_type="bitnet")
    for quant in ({"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"},
                  {**ONLINE, "quantization_mode": "offline"}, {**ONLINE, "use_rms_norm": True}):
        with pytest.raises(LlmarchError, match="quantization_config"):
            hf_model_config({**base, "quantization_config": quant})
    with pytest.raises(LlmarchError, match="hidden_act"):
        hf_model_config({**base, "hidden_act": "silu"})
    with pytest.raises(LlmarchError, match="head_dim"):
        hf_model_config({**base, "head_dim": 8})


@pytest.mark.parametrize("shape", [
    dict(vocab_size=128256, hidden_size=2560, num_hidden_layers=30, num_attention_heads=20, num_key_value_heads=5,
         intermediate_size=6912)], ids=["2b-4t"])
def test_released_shape_counts_as_transformers(shape):
    from llmarch.analysis.accounting import model_facts

    with torch.device("meta"):
        hf = transformers.BitNetForCausalLM(transformers.BitNetConfig(**shape))
    assert model_facts(hf_model_config({**shape, "model_type": "bitnet"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())
