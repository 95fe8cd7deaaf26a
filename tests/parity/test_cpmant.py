"""llmarch's prompt tokens, segment relative bias and prefix LM against transformers' CPM-Ant (CpmAntForCausalLM),
through files (fp32, <= 1e-4): logits on a left-padded batch (token id 0, CPM-Ant's padding), greedy tokens equal to
transformers' generate, the cached steps' logits equal to its generate scores (its forward over the whole sequence
attends both ways, its generate a token at a time: so does llmarch's), and the to_hf round trip."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed, stepwise_logits

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=100, hidden_size=32, num_attention_heads=4, dim_head=8, dim_ff=48, num_hidden_layers=2,
            position_bias_num_buckets=32, position_bias_max_distance=64, prompt_types=4, prompt_length=3,
            segment_types=4, init_std=0.1)
NEW = 12


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    hf = perturbed(transformers.CpmAntForCausalLM(transformers.CpmAntConfig(**BASE)))
    path = tmp_path_factory.mktemp("cpmant")
    hf.save_pretrained(path)
    return hf, from_hf(path)


def batch():
    """Two rows of 9 ids from 1 up, the second left-padded with 0 over its first 3."""
    torch.manual_seed(1)
    ids = torch.randint(1, 100, (2, 9))
    ids[1, :3] = 0
    return ids, (ids != 0).long()


def test_cpmant_reads_as_a_prefix_lm_with_task_prompt(pair):
    _, ours = pair
    cfg = ours.config
    assert (cfg.task_prompt, cfg.task_prompt_id, cfg.vocab_size, cfg.head_vocab) == (3, 106, 112, 100)
    assert cfg.positions == "segment_relative" and cfg.default_token_type == 2 and cfg.prefix_bidirectional


def test_logits_match_transformers(pair):
    hf, ours = pair
    ids, mask = batch()
    with torch.no_grad():
        theirs, mine = hf(ids).logits, ours(ids, attention_mask=mask).logits
    assert mine.shape == theirs.shape == (2, 9, 100)
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_greedy_tokens_and_cached_steps_match_generate(pair):
    hf, ours = pair
    ids, mask = batch()
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, output_scores=True,
                             return_dict_in_generate=True)
    # a generated 0 would be padding to transformers (it finds a row's real tokens by id): none here
    assert not (theirs.sequences[:, ids.shape[1]:] == 0).any()
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW)
    assert torch.equal(generated, theirs.sequences)
    full = torch.cat([mask, torch.ones(2, NEW, dtype=mask.dtype)], dim=1)
    steps = stepwise_logits(ours, generated, ids.shape[1], full)[:, ids.shape[1] - 1:-1]
    assert (steps - torch.stack(theirs.scores, dim=1)).abs().max().item() <= 1e-4


def test_the_whole_forward_attends_both_ways(pair):
    """Unlike a causal LM's, an earlier position's logits change with a later token (transformers' context of ones)."""
    _, ours = pair
    ids, _ = batch()
    changed = ids.clone()
    changed[:, -1] = ids[:, -1] % 99 + 1
    with torch.no_grad():
        assert (ours(ids).logits[:, 0] - ours(changed).logits[:, 0]).abs().max() > 1e-3


def test_round_trip(pair, tmp_path):
    hf, ours = pair
    ids, mask = batch()
    to_hf(ours, tmp_path / "out")
    again = transformers.CpmAntForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back, mine = again(ids).logits, ours(ids, attention_mask=mask).logits
    assert (back - mine)[mask.bool()].abs().max().item() <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_too_few_segment_types_are_refused():
    with pytest.raises(LlmarchError, match="segment_types=2"):
        hf_model_config({"model_type": "cpmant", **BASE, "segment_types": 2})


def test_speculative_decoding_is_refused(pair):
    """A draft verified in one call would see itself both ways: a prefix LM reads one token a call."""
    from llmarch.generate.draft_model import check_draft

    with pytest.raises(LlmarchError, match="prefix LM"):
        check_draft(pair[1], pair[1], 2)
