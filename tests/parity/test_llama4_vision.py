"""Llama 4 with its images (interop/llama4_vision.py) against transformers' Llama4ForConditionalGeneration: a tiny
seeded random checkpoint (the Scout-shaped text model of test_llama4.py; a 2-layer tower of 56-pixel tiles in
14-pixel patches, 2-D RoPE over 2 heads of 16 dims, a pixel shuffle of ratio 0.5 so each tile is 4 image tokens),
every 1-D parameter perturbed and the router scaled up. One image of five tiles (2 x 2 and the global tile), and a
left-padded batch of two rows of five and three tiles (the tower's q and k scaled up, so that its attention is far
from uniform and a wrong rotation shows); greedy tokens, cached decoding after the image prefill, a
to_hf round trip.

transformers' temperature tuning on the NoPE layers counts the cache slot, not the row's position (test_llama4.py),
so its left-padded rows differ from the same rows alone: the padded batch is compared with transformers' rows one at
a time, unpadded, each with its own tiles."""
import pytest
import torch

import llmarch
from conftest import image_token_batch, prefilled_then_stepped
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from test_llama4 import TEXT, max_diff_on_real, perturb

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

IMAGE = 120  # image_token_index: <|patch|>, where each tile's features go
VISION = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=56,
              patch_size=14, vision_output_dim=48, projector_input_dim=48, projector_output_dim=48,
              rope_parameters={"rope_type": "default", "rope_theta": 100.0})
PER_TILE = 4  # (56 / 14)^2 patches, 4 to a feature


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    conf = transformers.Llama4Config(text_config=dict(TEXT, num_hidden_layers=4), vision_config=VISION,
                                     image_token_index=IMAGE)
    hf = perturb(transformers.Llama4ForConditionalGeneration(conf).eval())
    with torch.no_grad():  # the tower's scores far from 0 (at init its attention is near uniform, where RoPE is moot)
        for name, p in hf.vision_model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(30.0)
    path = tmp_path_factory.mktemp("llama4v")
    hf.save_pretrained(path)
    return hf, from_hf(path)


def batch(tiles=(5, 3)):
    """Left-padded ids, their mask and pixel_values: row r holds tiles[r] runs of PER_TILE image tokens among text."""
    runs = [[(2 + 6 * k, PER_TILE) for k in range(n)] for n in tiles]
    lengths = [6 * n + 5 for n in tiles]
    ids, mask, g = image_token_batch(lengths, runs, IMAGE)
    return ids, mask, torch.randn(sum(tiles), 3, 56, 56, generator=g)


def hf_rows_alone(hf, ids, mask, pixels, tiles):
    """transformers' logits of each row run alone, unpadded, with its own tiles: (B, T, V), 0 at padding."""
    out, first = torch.zeros(*ids.shape, hf.config.text_config.vocab_size), 0
    with torch.no_grad():
        for r, n in enumerate(tiles):
            real = mask[r].bool()
            out[r, real] = hf(input_ids=ids[r:r + 1, real], pixel_values=pixels[first:first + n]).logits[0]
            first += n
    return out


def test_config_reads_the_tower_and_projector(pair):
    v = pair[1].vision.v
    assert (v.class_last, v.rope_theta, v.projector, v.shuffle_factor, v.projector_hidden, v.tokens_per_image) == \
        (True, 100.0, "pixel_shuffle_mlp2", 2, 48, PER_TILE)
    assert (v.image_token_id, v.act, v.patch_bias, v.pre_norm, v.post_norm) == (IMAGE, "gelu", False, True, True)


def test_one_image_of_five_tiles(pair):
    hf, ours = pair
    ids, mask, pixels = batch((5,))
    with torch.no_grad():
        diff = (ours(ids, pixel_values=pixels).logits - hf(input_ids=ids, pixel_values=pixels).logits).abs().max()
    assert diff <= 1e-4


def test_left_padded_rows_of_different_tile_counts(pair):
    hf, ours = pair
    ids, mask, pixels = batch()
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, pixel_values=pixels).logits
    assert max_diff_on_real(mine, hf_rows_alone(hf, ids, mask, pixels, (5, 3)), mask) <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, pixels = batch()
    out = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=12, pixel_values=pixels)
    first, T = 0, ids.shape[1]
    for r, n in enumerate((5, 3)):
        prompt = ids[r:r + 1, mask[r].bool()]
        theirs = hf.generate(input_ids=prompt, pixel_values=pixels[first:first + n], max_new_tokens=12,
                             do_sample=False, pad_token_id=0)
        assert torch.equal(torch.as_tensor(out[r][T:] if isinstance(out, list) else out[r, T:]),
                           theirs[0, prompt.shape[1]:])
        first += n


