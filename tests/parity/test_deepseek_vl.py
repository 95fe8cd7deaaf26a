"""DeepSeek-VL, Janus and Aria (interop/deepseek_vl.py, janus.py, aria.py) against transformers in fp32: a left-padded
batch whose first row holds two images and whose second one (Aria's third image partly padded, its pixel mask on):
logits within 1e-4, greedy tokens equal to its generate, cached decoding after an image prefill equal to the whole
forward, the to_hf round trip loaded by transformers to the same logits. Every matrix drawn N(0, 0.1) (the aligners'
N(0, 0.3)), every 1-D parameter (norm gains, biases) moved off its init. Then refusals."""
import pytest
import torch
import transformers

import llmarch
from conftest import image_token_batch, perturbed
from llmarch.errors import LlmarchError
from test_vlm_families import assert_cached, assert_greedy, assert_logits, assert_round_trip, drawn_pair

LLAMA = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, vocab_size=100)
# the attention-pooling head on (SiglipVisionConfig's default), as published: present in the checkpoint, never run
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, image_size=8, patch_size=4, vision_use_head=True)
JANUS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=8, patch_size=4, mlp_ratio=1.5,
             projection_dim=32)
# a small VQ-VAE (not read: its weights are the generation path's)
VQ = dict(base_channels=32, channel_multiplier=[1, 1], num_res_blocks=1, latent_channels=32, num_embeddings=16,
          embed_dim=4, projection_dim=32, image_token_embed_dim=32)
ARIA_TEXT = dict(model_type="aria_text", hidden_size=32, intermediate_size=16, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=100, moe_num_experts=4, moe_topk=2,
                 moe_num_shared_experts=1)
IDEFICS3 = dict(model_type="idefics3_vision", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, image_size=16, patch_size=4)
# case -> (model class, config class, config kwargs, image side, image tokens per image)
CASES = {
    "deepseek_vl": ("DeepseekVLForConditionalGeneration", "DeepseekVLConfig", dict(
        text_config=LLAMA, vision_config=SIGLIP, image_token_id=99), 8, 4),
    "janus": ("JanusForConditionalGeneration", "JanusConfig", dict(
        text_config=LLAMA, vision_config=JANUS, vq_config=VQ, image_token_id=99), 8, 4),
    # 16 patches of a 16-pixel image: 3 queries; 4 of an 8-pixel one: 2
    "aria": ("AriaForConditionalGeneration", "AriaConfig", dict(
        text_config=ARIA_TEXT, vision_config=IDEFICS3, image_token_index=99,
        projector_patch_to_query_dict={16: 3, 4: 2}), 16, 3),
}
# the cases whose processor gives a pixel mask, under transformers' name: the third image's pixels real only above row
# 10 and left of column 13 (its last row of patches half real, which Aria counts real)
MASKED = {"aria": "pixel_mask"}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    return drawn_pair(request.param, CASES, tmp_path_factory, lambda key: 0.3 if "aligner" in key else 0.1)


def batch(name, ours):
    """ids (2, T) left-padded: row 0 text, an image, text, an image, text; row 1 shorter, one image; its mask; the
    three images' pixel_values, in the order their tokens come."""
    _, _, _, side, per = CASES[name]
    ids, mask, g = image_token_batch([2 * per + 8, per + 6], [[(2, per), (per + 4, per)], [(2, per)]],
                                     ours.vision.v.image_token_id)
    pixels = torch.randn(3, 3, side, side, generator=g)
    if name not in MASKED:
        return ids, mask, dict(pixel_values=pixels)
    real = torch.ones(3, side, side, dtype=torch.bool)
    real[2, 10:], real[2, :, 13:] = False, False
    return ids, mask, dict(pixel_values=pixels * real[:, None], pixel_attention_mask=real)


def hf_images(images: dict) -> dict:
    """Our image arguments under transformers' names (Aria's pixel mask is its pixel_mask)."""
    name = next(iter(MASKED.values()))
    return {name if k == "pixel_attention_mask" else k: x for k, x in images.items()}


def test_logits_with_one_and_two_images(pair):
    assert_logits(*pair, *batch(*pair[::2]), names=hf_images)


def test_greedy_tokens_equal_transformers_generate(pair):
    assert_greedy(*pair[1:], *batch(*pair[::2]), names=hf_images)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    assert_cached(pair[2], *batch(*pair[::2]))


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    assert_round_trip(*pair[1:], tmp_path / "out", *batch(*pair[::2]), names=hf_images)


