"""LUKE's word stream against transformers (no entity inputs), through files: the masked LM (entity-aware
attention on or off, its weights present in the file and not read), the sequence and token classifiers and the base
model (as an embedding model), on a right-padded batch with token types (fp32, <= 1e-4 on real tokens); a to_hf
round trip (a word-only LUKE) that transformers loads to the same logits and whose config reads back to ours; the
entity heads refused in one line."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_encoder_round_trip, perturbed
from test_bert import padded_batch

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=40, entity_vocab_size=30, entity_emb_size=24, num_labels=3)
HEADS = {"ForMaskedLM": "lm", "ForSequenceClassification": "classify", "ForTokenClassification": "tokens"}


def saved(tmp_path, suffix: str, **extra):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, "Luke" + suffix)(transformers.LukeConfig(**TINY, **extra)))
    hf.save_pretrained(tmp_path / suffix)
    return hf, from_hf(tmp_path / suffix)


@pytest.mark.parametrize("suffix, aware", [("ForMaskedLM", True), ("ForMaskedLM", False),
                                           ("ForSequenceClassification", True), ("ForTokenClassification", True)])
def test_heads_match_transformers_and_round_trip(tmp_path, suffix, aware):
    hf, ours = saved(tmp_path, suffix, use_entity_aware_attention=aware)
    head = HEADS[suffix]
    assert ours.config.head == head and ours.config.position_offset == 2 and not ours.config.causal
    ids, types, mask = padded_batch(1)
    real = slice(None) if head == "classify" else mask.bool()
    assert_encoder_round_trip(hf, ours, tmp_path / "out", real,
                              dict(input_ids=ids, attention_mask=mask, token_type_ids=types),
                              labels=None if head == "lm" else ["a", "b", "c"])


def test_base_model_reads_as_an_embedding_model(tmp_path):
    hf, ours = saved(tmp_path, "Model")
    assert ours.config.head == "embed"
    ids, types, mask = padded_batch(1)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("arch", ["LukeForEntityClassification", "LukeForEntityPairClassification",
                                  "LukeForEntitySpanClassification", "LukeForQuestionAnswering"])
def test_entity_heads_are_refused(arch):
    conf = {**transformers.LukeConfig(**TINY).to_dict(), "architectures": [arch]}
    with pytest.raises(LlmarchError, match=f"{arch} checkpoints are not supported: llmarch reads LUKE's word stream"):
        hf_model_config(conf)
