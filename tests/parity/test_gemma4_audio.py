"""Gemma 4 with audio (interop/gemma4_audio.py, audio/conformer.py, layers/conformer.py) against transformers in fp32:
tiny random Gemma4ForConditionalGeneration checkpoints whose audio tower's matrices are drawn wide (queries' and keys'
wider, so attention is far from uniform and a wrong band or relative position shows), every 1-D parameter moved off
its init, and the clipped linears' bounds drawn where they bite. A left-padded batch of two rows, one with one clip
and one with two, the clips of 40, 23 and 13 frames (10, 6 and 4 audio tokens) padded to 40 with the feature mask:
the audio features themselves, logits, greedy tokens equal to transformers' generate, cached decoding after the audio
prefill equal to the whole forward, the to_hf round trip loaded by transformers."""
import pytest
import torch
import transformers

import llmarch
from conftest import perturbed
from test_audio_language import cached_gap, round_trip
from test_llava_next import gap
from test_qwen_vl_video import left_padded
from llmarch.errors import LlmarchError

S, F = "sliding_attention", "full_attention"
TEXT = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, global_head_dim=32, intermediate_size=96, sliding_window=8, layer_types=[S, F],
            final_logit_softcapping=30.0)
AUDIO_ID, MELS, FRAMES = 120, 16, [40, 23, 13]
CASES = {
    # E2B-like: per-layer inputs (the audio token's read as padding), clipped linears, the published band (the frame
    # and left - 2 before it) in chunks of 4
    "ple_clipped": (dict(TEXT, hidden_size_per_layer_input=8, vocab_size_per_layer_input=128),
                    dict(attention_chunk_size=4, attention_context_left=5, attention_context_right=0)),
    # no per-layer inputs or clipping; a right context (one frame ahead), chunks of 3, an untied head
    "right_context": (dict(TEXT, hidden_size_per_layer_input=0, tie_word_embeddings=False),
                      dict(attention_chunk_size=3, attention_context_left=4, attention_context_right=2,
                           use_clipped_linears=False, hidden_act="gelu_pytorch_tanh")),
}

BASE = dict(kind="conformer", n_mels=MELS, conv_channels=[MELS, 8], width=32, n_heads=2, n_layers=1, ffn_hidden=128,
            output_dims=24, projector="rms_linear", projector_bias=False)  # llmarch's own tower, for the checks


def build(text, audio):
    conf = transformers.Gemma4Config(
        text_config=text, vision_config=None, audio_token_id=AUDIO_ID,
        audio_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_proj_dims=24,
                          subsampling_conv_channels=[MELS, 8], attention_logit_cap=5.0, **audio))
    torch.manual_seed(0)
    hf = transformers.Gemma4ForConditionalGeneration(conf)
    with torch.no_grad():
        for name, p in hf.model.audio_tower.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3 if any(k in name for k in ("q_proj", "k_proj")) else 0.15)
        for name, b in hf.model.audio_tower.named_buffers():
            if name.endswith(("_min", "_max")):  # bounds that bite: about one standard deviation out
                b.copy_((torch.rand(()) + 0.5) * (1 if name.endswith("_max") else -1))
    hf = perturbed(hf)
    hf.generation_config.eos_token_id = None
    return hf


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    hf = build(*CASES[request.param])
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch(ours):
    """ids (2, T) left-padded (row 0: text, clip 0's tokens, text; row 1: text, clip 1's, text, clip 2's, text), its
    mask, the clips' features (3, 40, MELS) and their feature mask."""
    a = ours.audio.a
    g = torch.Generator().manual_seed(1)
    counts = [a.clip_tokens(f) for f in FRAMES]
    ids, mask = left_padded([[2, 5, 6] + [AUDIO_ID] * counts[0] + [7, 8, 9, 10],
                             [2, 11] + [AUDIO_ID] * counts[1] + [12, 13] + [AUDIO_ID] * counts[2] + [14, 15, 16]])
    real = torch.arange(40)[None] < torch.tensor(FRAMES)[:, None]
    features = torch.randn(3, 40, MELS, generator=g)  # padded frames not zeroed: the mask must keep them out
    return ids, mask, features, real


def hf_logits(hf, ids, mask, features, real):
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, input_features=features, input_features_mask=real).logits


def test_audio_features_equal_transformers(pair):
    hf, ours = pair
    _, _, features, real = batch(ours)
    with torch.no_grad():
        out = hf.model.get_audio_features(features, real)
        theirs, mine = out.pooler_output[out.attention_mask], ours.audio.features(features, real.long())
    assert mine.shape == theirs.shape == (20, 64) and (mine - theirs).abs().max() <= 1e-5


def test_the_clip_bounds_bite():
    hf = build(*CASES["ple_clipped"])
    _, _, features, real = batch(llmarch.build("llama-tiny", vocab_size=8, audio=BASE))
    with torch.no_grad():
        clipped = hf.model.get_audio_features(features, real).pooler_output
        for name, b in hf.model.audio_tower.named_buffers():
            if name.endswith(("_min", "_max")):
                b.fill_(float("inf") if name.endswith("_max") else -float("inf"))
        free = hf.model.get_audio_features(features, real).pooler_output
    assert (clipped - free).abs().max() > 0.1


def test_logits_with_one_and_two_clips_of_different_lengths(pair):
    hf, ours = pair
    ids, mask, features, real = batch(ours)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, input_features=features, feature_attention_mask=real).logits
    assert gap(mine, hf_logits(hf, ids, mask, features, real), mask) <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, features, real = batch(ours)
    theirs = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0,
                         input_features=features, input_features_mask=real)
    mine = llmarch.generate(ours, ids, 8, attention_mask=mask, input_features=features, feature_attention_mask=real)
    assert torch.equal(mine, theirs)


def test_cached_decoding_after_an_audio_prefill_equals_the_whole_forward(pair):
    _, ours = pair
    ids, mask, features, real = batch(ours)
    assert cached_gap(ours, ids, mask, dict(input_features=features, feature_attention_mask=real)) <= 1e-4


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    hf, ours = pair
    ids, mask, features, real = batch(ours)
    again, before = round_trip(hf, ours, tmp_path / "out", lambda m: hf_logits(m, ids, mask, features, real))
    assert gap(again, before, mask) <= 1e-4


def test_wrong_audio_inputs_are_refused(pair):
    _, ours = pair
    ids, mask, features, real = batch(ours)
    with pytest.raises(LlmarchError, match="audio tokens"):
        ours(ids, attention_mask=mask, input_features=features[:2], feature_attention_mask=real[:2])
    with pytest.raises(LlmarchError, match="log-mel bins"):
        ours(ids, attention_mask=mask, input_features=features.transpose(1, 2), feature_attention_mask=real)



@pytest.mark.parametrize("change, message", [
    (dict(n_mels=20), "leaves 5 of n_mels 20 frequency rows"), (dict(conv_channels=[16]), "two positive integers"),
    (dict(context_left=1), "context_left >= 2"), (dict(kind="lstm"), "audio kind 'lstm' is not supported"),
    (dict(clipped=1), "clipped must be true or false"), (dict(logit_cap=0), "logit_cap must be a positive number"),
    (dict(pool=2), "no pool or stack"), (dict(window=4), "no window")])
def test_conformer_fields_are_checked(change, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.build("llama-tiny", vocab_size=8, audio=dict(BASE, **change))
