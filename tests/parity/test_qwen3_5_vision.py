"""Qwen3.5's and Qwen3.5-MoE's images and videos (interop/qwen3_5.py's wrappers: Qwen3-VL's tower without DeepStack,
vision/qwen_*.py) against transformers' Qwen3_5ForConditionalGeneration and Qwen3_5MoeForConditionalGeneration: tiny
seeded checkpoints (a Gated DeltaNet layer then gated full attention, M-RoPE interleaved over the rotated half of each
head; a 2-block tower with a 4 x 4 table of learned positions), 1-D parameters perturbed and the tower's matrices drawn
N(0, 0.1), read by from_hf. test_qwen_vl_vision.py's checks on images (a left-padded batch of one image and of two,
fp32 logits within 1e-4, greedy and beam tokens equal to transformers' generate, cached decoding equal to the whole
forward, the to_hf round trip loaded by transformers) and test_qwen_vl_video.py's on a video beside an image (each
video frame after its timestamp, as Qwen3VLProcessor writes it; logits, greedy tokens and each cached step against
transformers' generate)."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config
from llmarch.vision.qwen_pixels import qwen_vl_pixels

from test_qwen_vl_images import random_model
from test_qwen_vl_video import VIDEO, assert_cached_equals_transformers, inputs, types, video_alone
from test_qwen_vl_vision import IMAGE, PIXELS, START, assert_cached_after_images_equals_whole, assert_images_match, \
    images

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TEXT = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            num_key_value_heads=2, head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4,
            linear_key_head_dim=16, linear_value_head_dim=8, layer_types=["linear_attention", "full_attention"],
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5,
                                 mrope_section=[3, 3, 2]))
MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48)
VISION = dict(patch_size=4, temporal_patch_size=2, spatial_merge_size=2, num_heads=2, depth=2, hidden_size=32,
              out_hidden_size=64, intermediate_size=40, num_position_embeddings=16)
CASES = {"qwen3_5": ("Qwen3_5", TEXT), "qwen3_5_moe": ("Qwen3_5Moe", dict(TEXT, **MOE))}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    prefix, text = CASES[request.param]
    hf = random_model(prefix, text_config=text, vision_config=VISION, image_token_id=IMAGE, video_token_id=VIDEO,
                      vision_start_token_id=START)
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return request.param, hf, from_hf(folder / "hf").eval(), folder


def test_images_logits_generation_cached_decoding_and_round_trip(pair):
    case, hf, ours, folder = pair
    cfg = ours.config
    assert (cfg.hf_model_type, cfg.mrope_section, cfg.mrope_interleaved) == (case, [3, 3, 2], True)
    assert cfg.vision["frames_apart"] and "deepstack_layers" not in cfg.vision and cfg.vision["grid_positions"] == 16
    assert_images_match(hf, ours, folder, *qwen_vl_pixels(images(), PIXELS), beams=case == "qwen3_5")


@pytest.mark.parametrize("pair", ["qwen3_5"], indirect=True)  # the MoE one's tower and positions are the same
def test_video_beside_an_image(pair):
    """A video alone, and a left-padded batch (a video in one row; an image, then a video in the other)."""
    case, hf, ours, _ = pair
    ids, mask, kw = inputs(case)
    one, alone = video_alone(ids, mask, kw)
    with torch.no_grad():
        assert (ours(one, **alone).logits - hf(input_ids=one, mm_token_type_ids=types(one), **alone).logits
                ).abs().max() <= 1e-4
        theirs = hf(input_ids=ids, attention_mask=mask, mm_token_type_ids=types(ids), **kw).logits
        mine = ours(ids, attention_mask=mask, **kw).logits
    assert (mine - theirs)[mask.bool()].abs().max() <= 1e-4
    out = hf.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=types(ids), max_new_tokens=4,
                      do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True, **kw)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=4, **kw), out.sequences)
    assert_cached_equals_transformers(ours, ids, mask, kw, out)
    assert_cached_after_images_equals_whole(ours, ids, mask, kw, new=3)


def test_text_export_and_sections(pair, tmp_path):
    """The model written as its text type (no tower) loads in Qwen3_5ForCausalLM with the same text logits; a config
    without mrope_section takes transformers' [11, 11, 10], which must fit the rotated pairs."""
    case, _, ours, _ = pair
    text = llmarch.build(ours.config.replace(vision=None, hf_model_type=case + "_text")).eval()
    text.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("vision.")})
    to_hf(text, tmp_path)
    back = getattr(transformers, CASES[case][0] + "ForCausalLM").from_pretrained(tmp_path).eval()
    ids = torch.randint(0, IMAGE, (2, 9))
    with torch.no_grad():
        assert (back(input_ids=ids).logits - ours(ids).logits).abs().max() <= 1e-4
    assert from_hf(tmp_path).config.mrope_section == [3, 3, 2]
    wrapper = dict(model_type=case, text_config=dict(CASES[case][1], rope_parameters=dict(
        rope_type="default", rope_theta=1e4)), vision_config=VISION)
    with pytest.raises(LlmarchError, match="mrope_section must be three counts .* summing to the 4 rotated pairs"):
        hf_model_config(wrapper)
    wide = dict(CASES[case][1], head_dim=256, rope_parameters=dict(rope_type="default", rope_theta=1e4))
    cfg = hf_model_config(dict(wrapper, text_config=wide))
    assert (cfg.mrope_section, cfg.vision["image_token_id"], cfg.vision["video_token_id"]) == (
        [11, 11, 10], 248056, 248057)
