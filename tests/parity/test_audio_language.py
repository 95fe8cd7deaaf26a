"""Qwen2-Audio and Voxtral with audio (audio/, interop/qwen2_audio.py, interop/voxtral.py) against transformers in
fp32: a left-padded batch of two rows, one with one clip and one with two, the clips of different lengths (Qwen2-
Audio's feature_attention_mask giving each its own token count; Voxtral's whole 30 s clips, as its processor pads
them): the audio features themselves, logits, greedy tokens equal to transformers' generate, cached decoding after the
audio prefill equal to the whole forward, the to_hf round trip loaded by transformers. Tiny random checkpoints, the
towers' matrices drawn N(0, 0.1) (queries' and keys' N(0, 0.4), so attention is far from uniform and a wrong mask
shows) and every norm gain and bias moved off its init."""
import pytest
import torch
import transformers

import llmarch
from conftest import perturbed, prefilled_then_stepped
from test_llava_next import gap
from llmarch.errors import LlmarchError

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=100, rms_norm_eps=1e-5)
AUDIO_ID, POSITIONS, MELS = 99, 20, 8  # 20 encoder positions: clips of 40 frames
FRAMES = [40, 25, 11]  # Qwen2-Audio's real frames per clip: 10, 6 and 3 tokens


def qwen2_audio():
    conf = transformers.Qwen2AudioConfig(
        text_config={"model_type": "qwen2", **TEXT},
        audio_config=dict(model_type="qwen2_audio_encoder", d_model=16, encoder_layers=2, encoder_attention_heads=2,
                          encoder_ffn_dim=32, num_mel_bins=MELS, max_source_positions=POSITIONS),
        audio_token_index=AUDIO_ID)
    return transformers.Qwen2AudioForConditionalGeneration(conf)


def voxtral():
    conf = transformers.VoxtralConfig(
        text_config={"model_type": "llama", **TEXT, "head_dim": 8},
        audio_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          num_mel_bins=MELS, max_source_positions=POSITIONS), audio_token_id=AUDIO_ID)
    return transformers.VoxtralForConditionalGeneration(conf)


@pytest.fixture(scope="module", params=[qwen2_audio, voxtral], ids=["qwen2_audio", "voxtral"])
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    hf = request.param()
    with torch.no_grad():
        for name, p in hf.model.audio_tower.named_parameters():
            if p.dim() > 1 and "embed_positions" not in name:
                p.normal_(0, 0.4 if any(k in name for k in ("q_proj", "k_proj")) else 0.1)
    hf = perturbed(hf)
    hf.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp(request.param.__name__)
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch(ours):
    """ids (2, T) left-padded (row 0: text, clip 0's tokens, text; row 1: text, clip 1's, text, clip 2's, text), its
    mask, the clips' features (3, MELS, 40) and, for a masked tower, their feature_attention_mask (Qwen2-Audio's)."""
    a = ours.audio.a
    g = torch.Generator().manual_seed(1)
    counts = [a.clip_tokens(f) for f in FRAMES]
    rows = [[1, 5, 6] + [AUDIO_ID] * counts[0] + [7, 8, 9, 10],
            [1, 11] + [AUDIO_ID] * counts[1] + [12, 13] + [AUDIO_ID] * counts[2] + [14, 15, 16]]
    T = max(map(len, rows))
    ids, mask = torch.zeros(2, T, dtype=torch.long), torch.zeros(2, T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, T - len(row):], mask[b, T - len(row):] = torch.tensor(row), 1
    features = torch.randn(3, MELS, 2 * POSITIONS, generator=g)
    frames = torch.arange(2 * POSITIONS)[None] < torch.tensor(FRAMES)[:, None]
    return ids, mask, features, frames.long() if a.masked else None


def audio_args(features, frames) -> dict:
    return dict(input_features=features, **({} if frames is None else {"feature_attention_mask": frames}))


def hf_logits(hf, ids, mask, features, frames):
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                  **audio_args(features, frames)).logits


