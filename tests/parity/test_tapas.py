"""TAPAS against transformers, through files: the masked LM (positions reset per cell or absolute) and the sequence
classifier on a right-padded batch of question + flattened-table tokens with seven token types each (fp32, <= 1e-4
on real tokens), the base model as an embedding model, a to_hf round trip that transformers loads to the same logits
and whose config reads back to ours; the question-answering head refused in one line."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_encoder_round_trip, perturbed

transformers = pytest.importorskip("transformers")

SIZES = (3, 8, 8, 2, 8, 8, 10)
TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=40, type_vocab_sizes=SIZES, num_labels=3)


def table_batch():
    """Two rows of 16 tokens: a question of 4 (all types 0), then table cells of one to three tokens each (segment
    1, a column and a row id, random other types); the second row right-padded after 11 (pad 0, types 0)."""
    torch.manual_seed(1)
    ids = torch.randint(1, 120, (2, 16))
    types = torch.zeros(2, 16, 7, dtype=torch.long)
    for b in range(2):
        t, cell = 4, 0
        while t < 16:
            n = int(torch.randint(1, 4, ()))
            types[b, t:t + n, 0] = 1
            types[b, t:t + n, 1], types[b, t:t + n, 2] = 1 + cell % 3, 1 + cell // 3  # column, row
            for k in (3, 4, 5, 6):
                types[b, t:t + n, k] = int(torch.randint(0, SIZES[k], ()))
            t, cell = t + n, cell + 1
    mask = torch.ones_like(ids)
    mask[1, 11:], ids[1, 11:], types[1, 11:] = 0, 0, 0
    return ids, types, mask


def saved(tmp_path, suffix: str, **extra):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, "Tapas" + suffix)(transformers.TapasConfig(**TINY, **extra)))
    hf.save_pretrained(tmp_path / suffix)
    return hf, from_hf(tmp_path / suffix)


@pytest.mark.parametrize("suffix, reset", [("ForMaskedLM", True), ("ForMaskedLM", False),
                                           ("ForSequenceClassification", True)])
def test_heads_match_transformers_and_round_trip(tmp_path, suffix, reset):
    hf, ours = saved(tmp_path, suffix, reset_position_index_per_cell=reset)
    head = "lm" if suffix == "ForMaskedLM" else "classify"
    cfg = ours.config
    assert cfg.head == head and cfg.type_vocab_sizes == list(SIZES) and not cfg.type_vocab_size
    assert cfg.position_reset_types == ([1, 2] if reset else None)
    ids, types, mask = table_batch()
    real = slice(None) if head == "classify" else mask.bool()
    assert_encoder_round_trip(hf, ours, tmp_path / "out", real,
                              dict(input_ids=ids, attention_mask=mask, token_type_ids=types),
                              labels=None if head == "lm" else ["a", "b", "c"])


def test_positions_reset_per_cell_change_the_logits(tmp_path):
    """The cell positions reach the output: the same model with absolute positions gives other logits (a model
    that ignored position_reset_types would pass the reset case above only by chance)."""
    _, ours = saved(tmp_path, "ForMaskedLM")
    ids, types, mask = table_batch()
    absolute = ours.__class__(ours.config.replace(position_reset_types=None))
    absolute.load_state_dict(ours.state_dict())
    with torch.no_grad():
        diff = ours(ids, attention_mask=mask, token_type_ids=types).logits - absolute(
            ids, attention_mask=mask, token_type_ids=types).logits
    assert diff[mask.bool()].abs().max().item() > 1e-2


def test_base_model_reads_as_an_embedding_model(tmp_path):
    hf, ours = saved(tmp_path, "Model")
    assert ours.config.head == "embed"
    ids, types, mask = table_batch()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_token_types_of_another_shape_are_refused(tmp_path):
    _, ours = saved(tmp_path, "ForMaskedLM")
    ids, types, _ = table_batch()
    with pytest.raises(LlmarchError, match=r"token_type_ids must have shape \(batch, seq, 7\)"):
        ours(ids, token_type_ids=types[..., 0])


def test_question_answering_is_refused():
    conf = {**transformers.TapasConfig(**TINY).to_dict(), "architectures": ["TapasForQuestionAnswering"]}
    with pytest.raises(LlmarchError, match="TapasForQuestionAnswering checkpoints are not supported"):
        hf_model_config(conf)
