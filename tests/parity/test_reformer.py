"""Reformer (`model_type: reformer`) against transformers in fp32: ReformerModelWithLMHead and ReformerForMaskedLM,
tiny and perturbed, with LSH layers (2 hash rounds over 4 buckets, rotations from hash_seed) and local layers of
other chunk lengths, axial positions and the reversible two-stream residual. Sequences longer than the LSH chunk
(8) are hashed, sorted and chunked, and those of no multiple of the chunk lengths padded as transformers pads them."""
from __future__ import annotations

import pytest
import torch
import transformers
from conftest import assert_cached_equals_whole, assert_encoder_round_trip, perturbed_from_hf

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf

V = 97


def hf_config(decoder: bool, lsh_chunk: int = 8, **over) -> transformers.ReformerConfig:
    return transformers.ReformerConfig(**{
        **dict(vocab_size=V, hidden_size=32, num_attention_heads=2, attention_head_size=8,
               attn_layers=["local", "lsh", "lsh", "local"], axial_pos_shape=[4, 16], axial_pos_embds_dim=[12, 20],
               max_position_embeddings=64, feed_forward_size=48, num_buckets=4, num_hashes=2, hash_seed=7,
               lsh_attn_chunk_length=lsh_chunk, local_attn_chunk_length=4, is_decoder=decoder,
               hidden_dropout_prob=0.0, local_attention_probs_dropout_prob=0.0, lsh_num_chunks_after=0,
               local_num_chunks_after=0 if decoder else 1, pad_token_id=0, eos_token_id=None), **over})


def pair(decoder: bool, folder, lsh_chunk: int = 8):
    torch.manual_seed(0)
    cls = transformers.ReformerModelWithLMHead if decoder else transformers.ReformerForMaskedLM
    hf = cls(hf_config(decoder, lsh_chunk))
    with torch.no_grad():  # every matrix moved too, so that no two heads, rounds or streams are alike
        for p in hf.parameters():
            if p.dim() > 1:
                p.add_(torch.randn_like(p) * 0.1)
    return hf.eval(), perturbed_from_hf(hf, folder).eval()


def left_padded(L: int):
    torch.manual_seed(1)
    ids = torch.randint(1, V, (2, L))
    mask = torch.ones(2, L, dtype=torch.long)
    mask[1, :5] = 0
    return ids, mask


@pytest.mark.parametrize("L", [16, 24])
def test_causal_lm_logits_and_round_trip(L, tmp_path):
    hf, ours = pair(True, tmp_path / "hf")
    ids, mask = left_padded(L)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # transformers counts slots; llmarch a row's real tokens
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        theirs = hf(ids, attention_mask=mask, position_ids=positions).logits
        assert (mine - theirs)[mask.bool()].abs().max() <= 1e-4
        unpadded = ids[:, :13]  # transformers pads 13 to 16 itself
        assert (ours(unpadded).logits - hf(unpadded).logits).abs().max() <= 1e-4
    to_hf(ours, tmp_path / "out")
    again = transformers.ReformerModelWithLMHead.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask, position_ids=positions).logits - mine)[mask.bool()].abs().max() <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_greedy_generation_and_cached_decoding(tmp_path):
    """Within one LSH chunk (16) sorted chunks are causal, so transformers' cached generation, ours and the whole
    forward agree; the local layers' chunks (4) are crossed."""
    hf, ours = pair(True, tmp_path / "hf", lsh_chunk=16)
    torch.manual_seed(2)
    prompt = torch.randint(1, V, (2, 3))
    theirs = hf.generate(prompt, max_new_tokens=13, do_sample=False, pad_token_id=0)
    generated = llmarch.generate(ours, prompt, max_new_tokens=13)
    assert torch.equal(generated, theirs)
    ids, mask = left_padded(16)
    assert_cached_equals_whole(ours, ids, 7, mask)


@pytest.mark.parametrize("L, lsh_chunk", [(13, 8), (24, 8), (13, 6)])
def test_masked_lm_logits_and_round_trip(L, lsh_chunk, tmp_path):
    """(13, 6): chunks of 4 and 6, so transformers pads to 24, the local layers' last chunk (which the first one
    reads, around) all padding."""
    hf, ours = pair(False, tmp_path / "hf", lsh_chunk)
    torch.manual_seed(3)
    ids = torch.randint(1, V, (2, L))
    mask = torch.ones(2, L, dtype=torch.long)
    mask[1, -4:] = 0
    assert_encoder_round_trip(hf, ours, tmp_path / "out", mask.bool(), dict(input_ids=ids, attention_mask=mask))


def test_refused_variants(tmp_path):
    for over, words in [(dict(num_buckets=None), "num_buckets"), (dict(num_buckets=[2, 2]), "num_buckets"),
                        (dict(hidden_act="tanh"), "hidden_act")]:
        transformers.ReformerModelWithLMHead(hf_config(True, **over)).save_pretrained(tmp_path / words)
        with pytest.raises(LlmarchError, match=words):
            from_hf(tmp_path / words)
