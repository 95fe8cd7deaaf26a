"""LayoutLM v1 against transformers, through files: the masked LM, the sequence and token classifiers and the base
model (as an embedding model), each on a right-padded batch with token types and a bounding box per token (fp32,
<= 1e-4 on real tokens), and without boxes (transformers' zeros); a to_hf round trip that transformers loads to the
same logits and whose config reads back to ours; the question-answering head refused in one line."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed
from test_bert import padded_batch

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=40, max_2d_position_embeddings=50, num_labels=3)
HEADS = {"ForMaskedLM": "lm", "ForSequenceClassification": "classify", "ForTokenClassification": "tokens"}


def boxes(batch: int = 2, length: int = 16) -> torch.Tensor:
    """(B, T, 4) boxes (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1 inside a 50 x 50 page."""
    torch.manual_seed(2)
    lo = torch.randint(0, 30, (batch, length, 2))
    return torch.cat([lo, lo + torch.randint(0, 20, (batch, length, 2))], -1)


def saved(tmp_path, suffix: str):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, "LayoutLM" + suffix)(transformers.LayoutLMConfig(**TINY)))
    hf.save_pretrained(tmp_path / suffix)
    return hf, from_hf(tmp_path / suffix)


@pytest.mark.parametrize("with_boxes", [True, False])
@pytest.mark.parametrize("suffix", sorted(HEADS))
def test_heads_match_transformers_and_round_trip(tmp_path, suffix, with_boxes):
    hf, ours = saved(tmp_path, suffix)
    head = HEADS[suffix]
    assert ours.config.head == head and ours.config.box_vocab_size == 50 and not ours.config.causal
    ids, types, mask = padded_batch(0)
    kw = {"token_type_ids": types, **({"bbox": boxes()} if with_boxes else {})}
    real = slice(None) if head == "classify" else mask.bool()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, **kw).logits
        mine = ours(ids, attention_mask=mask, **kw).logits
    assert (mine - theirs)[real].abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if head == "lm" else ["a", "b", "c"])
    again = type(hf).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, **kw).logits
    assert (back - mine)[real].abs().max().item() <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_boxes_change_the_logits(tmp_path):
    """The boxes reach the output: other boxes, other logits (a model that dropped them would pass the test above
    only without boxes)."""
    _, ours = saved(tmp_path, "ForMaskedLM")
    ids, types, mask = padded_batch(0)
    with torch.no_grad():
        with_boxes = ours(ids, attention_mask=mask, bbox=boxes()).logits
        without = ours(ids, attention_mask=mask).logits
    assert (with_boxes - without)[mask.bool()].abs().max().item() > 1e-2


def test_boxes_of_another_shape_are_refused(tmp_path):
    _, ours = saved(tmp_path, "ForMaskedLM")
    ids, _, _ = padded_batch(0)
    with pytest.raises(LlmarchError, match=r"bbox must have shape \(batch, seq, 4\)"):
        ours(ids, bbox=boxes()[..., :2])


def test_base_model_reads_as_an_embedding_model(tmp_path):
    hf, ours = saved(tmp_path, "Model")
    assert ours.config.head == "embed"
    ids, types, mask = padded_batch(0)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types, bbox=boxes()).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types, bbox=boxes()).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_question_answering_is_refused():
    conf = {**transformers.LayoutLMConfig(**TINY).to_dict(), "architectures": ["LayoutLMForQuestionAnswering"]}
    with pytest.raises(LlmarchError, match="LayoutLMForQuestionAnswering checkpoints are not supported"):
        hf_model_config(conf)