def hf_features(hf, features, frames) -> torch.Tensor:
    """transformers' projected audio features, clip after clip (Qwen2-Audio's cut to each clip's length)."""
    if frames is None:
        return hf.model.get_audio_features(features).pooler_output
    tower = hf.model.audio_tower
    lengths, out_lengths = tower._get_feat_extract_output_lengths(frames.sum(-1))
    keys = (torch.arange(POSITIONS)[None] < lengths[:, None])[:, None, None, :]
    out = hf.model.multi_modal_projector(tower(features, attention_mask=keys).last_hidden_state)
    return out[torch.arange(out.shape[1])[None] < out_lengths[:, None]]


def test_audio_features_equal_transformers(pair):
    """The projected features themselves, before the text model dilutes a wrong mask, pool or stack."""
    hf, ours = pair
    _, _, features, frames = batch(ours)
    with torch.no_grad():
        theirs, mine = hf_features(hf, features, frames), ours.audio.features(features, frames)
    expected = sum(ours.audio.a.clip_tokens(f) for f in FRAMES)
    assert mine.shape == theirs.shape == (expected, 32) and (mine - theirs).abs().max() <= 1e-4


def test_logits_with_one_and_two_clips_of_different_lengths(pair):
    hf, ours = pair
    ids, mask, features, frames = batch(ours)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, **audio_args(features, frames)).logits
    assert gap(mine, hf_logits(hf, ids, mask, features, frames), mask) <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, features, frames = batch(ours)
    theirs = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0,
                         **audio_args(features, frames))
    assert torch.equal(llmarch.generate(ours, ids, 8, attention_mask=mask, **audio_args(features, frames)), theirs)


def test_cached_decoding_after_an_audio_prefill_equals_the_whole_forward(pair):
    _, ours = pair
    ids, mask, features, frames = batch(ours)
    assert cached_gap(ours, ids, mask, audio_args(features, frames)) <= 1e-4


def cached_gap(ours, ids, mask, args: dict) -> float:
    """The largest logit gap between the whole forward of ids (B, T) with the audio `args` and every clip in a
    prefill of all but the last 3 tokens, those decoded one at a time (gemma4's test too)."""
    P = ids.shape[1] - 3
    with torch.no_grad():
        whole = ours(ids, attention_mask=mask, **args).logits
        embeds = ours.embed_inputs(ids[:, :P], **args)
    return gap(prefilled_then_stepped(ours, ids, mask, P, embeds), whole[:, P - 1:], mask[:, P - 1:])


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    hf, ours = pair
    ids, mask, features, frames = batch(ours)
    again, before = round_trip(hf, ours, tmp_path / "out", lambda m: hf_logits(m, ids, mask, features, frames))
    assert gap(again, before, mask) <= 1e-4


def round_trip(hf, ours, folder, logits_of):
    """ours written by to_hf to `folder`, which llmarch reads back to the same config: logits_of(the checkpoint
    loaded by transformers), logits_of(hf)."""
    llmarch.to_hf(ours, folder)
    assert llmarch.from_hf(folder).config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}
    return logits_of(type(hf).from_pretrained(folder).eval()), logits_of(hf)


def test_wrong_audio_inputs_are_refused(pair):
    _, ours = pair
    ids, mask, features, frames = batch(ours)
    with pytest.raises(LlmarchError, match="audio tokens"):
        ours(ids, attention_mask=mask, **audio_args(features[:2], None if frames is None else frames[:2]))
    with pytest.raises(LlmarchError, match="exactly 40 frames"):
        ours(ids, attention_mask=mask, input_features=features[..., :30])
    with pytest.raises(LlmarchError, match="feature_attention_mask"):
        ours(ids, attention_mask=mask, feature_attention_mask=torch.ones(3, 40))
    with pytest.raises(LlmarchError, match="pixel_values"):  # read by no part: refused, not dropped
        ours(ids, attention_mask=mask, pixel_values=torch.zeros(3, 3, 8, 8), **audio_args(features, frames))
