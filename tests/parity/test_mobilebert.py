"""MobileBERT against transformers, through files: masked-LM logits on a right-padded batch (fp32, <= 1e-4 on real
tokens) for each way its attention reads the block (a shared query-key bottleneck with values from the block's input,
the inner stream, the input), trigram and plain embedding projections, NoNorm and LayerNorm, several stacked FFNs,
each with a to_hf round trip that transformers loads to the same logits; the sequence and token classifiers; the base
model as an embedding model; the variants it cannot hold refused."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_encoder_round_trip, perturbed
from test_bertkin import right_padded

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            embedding_size=24, intra_bottleneck_size=32, max_position_embeddings=64, num_feedforward_networks=3,
            initializer_range=0.1)
CASES = {
    "shared-qk": dict(TINY),  # the released layout: trigram input, NoNorm, q and k from their own bottleneck
    "inner": dict(TINY, use_bottleneck_attention=True, trigram_input=False, num_feedforward_networks=1),
    # transformers' queries and keys read the block's input through bottleneck-wide projections: an inner stream as
    # wide as the blocks
    "input": dict(TINY, key_query_shared_bottleneck=False, intra_bottleneck_size=64, normalization_type="layer_norm",
                  layer_norm_eps=1e-5, hidden_act="gelu"),
}


def _pair(tmp_path, cls: str, fields: dict):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, cls)(transformers.MobileBertConfig(**fields)))
    hf.save_pretrained(tmp_path / cls)
    return hf, from_hf(tmp_path / cls)


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_lm_matches_transformers_and_round_trips(tmp_path, case):
    hf, ours = _pair(tmp_path, "MobileBertForMaskedLM", CASES[case])
    assert ours.config.mixer == "bottleneck" and ours.config.head == "lm"
    ids, mask, kw = right_padded(0, ("types",))
    assert_encoder_round_trip(hf, ours, tmp_path / "out", mask.bool(), dict(input_ids=ids, attention_mask=mask, **kw))


@pytest.mark.parametrize("suffix, head", [("ForSequenceClassification", "classify"),
                                          ("ForTokenClassification", "tokens")])
def test_classifiers_match_transformers(tmp_path, suffix, head):
    hf, ours = _pair(tmp_path, "MobileBert" + suffix, dict(TINY, num_labels=3))
    assert ours.config.head == head
    ids, mask, kw = right_padded(0, ("types",))
    real = slice(None) if head == "classify" else mask.bool()
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, **kw).logits
        assert (mine - hf(ids, attention_mask=mask, **kw).logits)[real].abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=["a", "b", "c"])
    again = getattr(transformers, "MobileBert" + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask, **kw).logits - mine)[real].abs().max().item() <= 1e-4


def test_base_model_reads_as_an_embedding_model(tmp_path):
    hf, ours = _pair(tmp_path, "MobileBertModel", TINY)
    assert ours.config.head == "embed"
    ids, mask, kw = right_padded(0, ("types",))
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, **kw).last_hidden_state
        mine = ours(ids, attention_mask=mask, **kw).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("fields", [dict(use_bottleneck=False), dict(normalization_type="layer_norm"),
                                    dict(embedding_size=64), dict(classifier_activation=False)])
def test_variants_it_cannot_hold_are_refused(fields):
    with pytest.raises(LlmarchError, match="MobileBERT"):
        hf_model_config({**transformers.MobileBertConfig(**{**TINY, **fields}).to_dict(), "model_type": "mobilebert"})


@pytest.mark.parametrize("fields", [dict(mixer="bottleneck", bottleneck_dim=32),
                                    dict(embed_dim=32, embed_input="trigram")])
def test_parts_that_read_later_tokens_refuse_a_causal_stack(fields):
    import llmarch

    with pytest.raises(LlmarchError, match="bidirectional"):
        llmarch.build("llama-tiny", n_layers=1, device="meta", **fields)
