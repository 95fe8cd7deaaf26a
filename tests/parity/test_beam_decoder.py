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


def test_beam_search_ends_at_every_end_id(tmp_path):
    """A chat model may end a turn with any of several ids (generation_config.json's eos_token_id list): beam
    search ends a hypothesis at each, as transformers' does (one-token stops are more end ids)."""
    torch.manual_seed(0)
    ours = llmarch.build("gpt-tiny", n_layers=2, d_model=64, n_heads=4, vocab_size=101, context_length=64).eval()
    to_hf(ours, tmp_path)
    ref = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(2))
    end = 0

    def theirs(ends):
        with torch.no_grad():
            return ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                num_beams=4, eos_token_id=ends, pad_token_id=end).tolist()

    plain = theirs([end])
    with torch.no_grad():
        candidates = ref(ids).logits[:, -1].topk(3).indices.flatten().tolist()
    more = next(t for t in candidates if theirs([end, t]) != plain)  # an id whose ending changes the beams
    got = llmarch.generate(ours, ids.tolist(), max_new_tokens=12, eos_id=end, stop=[[more]], num_beams=4)

    def until_end(row):
        new = row[7:]
        cut = min((new.index(t) for t in (end, more) if t in new), default=len(new) - 1)
        return row[:7] + new[:cut + 1]

    assert [until_end(r) for r in got] == [until_end(r) for r in theirs([end, more])]
