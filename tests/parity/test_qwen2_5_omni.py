"""Qwen2.5-Omni's thinker (interop/qwen2_5_omni.py, audio/chunked_tower.py) against transformers'
Qwen2_5OmniThinkerForConditionalGeneration: a tiny seeded thinker (a 2-layer Qwen2 text model with M-RoPE in runs; a
2-block windowed Qwen2.5-VL tower with q, k, v apart; a 2-layer Whisper encoder reading chunks of 8 frames), its
towers' matrices drawn N(0, 0.1) and every 1-D parameter perturbed, saved by transformers and read by from_hf. On a
left-padded batch (row 0: text, an image, text, a 30-frame clip, text; row 1: text, a 19-frame clip, text) the fp32
logits agree within 1e-4 on real tokens; 6 greedy tokens equal transformers' generate; decoding from the cache after
the prompt equals the whole forward; the to_hf round trip loads in transformers to the same logits and in llmarch to
the same config. Audio without images, the whole Qwen2_5OmniForConditionalGeneration layout (thinker.*, talker.*
not read), and what is refused in one line (videos, a clip without its tokens, writing speech)."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import llmarch
from conftest import perturbed
from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES, from_hf, to_hf
from llmarch.vision.qwen_pixels import qwen_vl_pixels

from test_qwen_vl_vision import PIXELS, assert_cached_after_images_equals_whole, images

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# the thinker config's token ids (transformers' get_rope_index counts images and clips by their start tokens)
IMAGE, AUDIO, VISION_START, VISION_END, AUDIO_START, AUDIO_END = 151655, 151646, 151652, 151653, 151647, 151648
TEXT = dict(vocab_size=151700, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_parameters=dict(rope_type="default", rope_theta=1e4, mrope_section=[2, 3, 3]))
VISION = dict(depth=2, hidden_size=32, out_hidden_size=64, intermediate_size=40, num_heads=2, patch_size=4,
              window_size=16, fullatt_block_indexes=[1])
AUDIO_TOWER = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=48, num_mel_bins=16,
                   n_window=4, output_dim=64, max_source_positions=100)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.Qwen2_5OmniThinkerForConditionalGeneration(transformers.Qwen2_5OmniThinkerConfig(
        text_config=TEXT, vision_config=VISION, audio_config=AUDIO_TOWER, vision_start_token_id=VISION_START))
    with torch.no_grad():
        for p in [*hf.model.visual.parameters(), *hf.model.audio_tower.parameters()]:
            if p.dim() > 1:
                p.normal_(0, 0.1)
    folder = tmp_path_factory.mktemp("omni")
    perturbed(hf).save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return hf, from_hf(folder / "hf").eval(), folder


def batch(clips=(30, 19), image: bool = True):
    """Row 0: text, the image (if any), text, clip 0, text; row 1: text, clip 1, text; left-padded -> ids, mask,
    the model's arguments. A clip of L frames fills ((L - 1) // 2 + 1 - 2) // 2 + 1 audio tokens."""
    pixel_values, grid = qwen_vl_pixels(images()[:1], PIXELS)
    tokens = [((n - 1) // 2 + 1 - 2) // 2 + 1 for n in clips]
    picture = [VISION_START] + [IMAGE] * (int(grid.prod()) // 4) + [VISION_END] if image else []
    rows = [[5, 6] + picture + [7, AUDIO_START] + [AUDIO] * tokens[0] + [AUDIO_END, 8, 9],
            [10, AUDIO_START] + [AUDIO] * tokens[1] + [AUDIO_END, 11, 12]]
    T = max(map(len, rows))
    ids, mask = torch.zeros(2, T, dtype=torch.long), torch.zeros(2, T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, T - len(row):], mask[b, T - len(row):] = torch.tensor(row), 1
    features = torch.randn(2, 16, max(clips), generator=torch.Generator().manual_seed(2))
    frames = (torch.arange(max(clips))[None] < torch.tensor(clips)[:, None]).long()
    kw = dict(input_features=features, feature_attention_mask=frames)
    return ids, mask, dict(kw, pixel_values=pixel_values, image_grid_thw=grid) if image else kw


def test_text_image_audio_logits_generation_cached_decoding_and_round_trip(pair):
    hf, ours, folder = pair
    assert ours.config.hf_model_type == "qwen2_5_omni_thinker" and ours.config.audio["window"] == 4
    ids, mask, kw = batch()
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, **kw).logits
        mine = ours(ids, attention_mask=mask, **kw).logits
    assert (mine - theirs)[real].abs().max() <= 1e-4
    expected = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0,
                           **kw)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=6, **kw), expected)
    assert_cached_after_images_equals_whole(ours, ids, mask, kw)
    to_hf(ours, folder / "out")
    again = type(hf).from_pretrained(folder / "out").eval()
    with torch.no_grad():
        assert (again(input_ids=ids, attention_mask=mask, **kw).logits - mine)[real].abs().max() <= 1e-4
    assert from_hf(folder / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_audio_without_images(pair):
    """Clips of 23 and 8 frames (the last chunk of each shorter than the rest), no image: positions as text's."""
    hf, ours, _ = pair
    ids, mask, kw = batch((23, 8), image=False)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, **kw).logits
        mine = ours(ids, attention_mask=mask, **kw).logits
    assert (mine - theirs)[mask.bool()].abs().max() <= 1e-4
    expected = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0,
                           **kw)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=4, **kw), expected)


