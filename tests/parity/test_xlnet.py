"""llmarch's xl_relative attention over relative_sinusoidal positions against transformers' XLNet, through files (fp32,
<= 1e-4): the LM head and the per-token classifier on a right-padded batch with two segments (every position, padding
too), the base model, a clamped distance (clamp_len), the to_hf round trip; a causal stack of the same weights against
XLNet's content stream under the natural-order perm_mask on a left-padded batch, and its cached decoding."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_equals_whole, perturbed

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=120, d_model=64, n_layer=2, n_head=4, d_inner=96, initializer_range=0.1, num_labels=3)
HEADS = {"LMHeadModel": "lm", "ForTokenClassification": "tokens"}


def hf_model(suffix, **extra):
    torch.manual_seed(0)
    return perturbed(getattr(transformers, "XLNet" + suffix)(transformers.XLNetConfig(**BASE, **extra)))


def batch():
    """Two rows of 12 ids, the second right-padded after 9; segment 1 from position 6."""
    torch.manual_seed(1)
    ids = torch.randint(6, 120, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    ids[1, 9:] = 5
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return ids, types, mask


@pytest.mark.parametrize("suffix, clamp", [("LMHeadModel", -1), ("ForTokenClassification", -1), ("LMHeadModel", 3)])
def test_xlnet_matches_transformers(tmp_path, suffix, clamp):
    hf = hf_model(suffix, clamp_len=clamp)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert (cfg.attention, cfg.positions, cfg.head, cfg.causal) == ("xl_relative", "relative_sinusoidal",
                                                                      HEADS[suffix], False)
    assert cfg.relative_clamp == (3 if clamp > 0 else None)
    ids, types, mask = batch()
    with torch.no_grad():
        for segments in (types, None):
            theirs = hf(ids, attention_mask=mask, token_type_ids=segments).logits
            mine = ours(ids, attention_mask=mask, token_type_ids=segments).logits
            assert (mine - theirs).abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if suffix == "LMHeadModel" else ["a", "b", "c"])
    again = getattr(transformers, "XLNet" + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert (back - mine).abs().max().item() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_a_base_model_reads_as_an_embedding_model(tmp_path):
    hf = hf_model("Model")
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.head == "embed"
    ids, types, mask = batch()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs).abs().max().item() <= 1e-4


def test_a_causal_stack_is_the_content_stream_under_the_natural_order(tmp_path):
    """perm_mask[i, j] = 1 for j > i: XLNet's content stream sees itself and what comes before it, which a causal
    stack of the checkpoint's weights computes (left padding kept out), and caches."""
    hf = hf_model("LMHeadModel")
    hf.save_pretrained(tmp_path / "hf")
    read = from_hf(tmp_path / "hf")
    ours = llmarch.build(read.config, causal=True).eval()
    ours.load_state_dict(read.state_dict())
    ids, _, _ = batch()
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    perm = torch.ones(12, 12).triu(1).expand(2, -1, -1)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, perm_mask=perm).logits
        mine = ours(ids, attention_mask=mask).logits
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4
    assert_cached_equals_whole(ours, ids, 7, mask)


@pytest.mark.parametrize("bad", [dict(attn_type="uni"), dict(bi_data=True), dict(same_length=True),
                                 dict(ff_activation="tanh")])
def test_unsupported_variants_are_refused(bad):
    with pytest.raises(LlmarchError, match="XLNet with|xlnet: ff_activation"):
        hf_model_config({"model_type": "xlnet", **BASE, **bad})


def test_the_sequence_summary_head_is_refused():
    with pytest.raises(LlmarchError, match="XLNetForSequenceClassification"):
        hf_model_config({"model_type": "xlnet", **BASE, "architectures": ["XLNetForSequenceClassification"]})
