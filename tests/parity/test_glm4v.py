"""GLM-4.1V (glm4v), GLM-4.5V (glm4v_moe) and GLM-4.6V (glm46v, here with GLM-4.5V's MoE text model) against
transformers: tiny seeded Glm4vForConditionalGeneration, Glm4vMoeForConditionalGeneration and
Glm46VForConditionalGeneration (a 2-block tower with qkv biases, a 4 x 4 table of learned positions resampled
bicubically to each image, the downsample convolution and gated merger; the text M-RoPE over the whole head in
GLM-4.1V's adjacent pairs, over half of it in GLM-4.5V's halves), 1-D parameters perturbed and the tower's matrices
drawn N(0, 0.1), read by from_hf. On a left-padded batch of one row with one image and one with two images of other
sizes (preprocessed as transformers' Glm4vImageProcessorPil does, which glm4v_pixels.py must equal exactly), the
logits agree within 1e-4 (fp32) on real tokens; 8 greedy tokens (and GLM-4.1V's 6 of a 3-beam search) equal
transformers' generate; decoding from the cache after the image prompt (its M-RoPE delta) equals the whole forward;
a to_hf round trip loads in transformers to the same logits and in llmarch to the same config (test_qwen_vl_vision's
checks)."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.vision.glm4v_pixels import glm4v_pixels
from llmarch.vision.qwen_pixels import smart_resize

from test_qwen_vl_images import random_model
from test_qwen_vl_vision import IMAGE, assert_images_match, images, prompt_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

ROPE = dict(rope_type="default", rope_theta=10000.0)
TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_parameters=dict(ROPE, mrope_section=[2, 3, 3]))
MOE = dict(TEXT, head_dim=16, rope_parameters=dict(ROPE, mrope_section=[1, 1, 2], partial_rotary_factor=0.5),
           moe_intermediate_size=24, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
           first_k_dense_replace=1)
VISION = dict(depth=2, hidden_size=32, out_hidden_size=64, intermediate_size=40, num_heads=2, patch_size=4,
              image_size=16, spatial_merge_size=2, temporal_patch_size=2, attention_bias=True)
CASES = {"glm4v": ("Glm4v", TEXT), "glm4v_moe": ("Glm4vMoe", MOE),
         "glm46v": ("Glm46V", dict(MOE, model_type="glm4v_moe_text"))}
# Glm4vImageProcessorPil's size: the area bounds, over temporal_patch_size frames (the first image is scaled down
# to 80 x 64 by them, which counted over one frame it would not be)
PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2, size=dict(shortest_edge=2 * 16 * 16,
                                                                           longest_edge=2 * 40 * 40))


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    prefix, text = CASES[request.param]
    hf = random_model(prefix, text_config=text, vision_config=VISION, image_token_id=IMAGE)
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return request.param, hf, from_hf(folder / "hf").eval(), folder


def test_pixels_equal_transformers_image_processor():
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil
    from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize as theirs_resize

    processor = Glm4vImageProcessorPil(**PIXELS)
    theirs = processor(images=images(), return_tensors="pt")
    pixel_values, grid = glm4v_pixels(images(), processor.to_dict())
    assert torch.equal(grid, theirs["image_grid_thw"]) and grid[:, 1:].tolist() == [[10, 8], [6, 16], [8, 8]]
    assert torch.equal(pixel_values, theirs["pixel_values"])
    # scaled up (a side under one merge group first grown to it), down to max_pixels, rounded
    for h, w in ((10, 1000), (2000, 3000), (333, 517), (5, 40), (20, 3)):
        assert smart_resize(h, w, 28, 112 * 112, 28 * 28 * 15000, 2, True) == \
            theirs_resize(2, h, w, 2, 28, 112 * 112, 28 * 28 * 15000)
    with pytest.raises(LlmarchError, match="aspect ratio"):
        smart_resize(1, 300, 28, 112 * 112, 28 * 28 * 15000, 2, True)


def test_images_logits_generation_cached_decoding_and_round_trip(pair):
    case, hf, ours, folder = pair
    assert (ours.config.hf_model_type, ours.config.vision["merger"]) == (case, "gated")
    # beams against transformers for GLM-4.1V only: on GLM-4.5V's image rows transformers' beam search (fp32 and fp64)
    # ends on a sequence whose first two tokens a beam search over whole forwards (its logits or ours) never keeps,
    # where llmarch's ends on that search's; text alone, their beams agree
    assert_images_match(hf, ours, folder, *glm4v_pixels(images(), PIXELS), beams=case == "glm4v")


def test_moe_beams_are_a_beam_search_over_whole_forwards(pair):
    """GLM-4.5V's image rows, where transformers' beams are not compared: llmarch's 3-beam search ends where a beam
    search over whole forwards ends (each step every beam's 3 best tokens, the 3 best sums kept; no end token)."""
    case, _, ours, _ = pair
    if case != "glm4v_moe":
        pytest.skip("transformers' beams are compared")
    pixel_values, grid = glm4v_pixels(images(), PIXELS)
    ids, mask = prompt_batch(grid)
    images_kw = dict(pixel_values=pixel_values, image_grid_thw=grid)
    beams = [[(0.0, [])], [(0.0, [])]]  # each row's (log-probability, new tokens)
    for _ in range(6):
        grown = [[], []]
        for k in range(len(beams[0])):
            tails = torch.tensor([beams[r][k][1] for r in (0, 1)], dtype=torch.long).view(2, -1)
            with torch.no_grad():
                logp = ours(torch.cat([ids, tails], 1), attention_mask=torch.cat([mask, torch.ones_like(tails)], 1),
                            **images_kw).logits[:, -1].log_softmax(-1)
            for r in (0, 1):
                top = logp[r].topk(3)
                grown[r] += [(beams[r][k][0] + v, beams[r][k][1] + [t])
                             for v, t in zip(top.values.tolist(), top.indices.tolist())]
        beams = [sorted(g, key=lambda b: -b[0])[:3] for g in grown]
    found = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=6, num_beams=3, **images_kw)
    assert found[:, ids.shape[1]:].tolist() == [beams[0][0][1], beams[1][0][1]]


