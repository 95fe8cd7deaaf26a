"""More encoder-decoders read from transformers' checkpoints: BigBird-Pegasus (PEGASUS's layout, BigBird's
block-sparse encoder). fp32 logits on padded batches within 1e-4, to_hf round trips, greedy decoding equal to
transformers' generate and cached decoding equal to the whole forward (test_bartkin's checks over this module's
`pair`)."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import FAMILIES
import test_seq2seq
from conftest import seq2seq_pair
from test_bartkin import test_greedy_matches, test_logits_and_round_trip  # noqa: F401
from test_seq2seq import _BARTLIKE

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation
SEQ2SEQ = {
    # BigBird-Pegasus: blocks of 1 key, 1 random block, so test_seq2seq's 11-token sources (past (5 + 2r) b = 7) take
    # the block-sparse pattern; biases on every attention projection; weights of std 0.2, so that attention is far from
    # uniform and a block left out shows
    "bigbird_pegasus": lambda: transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(
        **_BARTLIKE, block_size=1, num_random_blocks=1, use_bias=True, init_std=0.2)),
    # without attention biases, and original_full attention in the encoder
    "bigbird_pegasus-full": lambda: transformers.BigBirdPegasusForConditionalGeneration(
        transformers.BigBirdPegasusConfig(**_BARTLIKE, attention_type="original_full", init_std=0.2)),
}


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory), every norm gain, bias and the
    logits bias moved off its initial value."""
    torch.manual_seed(0)
    return seq2seq_pair(request.param, SEQ2SEQ[request.param](), tmp_path_factory)


def test_bigbird_pegasus_encoder_is_block_sparse(pair):
    """The encoder's BigBird pattern as read, transformers still on it after every other check (it switches itself
    to full attention for good when it meets a short source), and full attention in its place moves the output."""
    name, ref, ours = pair
    if name != "bigbird_pegasus":
        pytest.skip("block-sparse BigBird-Pegasus only")
    enc, dec = ours.config.stack_config("encoder"), ours.config.stack_config("decoder")
    assert [enc.for_layer(i).attention for i in range(2)] == ["bigbird"] * 2
    assert [dec.for_layer(i).attention for i in range(2)] == ["full"] * 2
    src, mask, _ = test_seq2seq.padded_batch()
    with torch.no_grad():
        expected = ref.model.encoder(src, attention_mask=mask).last_hidden_state
        got = ours.encode(src, mask)
        full = llmarch.build(ours.config.replace(layer_overrides={"block_sparse": {"attention": "full"}}))
        full.load_state_dict(ours.state_dict())
        dense = full.eval().encode(src, mask)
    assert ref.model.encoder.attention_type == "block_sparse"
    real = mask.bool()
    assert (expected - got)[real].abs().max().item() <= 1e-4
    assert (dense - got)[real].abs().max().item() > 1e-3


def test_bigbird_pegasus_refusals():
    with pytest.raises(llmarch.LlmarchError, match="unknown attention_type 'sliding'"):
        FAMILIES["bigbird_pegasus"].to_config(dict(_BARTLIKE, model_type="bigbird_pegasus", attention_type="sliding"))
