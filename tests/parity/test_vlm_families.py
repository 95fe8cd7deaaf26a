"""VipLLaVA, Aya Vision, Cohere2 Vision, Idefics2 and LFM2-VL with their images against transformers in fp32
through files: logits on a left-padded batch whose first row holds two images and whose second holds one, greedy
tokens equal to its generate, cached decoding after an image prefill equal to the whole forward, and the to_hf round
trip loaded by transformers. Every tower and connector matrix drawn N(0, 0.1) and every 1-D parameter moved off its
init. Then refusals, and VipLLaVA's prompt from image files as LlavaProcessor builds it."""
import json

import numpy as np
import pytest
import torch
import transformers

import llmarch
from conftest import perturbed, prefilled_then_stepped
from llmarch.errors import LlmarchError

LLAMA = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, vocab_size=100)
CLIP = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=3,
            num_attention_heads=4, image_size=8, patch_size=4)
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, image_size=16, patch_size=4, vision_use_head=False)
COHERE2 = dict(model_type="cohere2", hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, vocab_size=100, sliding_window=6, logit_scale=0.5)
MISTRAL = dict(LLAMA, model_type="mistral", sliding_window=8)
LFM2 = dict(model_type="lfm2", hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=100, full_attn_idxs=[1], block_multiple_of=16)
SIGLIP2 = dict(SIGLIP, model_type="siglip2_vision_model")
del SIGLIP2["image_size"]
# case -> (model class, config class, config kwargs, image side (NaFlex: patch side), image tokens per image (or
# each image's))
CASES = {
    "vipllava": ("VipLlavaForConditionalGeneration", "VipLlavaConfig", dict(
        text_config=LLAMA, vision_config=CLIP, image_token_index=99, vision_feature_layer=[-2, 0, 1],
        projector_layernorm_eps=1e-4), 8, 4),
    "aya_vision": ("AyaVisionForConditionalGeneration", "AyaVisionConfig", dict(
        text_config=COHERE2, vision_config=SIGLIP, image_token_index=99, adapter_layer_norm_eps=1e-4,
        alignment_intermediate_size=48), 16, 4),
    "cohere2_vision": ("Cohere2VisionForConditionalGeneration", "Cohere2VisionConfig", dict(
        text_config=COHERE2, vision_config=dict(SIGLIP, image_size=24), image_token_id=99, downsample_factor=3,
        alignment_intermediate_size=48), 24, 4),
    "idefics2": ("Idefics2ForConditionalGeneration", "Idefics2Config", dict(
        text_config=MISTRAL, vision_config={k: x for k, x in SIGLIP.items() if k not in ("model_type",
                                                                                         "vision_use_head")},
        perceiver_config=dict(hidden_size=32, resampler_n_latents=3, resampler_depth=2, resampler_n_heads=4,
                              resampler_head_dim=6, num_key_value_heads=2, rms_norm_eps=1e-4), image_token_id=99),
        16, 3),
    "lfm2_vl": ("Lfm2VlForConditionalGeneration", "Lfm2VlConfig", dict(
        text_config=LFM2, vision_config=dict(SIGLIP2, num_patches=16), image_token_id=99, projector_hidden_size=40,
        projector_hidden_act="gelu"), 4, (4, 3, 6)),
}
# NaFlex cases: each image's (rows, columns) of 4 x 4 patches, padded to the most patches (transformers' inputs)
GRIDS = {"lfm2_vl": [(4, 4), (2, 6), (4, 6)]}
# the cases whose processor pads images (pixel_attention_mask) and whose model takes them batched, (rows, images,
# ...), all-zero images padding a row's; the third image is padded to PADDED of its pixels, its third row of
# patches half real
PADDED = {"idefics2": (10, 14)}
T = 22


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    return drawn_pair(request.param, CASES, tmp_path_factory,
                      lambda key: 0.1 if "vision" in key or "connector" in key else None)


