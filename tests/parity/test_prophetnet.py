"""ProphetNet (Qi et al. 2020) read from transformers' checkpoints: the decoder's n-gram attention, its first
predicting stream read by the head. Logits on a padded batch within 1e-4 of transformers' cached decoding (one token
a step, which is what its generate runs), greedy decoding equal to its generate, our cached decoding equal to our whole
forward, and the to_hf round trip. transformers' own whole-sequence forward differs from its cached decoding (its
gather reads the predicting stream's relative bias in another order when more than one token is fed): asserted, so
that a fix there shows here."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import FAMILIES, to_hf
import test_seq2seq
from conftest import seq2seq_pair
from test_bartkin import test_greedy_matches  # noqa: F401
from test_seq2seq import V

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation
# 2 streams, 8 buckets up to distance 16 (the 6-token targets reach the logarithmic ones only through the predicting
# stream's offset), weights of std 0.2 so that attention is far from uniform
CONFIG = dict(vocab_size=V, hidden_size=32, num_encoder_layers=2, num_decoder_layers=2, num_encoder_attention_heads=4,
              num_decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
              ngram=2, num_buckets=8, relative_max_distance=16, dropout=0.0, init_std=0.2)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    ref = transformers.ProphetNetForConditionalGeneration(transformers.ProphetNetConfig(**CONFIG))
    return seq2seq_pair("prophetnet", ref, tmp_path_factory)


@torch.no_grad()
def stepwise(model, src, mask, tgt) -> torch.Tensor:
    """transformers' logits fed one target token a step over its cache, as its generate runs."""
    memory = model.get_encoder()(src, attention_mask=mask)
    steps, cache = [], None
    for t in range(tgt.shape[1]):
        out = model(encoder_outputs=memory, attention_mask=mask, decoder_input_ids=tgt[:, t:t + 1], cache=cache,
                    use_cache=True)
        steps.append(out.logits)
        cache = out.cache
    return torch.cat(steps, 1)


def test_logits_and_round_trip(pair, tmp_path):
    _, ref, ours = pair
    src, mask, tgt = test_seq2seq.padded_batch()
    got = ours(src, tgt, attention_mask=mask).logits
    assert not mask.all()
    to_hf(ours, tmp_path)
    back = transformers.ProphetNetForConditionalGeneration.from_pretrained(tmp_path).eval()
    for model in (ref, back):
        assert (stepwise(model, src, mask, tgt) - got).abs().max().item() <= 1e-4
    with torch.no_grad():  # transformers' whole forward: the first token alone agrees, more tokens do not
        whole = ref(input_ids=src, attention_mask=mask, decoder_input_ids=tgt, use_cache=False).logits
        one = ref(input_ids=src, attention_mask=mask, decoder_input_ids=tgt[:, :1], use_cache=False).logits
    assert (one - got[:, :1]).abs().max().item() <= 1e-4
    assert (whole - got).abs().max().item() > 1e-2


def test_streams_as_read(pair):
    """The decoder's layers on attention 'ngram' with their relative-bias projections, the encoder's full; the
    predicting stream's table; the head reads the predicting stream: without its rows the logits move."""
    _, ref, ours = pair
    cfg = ours.config
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    assert [enc.for_layer(i).attention for i in range(2)] == ["full"] * 2 and enc.ngram_streams == 0
    assert [dec.for_layer(i).attention for i in range(2)] == ["ngram"] * 2 and dec.ngram_streams == 2
    assert torch.equal(ours.decoder.ngram_embed, ref.prophetnet.decoder.ngram_embeddings.weight)
    theirs = ref.prophetnet.decoder.layers[1].self_attn.relative_pos_embeddings.bias
    assert torch.equal(ours.decoder.blocks[1].attn.rel_proj.bias, theirs)
    assert (cfg.position_offset, cfg.context_length, cfg.decoder_start_id) == (1, 63, 0)


def test_refusals():
    read = FAMILIES["prophetnet"].to_config
    with pytest.raises(llmarch.LlmarchError, match="pad_token_id=1: transformers' cached decoding"):
        read(dict(CONFIG, pad_token_id=1))
    with pytest.raises(llmarch.LlmarchError, match="encoder_ffn_dim=64 differs from decoder_ffn_dim=32"):
        read(dict(CONFIG, decoder_ffn_dim=32))
    with pytest.raises(llmarch.LlmarchError, match="ngram_streams=2 needs attention 'ngram' in every layer"):
        llmarch.build("bart-tiny", ngram_streams=2)
    with pytest.raises(llmarch.LlmarchError, match="attention='ngram' is a decoder's"):
        llmarch.build("bert-tiny", attention="ngram")


def test_beam_search_matches(pair):
    """Beam search (4 beams, a length penalty, early stopping) returns transformers' sequences (test_seq2seq's
    check), its beams reordering our main stream's cache."""
    test_seq2seq.test_generation_matches(pair, dict(num_beams=4, length_penalty=0.6, early_stopping=True))


def test_flops_count_the_decoders_predicting_stream():
    """The decoder runs each target token's row and its predicting stream's row: its blocks count twice in the
    training FLOPs per token (until 2026-12-07, once)."""
    from llmarch.analysis.accounting import model_facts
    from llmarch.interop.hf import hf_model_config
    from llmarch.layers.mixer import MIXERS
    from llmarch.models.build import empty_model

    cfg = hf_model_config(transformers.ProphetNetConfig(**CONFIG).to_dict())
    model, facts = empty_model(cfg), model_facts(cfg)
    decoder = sum(p.numel() for b in model.decoder.blocks for p in b.parameters())
    head = model.lm_head.weight.numel() if cfg.tied_head else 0
    scores = MIXERS["attention"].score_dims(cfg)
    assert facts["flops_per_token"] == 6 * (facts["non_embedding_parameters"] + head + decoder) \
        + 6 * cfg.context_length * scores * (2 + 2 * 2)
