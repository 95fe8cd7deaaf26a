"""RoCBert against transformers, through files, given token ids and token types only (no input_shape_ids or
input_pronunciation_ids, which llmarch's forward does not carry): the masked LM with concat_input (the word, shape and
pronunciation vectors concatenated and mapped: token_proj, the map's word columns), without it (the shape and
pronunciation vectors added only where their ids are given: BERT), and with both disabled; the sequence and token
classifiers; RoCBertModel as an embedding model; on a right-padded batch in fp32 (<= 1e-4 on real tokens), with to_hf
round trips that transformers loads to the same logits and whose config reads back to ours."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_encoder_round_trip, perturbed

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=40, shape_vocab_size=30, shape_embed_dim=16, pronunciation_vocab_size=20,
            pronunciation_embed_dim=24)
CASES = {
    "concat": dict(TINY),
    "sum": dict(TINY, concat_input=False),
    "disabled": dict(TINY, enable_shape=False, enable_pronunciation=False),
    "shape-only": dict(TINY, enable_pronunciation=False),
}


def batch():
    """Two rows of 16 ids, the second right-padded (id 0) after 11, token type 1 on the second half."""
    torch.manual_seed(1)
    ids = torch.randint(4, 120, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:], ids[1, 11:] = 0, 0
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    return ids, mask, types


def saved(tmp_path, case: str, cls: str, **extra):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, cls)(transformers.RoCBertConfig(**CASES[case], **extra)))
    hf.save_pretrained(tmp_path / cls)
    return hf, from_hf(tmp_path / cls)


def assert_matches_and_round_trips(hf, ours, tmp_path, real, **labels):
    ids, mask, types = batch()
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    return assert_encoder_round_trip(hf, ours, tmp_path / "out", real, inputs, **labels)[1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_lm_matches_transformers_and_round_trips(tmp_path, case):
    hf, ours = saved(tmp_path, case, "RoCBertForMaskedLM")
    assert ours.config.token_proj == CASES[case].get("concat_input", True) and not ours.config.causal
    # what the reading rests on: the ids transformers fills in (0) pick the tables' padding rows, which are zero
    emb = hf.roc_bert.embeddings
    assert not emb.shape_embed.weight[0].any() and not emb.pronunciation_embed.weight[0].any()
    assert_matches_and_round_trips(hf, ours, tmp_path, batch()[1].bool())


def test_classifiers_match_transformers(tmp_path):
    for cls, head in (("RoCBertForSequenceClassification", "classify"), ("RoCBertForTokenClassification", "tokens")):
        hf, ours = saved(tmp_path / cls, "concat", cls, num_labels=3)
        assert ours.config.head == head
        real = slice(None) if head == "classify" else batch()[1].bool()
        again = assert_matches_and_round_trips(hf, ours, tmp_path / cls, real, labels=["a", "b", "c"])
        assert again.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_base_model_reads_as_an_embedding_model(tmp_path):
    hf, ours = saved(tmp_path, "concat", "RoCBertModel")
    assert ours.config.head == "embed"
    ids, mask, types = batch()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_causal_lm_is_refused():
    with pytest.raises(LlmarchError, match="is_decoder"):
        hf_model_config({**transformers.RoCBertConfig(**TINY, is_decoder=True).to_dict(), "model_type": "roc_bert"})