def drawn_pair(name: str, cases: dict, tmp_path_factory, std):
    """(name, transformers' model, llmarch's reading of its checkpoint): cases[name]'s model (class, config class,
    config kwargs, ...), each matrix whose name std gives a number drawn N(0, std), every 1-D parameter perturbed,
    saved (test_deepseek_vl.py's pairs too)."""
    cls, conf, kwargs = cases[name][:3]
    torch.manual_seed(0)
    hf = getattr(transformers, cls)(getattr(transformers, conf)(**kwargs))
    with torch.no_grad():
        for key, p in hf.named_parameters():
            if std(key) is not None and p.dim() > 1:
                p.normal_(0, std(key))
    hf = perturbed(hf)
    hf.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp(name)
    hf.save_pretrained(path)
    return name, hf, llmarch.from_hf(path)


def batch(name, ours):
    """ids (2, T) left-padded: row 0 text, an image, text, an image, text; row 1 shorter, one image; its mask; the
    three images' arguments (pixel_values (3, 3, side, side) or NaFlex patches), in the order their tokens come."""
    _, _, _, side, per = CASES[name]
    per = per if isinstance(per, tuple) else (per,) * 3
    token = ours.vision.v.image_token_id
    g = torch.Generator().manual_seed(1)
    ids, mask = torch.randint(1, 90, (2, T), generator=g), torch.ones(2, T, dtype=torch.long)
    ids[0, 2:2 + per[0]] = ids[0, 4 + per[0]:4 + per[0] + per[1]] = token
    start = T - (per[2] + 6)
    mask[1, :start] = 0
    ids[1, start + 2:start + 2 + per[2]] = token
    if name in GRIDS:
        shapes = torch.tensor(GRIDS[name])
        most = int(shapes.prod(-1).max())
        real = (torch.arange(most)[None] < shapes.prod(-1)[:, None]).long()
        patches = torch.randn(3, most, 3 * side * side, generator=g) * real[..., None]
        return ids, mask, dict(pixel_values=patches, image_sizes=shapes * side, pixel_attention_mask=real)
    pixels = torch.randn(3, 3, side, side, generator=g)
    if name not in PADDED:
        return ids, mask, dict(pixel_values=pixels)
    pixel_mask = torch.ones(3, side, side, dtype=torch.long)
    pixel_mask[2, PADDED[name][0]:], pixel_mask[2, :, PADDED[name][1]:] = 0, 0
    return ids, mask, dict(pixel_values=pixels * pixel_mask[:, None], pixel_attention_mask=pixel_mask)


