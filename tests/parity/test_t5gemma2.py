"""T5Gemma 2 (interop/t5gemma2.py) against transformers: tiny seeded T5Gemma2ForConditionalGeneration models (a
one-layer SigLIP tower, not read), every norm gain moved off its init, read with from_hf. Windows (4: two keys
behind and two ahead in the encoder; 5: symmetric) shorter than the batch's sources (11) and targets (6); the
decoder's merged attention over its own keys and the encoder output's in one softmax; a tied head, and an untied
one with a final soft-cap. test_seq2seq.py's checks: fp32 logits on a padded batch within 1e-4, the to_hf round trip,
greedy and beam search equal to transformers' generate, cached decoding (the memory's keys and values projected once)
equal to the whole forward."""
from __future__ import annotations

import pytest
import torch

import llmarch
import test_seq2seq
from llmarch import LlmarchError
from llmarch.interop.hf import hf_model_config
from test_encdec import perturbed
from test_seq2seq import V

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

S, F = "sliding_attention", "full_attention"
_GEMMA = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=16, sliding_window=4, max_position_embeddings=64,
              layer_types=[S, F])
_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
               patch_size=8)


def _model(encoder: dict, decoder: dict, **kw):
    return transformers.T5Gemma2ForConditionalGeneration(transformers.T5Gemma2Config(
        encoder=dict(text_config=encoder, vision_config=_VISION, mm_tokens_per_image=4), decoder=decoder,
        vocab_size=V, **kw))


CASES = {
    # a deeper decoder, sliding layers in both stacks (the encoder's window of 4 asymmetric), tied head
    "t5gemma2": lambda: _model(_GEMMA, _GEMMA | dict(num_hidden_layers=3, layer_types=[S, S, F])),
    # an odd window (symmetric), other layer orders, untied tables (encoder, decoder, head), soft-capped logits
    "t5gemma2-untied": lambda: _model(_GEMMA | dict(sliding_window=5, layer_types=[F, S]),
                                      _GEMMA | dict(sliding_window=5, layer_types=[S, F], final_logit_softcapping=3.0),
                                      tie_word_embeddings=False),
}

test_logits_match = test_seq2seq.test_logits_match
test_export_round_trip = test_seq2seq.test_export_round_trip
test_generation_matches = test_seq2seq.test_generation_matches
test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    ref = perturbed(CASES[request.param]().eval())
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return request.param, ref, llmarch.from_hf(path)


def test_merged_decoder_and_asymmetric_encoder_windows(pair):
    name, ref, ours = pair
    assert not any(hasattr(b, "cross_attn") for b in ours.decoder.blocks)
    assert {type(b.attn.kind).__name__ for b in ours.decoder.blocks} == {"Merged"}
    window = [(b.attn.kind.pattern.window, b.attn.kind.pattern.ahead) for b in ours.encoder.blocks
              if hasattr(b.attn.kind, "pattern")]
    assert window == ([(2, 2)] if name == "t5gemma2" else [(3, 2)])
    assert (ours.lm_head.weight is ours.embed.weight) == (name == "t5gemma2")


def test_without_the_memory_the_decoder_differs(pair):
    """The merged attention's memory keys are what the logits depend on: with them masked out the logits move."""
    _, _, ours = pair
    src, mask, tgt = test_seq2seq.padded_batch()
    with torch.no_grad():
        memory = ours.encode(src, mask)
        full = ours.decode(tgt, memory, mask).logits
        blind = ours.decode(tgt, memory, torch.zeros_like(mask)).logits
    assert (full - blind).abs().max() > 1e-2


def test_refusals():
    hf = CASES["t5gemma2"]().config.to_dict()
    with pytest.raises(LlmarchError, match="differ in"):
        hf_model_config({**hf, "decoder": {**hf["decoder"], "num_attention_heads": 2}})
    with pytest.raises(LlmarchError, match="attention_bias"):
        hf_model_config({**hf, "decoder": {**hf["decoder"], "attention_bias": True}})
