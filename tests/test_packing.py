"""Packed documents (document_ids): a packed row computes what each of its documents computes alone."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.models.masks import document_positions

SMALL = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, context_length=64)


def test_document_positions():
    docs = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2]])
    assert document_positions(docs).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt-tiny", "alibi-tiny", "qwen3-tiny"])
def test_packed_row_equals_documents_alone(preset):
    torch.manual_seed(0)
    extra = dict(n_kv_heads=2) if preset in ("llama-tiny", "qwen3-tiny") else {}
    model = llmarch.build(preset, **SMALL, **extra).eval()
    lengths = [5, 9, 3]
    docs = [torch.randint(0, 64, (n,)) for n in lengths]
    ids = torch.cat(docs)[None]
    doc_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    with torch.no_grad():
        packed = model(ids, document_ids=doc_ids).logits[0]
        alone = torch.cat([model(d[None]).logits[0] for d in docs])
    assert (packed - alone).abs().max() < 1e-5


def test_packing_refused_for_recurrent_mixers():
    model = llmarch.build("mamba-tiny", vocab_size=64, d_model=32, n_layers=2, context_length=64)
    with pytest.raises(LlmarchError, match="packed documents"):
        model(torch.zeros(1, 4, dtype=torch.long), document_ids=torch.zeros(1, 4, dtype=torch.long))