def hf_images(images: dict) -> dict:
    """Our image arguments as transformers takes them: batched (rows, images, ...) where they are padded."""
    if "image_sizes" in images:  # NaFlex: the grids in patches (spatial_shapes)
        patch = round((images["pixel_values"].shape[-1] // 3) ** 0.5)
        return dict({k: x for k, x in images.items() if k != "image_sizes"},
                    spatial_shapes=images["image_sizes"] // patch)
    if "pixel_attention_mask" not in images:
        return images
    return {k: torch.stack([x[:2], torch.cat([x[2:], torch.zeros_like(x[2:])])]) for k, x in images.items()}


def hf_logits(hf, ids, mask, images, names=hf_images):
    """transformers' logits on our image arguments, `names` putting them as it takes them."""
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                  **names(images)).logits


def ours_logits(ours, ids, mask, images):
    with torch.no_grad():
        return ours(ids, attention_mask=mask, **images).logits


def gap(a, b, mask) -> float:
    return (a - b)[mask.bool()].abs().max().item()


def test_logits_with_one_and_two_images(pair):
    assert_logits(*pair, *batch(*pair[::2]))


def assert_logits(name, hf, ours, ids, mask, images, names=hf_images):
    """Our logits on a batch of images within 1e-4 of transformers' (test_deepseek_vl.py's families too)."""
    diff = gap(ours_logits(ours, ids, mask, images), hf_logits(hf, ids, mask, images, names), mask)
    print(f"{name}: max abs logit difference {diff:.1e}")
    assert diff <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    assert_greedy(*pair[1:], *batch(*pair[::2]))


def assert_greedy(hf, ours, ids, mask, images, names=hf_images):
    """Our greedy tokens, 8 of them, equal to transformers' generate on the same batch."""
    theirs = hf.generate(input_ids=ids, attention_mask=mask, **names(images), max_new_tokens=8, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, 8, attention_mask=mask, **images), theirs)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    assert_cached(pair[2], *batch(*pair[::2]))


def assert_cached(ours, ids, mask, images):
    """Every image in the prompt prefilled, its last 3 tokens decoded one at a time from the cache: the whole
    forward's logits."""
    P = ids.shape[1] - 3
    with torch.no_grad():
        whole = ours_logits(ours, ids, mask, images)
        embeds = ours.embed_inputs(ids[:, :P], images["pixel_values"], images.get("pixel_attention_mask"),
                                   images.get("image_sizes"))
    assert gap(prefilled_then_stepped(ours, ids, mask, P, embeds), whole[:, P - 1:], mask[:, P - 1:]) <= 1e-4


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    assert_round_trip(*pair[1:], tmp_path / "out", *batch(*pair[::2]))


def assert_round_trip(hf, ours, out, ids, mask, images, names=hf_images):
    """to_hf's checkpoint loads in transformers to the same logits, and back into llmarch to the same config."""
    llmarch.to_hf(ours, out)
    again = type(hf).from_pretrained(out).eval()
    assert gap(hf_logits(again, ids, mask, images, names), hf_logits(hf, ids, mask, images, names), mask) <= 1e-4
    assert llmarch.from_hf(out).config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


@pytest.mark.parametrize("name,changes,match", [
    ("vipllava", dict(text_config=dict(LLAMA, model_type="mistral")), "vipllava with a 'mistral' text model"),
    ("aya_vision", dict(text_config=LLAMA), "aya_vision with a 'llama' text model"),
    ("aya_vision", dict(vision_feature_layer=[-1, -2]), "vision_feature_layer .* one layer"),
    ("idefics2", dict(text_config=LLAMA), "idefics2 with a 'llama' text model"),
    ("lfm2_vl", dict(vision_config=dict(SIGLIP2, vision_use_head=True)), "vision_use_head"),
])
def test_unsupported_configs_are_refused(name, changes, match, tmp_path):
    _, conf, kwargs, _, _ = CASES[name]
    (tmp_path / "config.json").write_text(getattr(transformers, conf)(**{**kwargs, **changes}).to_json_string())
    with pytest.raises(LlmarchError, match=match):
        llmarch.from_hf(tmp_path)


@pytest.mark.parametrize("changes,match", [
    (dict(projector_eps=0), "projector_eps must be a positive number"),
    (dict(projector_hidden=7, projector="pixel_shuffle_swiglu", shuffle_factor=2), "projector_hidden 7"),
    (dict(projector="perceiver"), "resampler goes with the perceiver"),
    (dict(resampler=dict(latents=2, depth=1, n_heads=3, head_dim=4, kv_heads=2, proj_hidden=8), projector="perceiver"),
     "n_heads 3 must divide by kv_heads 2"),
    (dict(whole_patches=True), "whole_patches .* needs position_buckets"),
    (dict(naflex=True), "naflex .* no class token"),
])
def test_bad_vision_fields_are_refused(changes, match):
    vision = dict(image_token_id=96, width=32, n_layers=2, n_heads=4, ffn_hidden=64, image_size=8, patch_size=4,
                  feature_layers=[-2], drop_first=True)
    with pytest.raises(LlmarchError, match=match):
        llmarch.build("llama-tiny", n_layers=1, vision={**vision, **changes})


def test_bad_image_arguments_are_refused(pair):
    name, _, ours = pair
    ids, mask, images = batch(name, ours)
    with pytest.raises(LlmarchError, match="image tokens|image_sizes"):
        ours(ids, attention_mask=mask, **{k: x[:1] for k, x in images.items()})
    if name in GRIDS:
        with pytest.raises(LlmarchError, match="without image_sizes"):
            ours(ids, attention_mask=mask, pixel_values=images["pixel_values"])
        with pytest.raises(LlmarchError, match="multiples of patch_size x shuffle_factor"):
            ours(ids, attention_mask=mask, **dict(images, image_sizes=images["image_sizes"] + 4))
        with pytest.raises(LlmarchError, match="pixel_attention_mask must be"):
            ours(ids, attention_mask=mask, **dict(images, pixel_attention_mask=images["pixel_attention_mask"] * 0))
        from llmarch.interop.vision_towers import tower_hf

        with pytest.raises(LlmarchError, match="write it as lfm2_vl"):  # as a CLIP or SigLIP tower (llava ...)
            tower_hf(ours.vision.v)


def test_vipllava_image_prompt_is_llava_processors(tmp_path):
    """VipLLaVA's checkpoints name LlavaProcessor and CLIPImageProcessor: image_request gives its input_ids and
    pixel_values, and generate the greedy tokens of transformers' on them."""
    from PIL import Image
    from test_vision_images import CLIP, TEXT, TOWER, tokenizer

    from llmarch.data.tokenizer import load_tokenizer
    from llmarch.vision.prompts import image_request

    tok = tokenizer(["<unk>", "<s>", "</s>", "<image>"])
    processor = transformers.LlavaProcessor(image_processor=transformers.CLIPImageProcessorPil(**CLIP), tokenizer=tok,
                                            patch_size=4, vision_feature_select_strategy="default",
                                            num_additional_image_tokens=1)
    torch.manual_seed(0)
    hf = perturbed(transformers.VipLlavaForConditionalGeneration(transformers.VipLlavaConfig(
        text_config=dict(model_type="llama", vocab_size=len(tok), **TEXT), vision_config=dict(
            model_type="clip_vision_model", **TOWER), image_token_index=3, vision_feature_layer=[-2, 1])))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.eos_token_id}))
    pil = [Image.fromarray(np.random.default_rng(0).integers(0, 256, (23, 37, 3), dtype=np.uint8))] * 2
    prompt = "USER: <image>\nwhat is in the picture? <image> ASSISTANT:"
    ids, arguments = image_request(llmarch.load(tmp_path), load_tokenizer(tmp_path), prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert ids == want["input_ids"][0].tolist() and ids.count(3) == 8
    assert torch.equal(arguments["pixel_values"], want["pixel_values"])
    expected = hf.generate(**want, max_new_tokens=6, do_sample=False)[0].tolist()
    assert llmarch.generate(llmarch.load(tmp_path), [ids], 6, **arguments)[0] == expected


@pytest.mark.parametrize("split", [False, True])
def test_idefics2_images_and_prompt_are_its_processors(split, tmp_path):
    """Idefics2ImageProcessorPil's pixel_values and pixel_attention_mask (two images of other sizes, resized within
    8..20 pixels, sizes not multiples of the patch, padded to the larger; split into quarters and the whole) and
    Idefics2Processor's input_ids from image_request; generate gives transformers' greedy tokens on them."""
    from PIL import Image
    from test_vision_images import tokenizer

    from llmarch.data.tokenizer import load_tokenizer
    from llmarch.vision.prompts import image_request

    tok = tokenizer(["<unk>", "<s>", "</s>", "<image>", "<fake_token_around_image>", "<end_of_utterance>"])
    processor = transformers.Idefics2Processor(image_processor=transformers.Idefics2ImageProcessorPil(
        size={"shortest_edge": 8, "longest_edge": 22}, do_image_splitting=split), tokenizer=tok, image_seq_len=3)
    _, _, kwargs, _, _ = CASES["idefics2"]
    torch.manual_seed(0)
    hf = perturbed(transformers.Idefics2ForConditionalGeneration(transformers.Idefics2Config(**dict(
        kwargs, text_config=dict(MISTRAL, vocab_size=len(tok)), image_token_id=3))))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.eos_token_id}))
    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)),
           Image.fromarray(rng.integers(0, 256, (41, 19, 4), dtype=np.uint8), "RGBA")]
    prompt = "User:<image>what is in the picture?<image>the cat"
    model = llmarch.load(tmp_path)
    ids, arguments = image_request(model, load_tokenizer(tmp_path), prompt, pil)
    want = processor(images=[pil], text=[prompt], return_tensors="pt")
    assert ids == want["input_ids"][0].tolist()
    assert torch.equal(arguments["pixel_values"], want["pixel_values"][0])
    assert torch.equal(arguments["pixel_attention_mask"], want["pixel_attention_mask"][0])
    assert not arguments["pixel_attention_mask"].all()  # the images were padded
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
