"""Longformer parity with transformers' LongformerForMaskedLM (fp32, max |dlogit| <= 1e-4) on a padded batch
with local windows and global tokens, and without global tokens; export round trip."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import to_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.LongformerConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, attention_window=[8, 8], max_position_embeddings=130,
                                        pad_token_id=1)
    hf = transformers.LongformerForMaskedLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("longformer")
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (3, 37), generator=g)  # longer than the window, not a multiple of it
    mask = torch.ones_like(ids)
    mask[1, 30:], mask[2, 20:] = 0, 0
    ids[mask == 0] = 1
    glob = torch.zeros_like(ids)
    glob[:, 0], glob[0, 17], glob[1, 5] = 1, 1, 1  # rows with different numbers of global tokens
    return ids, mask, glob


@pytest.mark.parametrize("with_global", [True, False])
def test_logits_match(pair, with_global):
    hf, ours = pair
    assert (ours.config.attention, ours.config.sliding_window) == ("longformer", 5)
    ids, mask, glob = batch()
    kw = dict(global_attention_mask=glob) if with_global else {}
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, **kw).logits
        got = ours(ids, attention_mask=mask, **kw).logits
    real = mask.bool()
    assert (expected - got)[real].abs().max().item() <= 1e-4


def test_export_round_trip(pair, tmp_path):
    _, ours = pair
    to_hf(ours, tmp_path)
    back = transformers.LongformerForMaskedLM.from_pretrained(tmp_path).eval()
    ids, mask, glob = batch()
    with torch.no_grad():
        diff = back(ids, attention_mask=mask, global_attention_mask=glob).logits - ours(
            ids, attention_mask=mask, global_attention_mask=glob).logits
    assert diff[mask.bool()].abs().max().item() <= 1e-4
