"""More of BART's relatives read from transformers' checkpoints: Blenderbot (pre-norm, positions from 0, no
embedding norm), BlenderbotSmall (post-norm, its decoder's embedding norm before the positions), PLBART and MVP
(BART's layout under their own names). fp32 logits on padded batches within 1e-4, to_hf round trips, greedy
decoding equal to transformers' generate and cached decoding equal to the whole forward (test_seq2seq.py's checks
over this module's `pair`)."""
from __future__ import annotations

import pytest
import torch

import llmarch
import test_seq2seq
from conftest import perturbed
from test_seq2seq import _BARTLIKE

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SEQ2SEQ = {
    # Blenderbot: pre-norm with final norms, learned positions from 0, scaled embeddings, pad 0 / start 1
    "blenderbot": lambda: transformers.BlenderbotForConditionalGeneration(transformers.BlenderbotConfig(
        **_BARTLIKE, scale_embedding=True)),
    # BlenderbotSmall: post-norm, positions from 0, LN(e + p) in the encoder and LN(e) + p in the decoder
    "blenderbot-small": lambda: transformers.BlenderbotSmallForConditionalGeneration(
        transformers.BlenderbotSmallConfig(**_BARTLIKE, activation_function="relu")),
    # PLBART: BART with scaled embeddings; no decoder_start_token_id, so generation starts from bos
    "plbart": lambda: transformers.PLBartForConditionalGeneration(transformers.PLBartConfig(**_BARTLIKE)),
    # MVP without prompts: BART-large's layout
    "mvp": lambda: transformers.MvpForConditionalGeneration(transformers.MvpConfig(**_BARTLIKE)),
}

test_logits_match = test_seq2seq.test_logits_match
test_export_round_trip = test_seq2seq.test_export_round_trip
test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory), every norm gain, bias and the
    logits bias moved off its initial value."""
    torch.manual_seed(0)
    ref = perturbed(SEQ2SEQ[request.param]())
    if hasattr(ref, "final_logits_bias"):
        ref.final_logits_bias.normal_()
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return request.param, ref, llmarch.from_hf(path)


def test_greedy_and_beam_match(pair):
    """Greedy decoding, then one beam search, return transformers' sequences (test_seq2seq's check)."""
    test_seq2seq.test_generation_matches(pair, dict(num_beams=1))
    test_seq2seq.test_generation_matches(pair, dict(num_beams=3, length_penalty=0.6, early_stopping=True))


def test_layouts_read_as_written(pair):
    """The per-family switches from_hf sets: Blenderbot pre-norm without an embedding norm, BlenderbotSmall's decoder
    (only) normalising before its positions, and each start token as transformers' generate picks it."""
    name, ref, ours = pair
    cfg = ours.config
    assert cfg.hf_model_type == name
    assert cfg.norm_placement == ("pre" if name == "blenderbot" else "post")
    assert cfg.embed_norm == (name != "blenderbot") and cfg.decoder_embed_norm_first == (name == "blenderbot-small")
    assert cfg.position_offset == (2 if name in ("plbart", "mvp") else 0)
    start = getattr(ref.config, "decoder_start_token_id", None)
    assert cfg.decoder_start_id == (ref.config.bos_token_id if start is None else start)


def test_refusals(tmp_path):
    with pytest.raises(llmarch.LlmarchError, match="decoder_embed_norm_first .* needs embed_norm"):
        llmarch.build("bart-tiny", embed_norm=False, decoder_embed_norm_first=True)
    transformers.MvpForConditionalGeneration(transformers.MvpConfig(
        **_BARTLIKE, use_prompt=True, prompt_length=3, prompt_mid_dim=16)).save_pretrained(tmp_path)
    with pytest.raises(llmarch.LlmarchError, match="MVP checkpoints with use_prompt"):
        llmarch.from_hf(tmp_path)
