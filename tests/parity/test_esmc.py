"""ESM C against transformers, through files: masked-LM logits on a right-padded batch (fp32, <= 1e-4 on real tokens)
without biases (as released) and with attention and MLP biases, each with a to_hf round trip that transformers loads
to the same logits and a config that reads back; the sequence and token classifiers; the base model as an embedding
model; the variants it cannot hold refused."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_encoder_round_trip, perturbed
from test_bertkin import right_padded

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=120, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64, initializer_range=0.1)
CASES = {"released": TINY, "biased": dict(TINY, attention_bias=True, mlp_bias=True, num_hidden_layers=3,
                                          rope_parameters={"rope_type": "default", "rope_theta": 500.0})}


def _pair(tmp_path, cls: str, fields: dict):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, cls)(transformers.EsmcConfig(**fields)))
    hf.save_pretrained(tmp_path / cls)
    return hf, from_hf(tmp_path / cls)


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_lm_matches_transformers_and_round_trips(tmp_path, case):
    hf, ours = _pair(tmp_path, "EsmcForMaskedLM", CASES[case])
    assert ours.config.qk_norm == "proj" and not ours.config.causal
    ids, mask, _ = right_padded(1, ())
    assert_encoder_round_trip(hf, ours, tmp_path / "out", mask.bool(), dict(input_ids=ids, attention_mask=mask))


@pytest.mark.parametrize("suffix, head", [("ForSequenceClassification", "classify"),
                                          ("ForTokenClassification", "tokens")])
def test_classifiers_match_transformers(tmp_path, suffix, head):
    hf, ours = _pair(tmp_path, "Esmc" + suffix, dict(TINY, num_labels=3))
    assert ours.config.head == head
    ids, mask, _ = right_padded(1, ())
    real = slice(None) if head == "classify" else mask.bool()
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        assert (mine - hf(ids, attention_mask=mask).logits)[real].abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=["a", "b", "c"])
    again = getattr(transformers, "Esmc" + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask).logits - mine)[real].abs().max().item() <= 1e-4


def test_base_model_reads_as_an_embedding_model(tmp_path):
    hf, ours = _pair(tmp_path, "EsmcModel", TINY)
    assert ours.config.head == "embed"
    ids, mask, _ = right_padded(1, ())
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        mine = ours(ids, attention_mask=mask).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("fields", [dict(head_dim=8), dict(hidden_act="gelu"),
                                    dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0})])
def test_variants_it_cannot_hold_are_refused(fields):
    with pytest.raises(LlmarchError, match="ESM C"):
        hf_model_config({**TINY, "model_type": "esmc", **fields})