def test_cached_decoding_after_the_image_prefill_equals_the_whole_forward(pair):
    ours = pair[1]
    ids, mask, pixels = batch()
    P = ids.shape[1] - 4
    with torch.no_grad():
        whole = ours(ids, attention_mask=mask, pixel_values=pixels).logits
        embeds = ours.embed_inputs(ids[:, :P], pixels)
    stepped = prefilled_then_stepped(ours, ids, mask, P, embeds)
    assert max_diff_on_real(stepped, whole[:, P - 1:], mask[:, P - 1:]) <= 1e-4


def test_round_trip_loads_in_transformers(pair, tmp_path):
    hf, ours = pair
    to_hf(ours, tmp_path / "out")
    again = transformers.Llama4ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    ids, mask, pixels = batch((5,))
    with torch.no_grad():
        diff = (again(input_ids=ids, pixel_values=pixels).logits - hf(input_ids=ids, pixel_values=pixels).logits)
    assert diff.abs().max() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == ours.config.to_dict()


def test_a_text_model_or_another_tower_is_not_written_as_llama4(pair, tmp_path):
    cfg = pair[1].config
    with pytest.raises(LlmarchError, match="llama4_text"):
        to_hf(llmarch.build(cfg.replace(vision=None)), tmp_path / "out")
    with pytest.raises(LlmarchError, match="projector_bias"):
        to_hf(llmarch.build(cfg.replace(vision=dict(cfg.vision, projector_bias=True))), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_configs_the_tower_cannot_run_are_refused(tmp_path):
    from llmarch.interop.llama4_vision import to_config
    from llmarch.vision.config import vision_config

    with pytest.raises(LlmarchError, match="intermediate_size"):
        to_config(dict(text_config=TEXT, vision_config=dict(VISION, intermediate_size=64)))
    with pytest.raises(LlmarchError, match="one width"):
        to_config(dict(text_config=TEXT, vision_config=dict(VISION, vision_output_dim=40)))
    with pytest.raises(LlmarchError, match="pixel_shuffle_ratio"):
        to_config(dict(text_config=TEXT, vision_config=dict(VISION, pixel_shuffle_ratio=0.4)))
    good = to_config(dict(text_config=TEXT, vision_config=VISION)).vision
    with pytest.raises(LlmarchError, match="class_last"):
        vision_config(dict(good, class_token=False))
    with pytest.raises(LlmarchError, match="multiple of 4"):
        vision_config(dict(good, n_heads=4, width=24, ffn_hidden=96))
    with pytest.raises(LlmarchError, match="class_last"):
        vision_config(dict(good, class_last=False))
    with pytest.raises(LlmarchError, match="rope_theta"):
        vision_config(dict(good, rope_theta=True))


def test_scouts_published_vision_config():
    """Llama-4-Scout-17B-16E's vision_config as published (rope_theta at its top level): 336-pixel tiles of 144
    tokens at <|patch|> (200092), a 4096-wide projector."""
    from llmarch.interop.llama4_vision import to_config
    from llmarch.vision.config import vision_config

    scout = dict(hidden_act="gelu", hidden_size=1408, image_size=336, intermediate_size=5632,
                 model_type="llama4_vision_model", multi_modal_projector_bias=False, norm_eps=1e-05,
                 num_attention_heads=16, num_channels=3, num_hidden_layers=34, patch_size=14, pixel_shuffle_ratio=0.5,
                 projector_input_dim=4096, projector_output_dim=4096, rope_theta=10000, vision_feature_layer=-1,
                 vision_feature_select_strategy="default", vision_output_dim=4096)
    v = vision_config(to_config(dict(text_config=TEXT, vision_config=scout, image_token_index=200092)).vision)
    assert (v.tokens_per_image, v.rope_theta, v.image_token_id, v.projector_hidden, v.n_layers, v.feature_width) == \
        (144, 10000.0, 200092, 4096, 34, 5632)