def test_whole_checkpoint_reads_the_thinker(pair, tmp_path):
    """Qwen2_5OmniForConditionalGeneration's layout: the thinker's tensors under thinker., the talker's and
    token2wav's beside them (not read); its config's thinker_config; read as the thinker, and written back as one:
    a qwen2_5_omni (its speech) is refused."""
    hf, ours, folder = pair
    state = {"thinker." + k: v for k, v in load_file(str(folder / "hf" / "model.safetensors")).items()}
    save_file({**state, "talker.model.norm.weight": torch.ones(4), "token2wav.code_embed.weight": torch.ones(2, 4)},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    thinker = json.loads((folder / "hf" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(model_type="qwen2_5_omni", thinker_config=thinker,
                                                          enable_audio_output=True)))
    whole = from_hf(tmp_path).eval()
    ids, mask, kw = batch()
    with torch.no_grad():
        assert torch.equal(whole(ids, attention_mask=mask, **kw).logits, ours(ids, attention_mask=mask, **kw).logits)
    assert whole.config.hf_model_type == "qwen2_5_omni_thinker"  # written back as the thinker it is
    speaking = llmarch.build(whole.config.replace(hf_model_type="qwen2_5_omni"))
    with pytest.raises(LlmarchError, match="thinker only .* write it with hf_model_type='qwen2_5_omni_thinker'"):
        to_hf(speaking, tmp_path / "out")


def test_what_is_refused(pair):
    _, ours, _ = pair
    ids, mask, kw = batch()
    short = ids.masked_fill((ids == AUDIO).cumsum(1) == 1, 5)  # each row's first audio token made text
    with pytest.raises(LlmarchError, match="make 12 audio features, which need as many audio tokens .* hold 10"):
        ours(short, attention_mask=mask, **kw)
    with pytest.raises(LlmarchError, match="no video_token_id"):
        ours(ids, pixel_values_videos=torch.zeros(16, 96), video_grid_thw=torch.tensor([[2, 4, 2]]))
    with pytest.raises(LlmarchError, match="chunks .* videos are not run"):
        FAMILIES["qwen2_5_omni_thinker"].from_config(ours.config.replace(audio={**ours.config.audio, "window": 0}))


def test_info_describes_both_towers(pair, capsys):
    from llmarch.cli import main

    _, _, folder = pair
    assert main(["info", str(folder / "hf")]) in (0, None)
    out = capsys.readouterr().out
    assert "vision: 2-layer ViT, width 32" in out and "clips of any length read in chunks of 8 frames" in out
