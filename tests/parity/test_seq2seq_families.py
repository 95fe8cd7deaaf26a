"""More encoder-decoders read from transformers' checkpoints: UMT5 (T5 v1.1 with a relative-bias table in every layer);
T5Gemma (Gemma 2 stacks: soft-capping, sliding and full layers, sandwich norms around cross-attention too, an
encoder embedding of its own); LongT5 (T5 whose encoder sees keys within a radius, and with transient-global
attention one summary per block). fp32 logits on padded batches within 1e-4, to_hf round trips, greedy and beam
search equal to transformers' generate and cached decoding equal to the whole forward (test_seq2seq.py's checks over
this module's `pair`)."""
from __future__ import annotations

import pytest
import torch

import llmarch
import test_seq2seq
from test_encdec import perturbed
from test_seq2seq import V

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

_T5LIKE = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               relative_attention_max_distance=16, dropout_rate=0.0, decoder_start_token_id=0)
_GEMMA = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=16, sliding_window=4, max_position_embeddings=64,
              final_logit_softcapping=3.0, attn_logit_softcapping=2.0, initializer_range=0.2)
SEQ2SEQ = {
    # UMT5: gated-GELU T5 v1.1 blocks, a bias table per layer, tied head scaled by d_model^-0.5
    "umt5": lambda: transformers.UMT5ForConditionalGeneration(transformers.UMT5Config(**_T5LIKE)),
    # UMT5 asked for an untied head: transformers still ties it (forced) but no longer rescales; a ReLU MLP and a
    # deeper decoder, whose extra layer's table only the decoder has
    "umt5-unscaled": lambda: transformers.UMT5ForConditionalGeneration(transformers.UMT5Config(
        **_T5LIKE | dict(num_decoder_layers=3), feed_forward_proj="relu", tie_word_embeddings=False)),
    # T5Gemma: windows (4) shorter than the batch's sources (11) and targets (6), caps the scores and logits reach
    # (initializer_range 0.2), GQA in self- and cross-attention, a deeper decoder, tied head
    "t5gemma": lambda: transformers.T5GemmaForConditionalGeneration(transformers.T5GemmaConfig(
        encoder=_GEMMA, decoder=_GEMMA | dict(num_hidden_layers=3), vocab_size=V)),
    # untied head; layer types other than the default alternation, different in each stack
    "t5gemma-untied": lambda: transformers.T5GemmaForConditionalGeneration(transformers.T5GemmaConfig(
        encoder=_GEMMA | dict(layer_types=["full_attention", "sliding_attention"]),
        decoder=_GEMMA | dict(layer_types=["sliding_attention", "sliding_attention"]), vocab_size=V,
        tie_word_embeddings=False)),
    # LongT5 (local): radius 2 (a window of 5 keys) over 11-token sources, tied head rescaled; gated-GELU, unscaled
    "longt5": lambda: transformers.LongT5ForConditionalGeneration(transformers.LongT5Config(
        **_T5LIKE, local_radius=2)),
    "longt5-v1.1": lambda: transformers.LongT5ForConditionalGeneration(transformers.LongT5Config(
        **_T5LIKE, local_radius=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    # LongT5 (transient-global): blocks of 3 over 11 slots, so the padded rows' trailing tokens join the last full
    # block, and radius 2
    "longt5-tglobal": lambda: transformers.LongT5ForConditionalGeneration(transformers.LongT5Config(
        **_T5LIKE, local_radius=2, encoder_attention_type="transient-global", global_block_size=3)),
}

test_logits_match = test_seq2seq.test_logits_match
test_export_round_trip = test_seq2seq.test_export_round_trip
test_generation_matches = test_seq2seq.test_generation_matches
test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory), every norm gain moved off 1."""
    torch.manual_seed(0)
    ref = perturbed(SEQ2SEQ[request.param]())
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return request.param, ref, llmarch.from_hf(path)


def test_umt5_reads_a_table_per_layer(pair):
    name, ref, ours = pair
    if not name.startswith("umt5"):
        pytest.skip("UMT5 only")
    cfg = ours.config
    assert cfg.relative_bias_per_layer and cfg.head_scale == (name == "umt5")
    assert len(ours.decoder.positions.layers) == cfg.n_decoder_layers
    table = ref.decoder.block[cfg.n_decoder_layers - 1].layer[0].SelfAttention.relative_attention_bias.weight
    assert torch.equal(ours.decoder.positions.layers[-1], table)


def test_t5gemma_reads_both_embeddings(pair):
    name, ref, ours = pair
    if not name.startswith("t5gemma"):
        pytest.skip("T5Gemma only")
    assert torch.equal(ours.encoder_embed.weight, ref.model.encoder.embed_tokens.weight)
    assert torch.equal(ours.embed.weight, ref.model.decoder.embed_tokens.weight)
    assert (ours.lm_head.weight is ours.embed.weight) == (name == "t5gemma")
    windows = [ours.config.stack_config(p).for_layer(i).sliding_window for p in ("encoder", "decoder") for i in (0, 1)]
    assert windows == ([5, None, 4, None] if name == "t5gemma" else [None, 5, 4, 4])


def test_longt5_encoder_attends_locally(pair):
    name, ref, ours = pair
    if not name.startswith("longt5"):
        pytest.skip("LongT5 only")
    enc = ours.config.stack_config("encoder")
    assert type(ours.encoder.blocks[1].attn.kind).__name__ == ("TransientGlobal" if "global" in name else "Local")
    assert enc.for_layer(0).sliding_window == ref.config.local_radius + 1
    assert type(ours.decoder.blocks[0].attn.kind).__name__ == "Full"


def test_refusals():
    with pytest.raises(llmarch.LlmarchError, match="relative_bias_per_layer needs positions='t5_relative'"):
        llmarch.build("bart-tiny", relative_bias_per_layer=True)
    with pytest.raises(llmarch.LlmarchError, match="encoder_embed .* is for encoder-decoders"):
        llmarch.build("gpt-tiny", encoder_embed=True)
    with pytest.raises(llmarch.LlmarchError, match="layer_types has 2 entries for n_layers=2 \\+ n_decoder_layers=2"):
        llmarch.build("t5-tiny", n_layers=2, n_decoder_layers=2, layer_types=["a", "b"])


def test_transient_global_refuses_a_causal_stack():
    with pytest.raises(llmarch.LlmarchError, match="transient_global' is bidirectional"):
        llmarch.build("t5-tiny", attention="transient_global", sliding_window=4, global_block_size=4, n_layers=1,
                      n_decoder_layers=1)


def test_t5gemma_refuses_stacks_it_cannot_build(tmp_path):
    conf = transformers.T5GemmaConfig(encoder=_GEMMA, decoder=_GEMMA | dict(num_key_value_heads=4), vocab_size=V)
    transformers.T5GemmaForConditionalGeneration(conf).save_pretrained(tmp_path)
    with pytest.raises(llmarch.LlmarchError, match="encoder and decoder differ in n_kv_heads"):
        llmarch.from_hf(tmp_path)