@pytest.mark.parametrize("name,changes,match", [
    ("deepseek_vl", dict(text_config=dict(LLAMA, model_type="mistral")), "deepseek_vl with a 'mistral' text model"),
    ("deepseek_vl", dict(vision_config=dict(SIGLIP, model_type="clip_vision_model")),
     "deepseek_vl with a 'clip_vision_model' vision tower"),
    ("janus", dict(text_config=dict(LLAMA, model_type="qwen2")), "janus with a 'qwen2' text model"),
    ("janus", dict(vision_config=dict(JANUS, use_qk_norm=True)), "janus: vision use_qk_norm True"),
    ("janus", dict(vision_config=dict(JANUS, depth=3)), "depth 3"),
    ("janus", dict(vision_config=dict(JANUS, projection_dim=16)), "projection_dim 16"),
    ("aria", dict(vision_feature_layer=-2), "aria: vision_feature_layer -2 is not supported"),
    ("aria", dict(vision_config=dict(IDEFICS3, model_type="siglip_vision_model")), "'siglip_vision_model' tower"),
])
def test_unsupported_configs_are_refused(name, changes, match, tmp_path):
    _, conf, kwargs, _, _ = CASES[name]
    (tmp_path / "config.json").write_text(getattr(transformers, conf)(**{**kwargs, **changes}).to_json_string())
    with pytest.raises(LlmarchError, match=match):
        llmarch.from_hf(tmp_path)


def test_a_model_the_family_cannot_hold_is_refused_before_writing(pair, tmp_path):
    name, _, ours = pair
    act = "gelu" if ours.config.vision["projector_act"] == "gelu_tanh" else "gelu_tanh"  # another MLP activation
    other = llmarch.build(ours.config.replace(vision={**ours.config.vision, "projector_act": act}))
    with pytest.raises(LlmarchError, match=f"{name} writes .*(aligner|projector)"):
        llmarch.to_hf(other, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_janus_tower_without_qkv_biases(tmp_path):
    """attention_bias off: q, k and v without biases (the output projection keeps its own)."""
    _, _, kwargs, _, _ = CASES["janus"]
    torch.manual_seed(0)
    hf = perturbed(transformers.JanusForConditionalGeneration(transformers.JanusConfig(
        **dict(kwargs, vision_config=dict(JANUS, attention_bias=False)))))
    hf.save_pretrained(tmp_path)
    ours = llmarch.from_hf(tmp_path)
    assert ours.config.vision["qkv_bias"] is False
    ids, mask, images = batch("janus", ours)
    assert_logits("janus", hf, ours, ids, mask, images)
    llmarch.to_hf(ours, tmp_path / "out")
    assert transformers.JanusConfig.from_pretrained(tmp_path / "out").vision_config.attention_bias is False


def test_aria_images_smaller_than_the_tower_take_their_own_queries(pair):
    """Aria's 490-pixel images on its 980-pixel tower, in small: 8-pixel images of 4 patches, 2 queries each."""
    name, hf, ours = pair
    if name != "aria":
        pytest.skip("Aria's projector only")
    ids, mask, g = image_token_batch([12, 8], [[(2, 2), (6, 2)], [(2, 2)]], ours.vision.v.image_token_id)
    images = dict(pixel_values=torch.randn(3, 3, 8, 8, generator=g))
    assert ours.vision.v.image_tokens(images) == [2, 2, 2]
    assert_logits(name, hf, ours, ids, mask, images)
    with pytest.raises(LlmarchError, match="an image of 9 patches: the projector has queries for images of 4, 16"):
        ours(ids, attention_mask=mask, pixel_values=torch.randn(3, 3, 12, 12))


@pytest.mark.parametrize("changes,match", [
    (dict(projector="cross_attention"), "patch_queries goes with the cross_attention projector"),
    (dict(patch_queries=[[4, 2]]), "patch_queries goes with the cross_attention projector"),
    (dict(projector="cross_attention", patch_queries=[[4, 0]]), "must be \\[patches, queries\\] pairs"),
    (dict(projector="cross_attention", patch_queries=[[4, 2], [4, 3]]), "each patch count once"),
    (dict(projector="cross_attention", patch_queries={"4": 2}), "must be \\[patches, queries\\] pairs"),
])
def test_bad_cross_attention_fields_are_refused(changes, match):
    vision = dict(image_token_id=96, width=32, n_layers=2, n_heads=4, ffn_hidden=64, image_size=8, patch_size=4,
                  class_token=False, pre_norm=False, position_buckets=True)
    with pytest.raises(LlmarchError, match=match):
        llmarch.build("llama-tiny", n_layers=1, vision={**vision, **changes})