def test_text_defaults_and_refusals():
    """Glm4vTextConfig turns the whole head (no partial_rotary_factor) and Glm4vMoeTextConfig half of it; the GLM
    tower's parts are refused where a Qwen-VL wrapper is written, and a Qwen tower where a GLM one is."""
    from llmarch.interop.hf import FAMILIES, hf_model_config
    from llmarch.interop.qwen_vl_vision import vision_hf
    from llmarch.vision.qwen_config import qwen_vision_config

    dense = hf_model_config(dict(model_type="glm4v", text_config=TEXT, vision_config=VISION))
    moe = hf_model_config(dict(model_type="glm4v_moe", text_config={**MOE, "rope_parameters": dict(
        ROPE, mrope_section=[1, 1, 2])}, vision_config=VISION))
    assert (dense.rope_fraction, dense.qkv_bias, dense.norm_placement) == (1.0, True, "sandwich")
    assert (moe.rope_fraction, moe.qkv_bias, moe.n_experts) == (0.5, True, 4)
    with pytest.raises(LlmarchError, match="glm46v with a 'qwen2' text model"):
        hf_model_config(dict(model_type="glm46v", text_config=dict(TEXT, model_type="qwen2"), vision_config=VISION))
    with pytest.raises(LlmarchError, match="those are GLM-4V's"):
        vision_hf(qwen_vision_config(dense.vision), "qwen2_5_vl")
    with pytest.raises(LlmarchError, match="GLM-4V's tower has"):
        FAMILIES["glm4v"].from_config(dense.replace(vision={**dense.vision, "post_norm": False}))
    with pytest.raises(LlmarchError, match="merger 'gated' and merger_hidden"):
        dense.replace(vision={**dense.vision, "merger_hidden": None})
