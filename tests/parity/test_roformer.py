"""llmarch's encoder with RoPE over adjacent pairs (rope_pairs) against transformers' RoFormer with each head (masked
LM, sequence and token classification) and as a base model, through files (fp32, <= 1e-4) on a right-padded batch
with token types, and a to_hf round trip; embeddings at the hidden width and narrower (embeddings_project)."""
import pytest
import torch

from llmarch.interop import from_hf, to_hf

from conftest import perturbed
from test_bert import HEADS, padded_batch, real_part

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            num_labels=3, max_position_embeddings=64, initializer_range=0.1)
CASES = [(suffix, e) for suffix in HEADS for e in (None, 32)]


def hf_model(suffix, embedding_size):
    torch.manual_seed(0)
    conf = transformers.RoFormerConfig(**BASE, embedding_size=embedding_size)
    hf = perturbed(getattr(transformers, "RoFormer" + suffix)(conf))
    return hf, conf


def batch():
    torch.manual_seed(1)
    return padded_batch(0, low=1)


@pytest.mark.parametrize("suffix, embedding_size", CASES)
def test_roformer_matches_transformers(tmp_path, suffix, embedding_size):
    head = HEADS[suffix]
    hf, conf = hf_model(suffix, embedding_size)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.positions == "rope" and ours.config.head == head and not ours.config.causal
    ids, types, mask = batch()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert mine.shape == theirs.shape
    assert (real_part(mine, mask, head) - real_part(theirs, mask, head)).abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if head == "lm" else ["a", "b", "c"])
    again = getattr(transformers, "RoFormer" + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, token_type_ids=types).logits
    assert (real_part(back, mask, head) - real_part(mine, mask, head)).abs().max().item() <= 1e-4


def test_a_base_model_reads_as_an_embedding_model(tmp_path):
    torch.manual_seed(0)
    hf = transformers.RoFormerModel(transformers.RoFormerConfig(**BASE)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.head == "embed"
    ids, types, mask = batch()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_unsupported_variants_are_refused():
    from llmarch.errors import LlmarchError
    from llmarch.interop.hf import hf_model_config

    for bad in (dict(rotary_value=True), dict(is_decoder=True), dict(hidden_act="gelu_new")):
        with pytest.raises(LlmarchError, match="RoFormer"):
            hf_model_config({"model_type": "roformer", **BASE, **bad})
