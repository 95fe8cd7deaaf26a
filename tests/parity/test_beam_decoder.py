"""Beam search on a decoder-only model returns transformers' sequences (GPT-2 layout, left-padded prompts)."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import to_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.mark.parametrize("options", [dict(num_beams=4), dict(num_beams=3, length_penalty=0.5, early_stopping=True)])
def test_decoder_only_beam_search_matches(tmp_path, options):
    torch.manual_seed(0)
    ours = llmarch.build("gpt-tiny", n_layers=2, d_model=64, n_heads=4, vocab_size=101, context_length=64).eval()
    to_hf(ours, tmp_path)
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 101, (3, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        eos = int(ref.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0)[0, -1])
        expected = ref.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=eos,
                                pad_token_id=eos, **options)
    got = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_id=eos, **options)

    def until_eos(row):
        new = row[7:]
        return row[:7] + (new[: new.index(eos) + 1] if eos in new else new)

    assert [until_eos(r) for r in got.tolist()] == [until_eos(r) for r in expected.tolist()]
