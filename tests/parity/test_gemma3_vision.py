"""Gemma 3 with images (interop/gemma3_vision.py) against transformers' Gemma3ForConditionalGeneration, through files
(fp32, max |dlogit| <= 1e-4): a tiny random checkpoint (its norm gains perturbed, the tower's and projector's
matrices drawn N(0, 0.1) so that the images move the logits) saved with a Gemma3Processor; logits on a left-padded
batch holding one and two images, with transformers' token_type_ids (each image's tokens attend to each other both
ways, here past a sliding window of 3 over images of 4 tokens); greedy tokens equal to its generate; cached decoding
after the image prompt equal to the whole forward; the to_hf round trip; input_ids equal to the processor's and
`llmarch generate --image` giving transformers' greedy text."""
import json

import pytest
import torch

import llmarch
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from test_vision_images import call, tokenizer  # noqa: E402

SPECIAL = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            intermediate_size=64, sliding_window=3, query_pre_attn_scalar=8,
            layer_types=["sliding_attention", "full_attention"])
VISION = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, image_size=16, patch_size=4)  # a 4 x 4 patch grid, pooled to 2 x 2


def saved_gemma3(path, text: dict = TEXT, vision: dict = VISION):
    """A tiny random Gemma3ForConditionalGeneration (norm gains perturbed, the tower's and projector's matrices drawn
    N(0, 0.1)) saved at `path` with its Gemma3Processor: (transformers model, processor, tokenizer)."""
    tok = tokenizer(["<unk>", "<s>", "</s>", *SPECIAL.values()])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, bos_token="<s>", eos_token="</s>",
                                               unk_token="<unk>", pad_token="<unk>", extra_special_tokens=SPECIAL)
    processor = transformers.Gemma3Processor(tokenizer=tok, image_seq_length=4,
                                             image_processor=transformers.Gemma3ImageProcessorPil(
                                                 size={"height": 16, "width": 16}))
    torch.manual_seed(0)
    config = transformers.Gemma3Config(text_config=dict(text, vocab_size=len(tok)), vision_config=vision,
                                       mm_tokens_per_image=4, image_token_index=tok.image_token_id,
                                       boi_token_index=tok.boi_token_id, eoi_token_index=tok.convert_tokens_to_ids(
                                           SPECIAL["eoi_token"]))
    hf = transformers.Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            elif "vision_tower" in name or "multi_modal_projector" in name:
                p.normal_(0, 0.1)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    processor.save_pretrained(path)
    return hf, processor, tok


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    """(folder, transformers model, processor, image token id, paths of three images)."""
    path = tmp_path_factory.mktemp("gemma3")
    hf, processor, tok = saved_gemma3(path)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    images = []
    for i, size in enumerate([(23, 37), (30, 17), (16, 16)]):
        images.append(path / f"image{i}.png")
        Image.fromarray(torch.randint(0, 256, (*size, 3), dtype=torch.uint8).numpy()).save(images[-1])
    return path, hf, processor, tok.image_token_id, images


def batch(processor, images, token: str = "<start_of_image>"):
    """A left-padded batch: one image in the first row, two in the second, each at the `token` the processor
    expands (Gemma 4's test reads it too)."""
    processor.tokenizer.padding_side = "left"
    pil = [read_image(p) for p in images]
    return processor(images=[[pil[0]], [pil[1], pil[2]]], padding=True, return_tensors="pt",
                     text=[f"the cat {token} sat on the mat", f"{token} what {token} the"])


def test_logits_with_one_and_two_images(gemma3):
    path, hf, processor, image, images = gemma3
    ours = from_hf(path).eval()
    inputs = batch(processor, images)
    ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
    assert inputs["token_type_ids"].equal((ids == image).long()) and (mask == 0).any()
    real = mask.bool()
    with torch.no_grad():
        want = hf(**inputs).logits
        got = ours(ids, attention_mask=mask, pixel_values=pixels).logits
        assert (got - want)[real].abs().max() <= 1e-4
        # the parts this checks move the logits: the images' bidirectional blocks, the images themselves
        causal = llmarch.build(ours.config.replace(bidirectional_token=None)).eval()
        causal.load_state_dict(ours.state_dict())
        assert (causal(ids, attention_mask=mask, pixel_values=pixels).logits - want)[real].abs().max() > 1e-2
        other = ours(ids, attention_mask=mask, pixel_values=pixels.flip(0)).logits
        assert (other - want)[real].abs().max() > 1e-2


def test_generation_cached_decoding_and_round_trip(gemma3, tmp_path):
    path, hf, processor, _, images = gemma3
    ours = from_hf(path).eval()
    inputs = batch(processor, images)
    ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
    want = hf.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert llmarch.generate(ours, ids, 6, attention_mask=mask, pixel_values=pixels).equal(want)
    P, T = ids.shape[1], want.shape[1]
    full = torch.cat([mask, torch.ones(2, T - P, dtype=mask.dtype)], 1)
    with torch.no_grad():
        whole = ours(want, attention_mask=full, pixel_values=pixels).logits
        ours.setup_cache(2, T)
        steps = [ours(want[:, :P], attention_mask=full, input_pos=torch.arange(P), kv_len=P, pixel_values=pixels)
                 .logits]
        steps += [ours(want[:, t:t + 1], attention_mask=full, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                  for t in range(P, T)]
        ours.clear_cache()
    assert (torch.cat(steps, 1) - whole)[full.bool()].abs().max() <= 1e-4
    llmarch.to_hf(ours, tmp_path / "out")
    back = transformers.Gemma3ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (back(**inputs).logits - hf(**inputs).logits)[mask.bool()].abs().max() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_prompt_is_the_processors_and_the_cli_generates_transformers_text(gemma3, capsys):
    path, hf, processor, _, images = gemma3
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(images[0]), read_image(images[1])]
    for prompt, given in [("<start_of_image> and <start_of_image> a cat", "<start_of_image> and <start_of_image> a "
                                                                          "cat"),
                          ("describe", "<start_of_image><start_of_image>describe")]:
        ids, arguments = image_request(model, tok, prompt, pil)
        pixels = arguments["pixel_values"]
        want = processor(images=[pil], text=[given], return_tensors="pt")
        assert ids == want["input_ids"][0].tolist() and torch.equal(pixels, want["pixel_values"])
    with pytest.raises(LlmarchError, match="holds 1 <start_of_image> token"):
        image_request(model, tok, "<start_of_image> one", pil)
    assert_cli_generates(capsys, path, hf, processor, images[2], "<start_of_image> the cat")


def assert_cli_generates(capsys, path, hf, processor, image, prompt: str):
    """`llmarch generate --image` on the checkpoint at `path`: transformers' greedy text for the prompt and image."""
    inputs = processor(images=[read_image(image)], text=prompt, return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=6, do_sample=False, eos_token_id=2)[0],
                                          skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", image, "--prompt", prompt,
                          "--temperature", "0", "--max-new-tokens", "6", "--no-stream")
    assert code == 0 and out == expected + "\n", err


def test_unsupported_gemma3_configs_are_refused(gemma3):
    from llmarch.interop import FAMILIES

    cfg = from_hf(gemma3[0]).config
    with pytest.raises(LlmarchError, match="hf_model_type='gemma3_text'"):
        FAMILIES["gemma3"].from_config(cfg.replace(vision=None, bidirectional_token=None))
    with pytest.raises(LlmarchError, match="bidirectional_token needs a causal decoder"):
        cfg.replace(vision=None, causal=False)
    with pytest.raises(LlmarchError, match="pool_tokens 9 must be a square whose side divides"):
        cfg.replace(vision={**cfg.vision, "pool_tokens": 9})
    with pytest.raises(LlmarchError, match="'clip_vision_model' vision tower is not supported"):
        FAMILIES["gemma3"].to_config({"model_type": "gemma3", "vision_config": {"model_type": "clip_vision_model"}})


def test_chat_prompt_is_the_processors(gemma3):
    """`llmarch chat` and the server: a rendered conversation holds <start_of_image> (what Gemma 3's chat template
    writes per image part), expanded as the processor expands it; BOS once, whether the template wrote it or not."""
    from llmarch.vision.prompts import chat_request

    path, hf, processor, _, images = gemma3
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(images[0])]
    for text, special in (("<s>user: <start_of_image> what is it?", False), ("user: <start_of_image> what?", True)):
        ids, arguments = chat_request(model, tok, text, pil)
        want = processor(images=[pil], text=[text], add_special_tokens=special, return_tensors="pt")
        assert ids == want["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], want["pixel_values"])
    with pytest.raises(LlmarchError, match="wrote 0 <start_of_image>"):
        chat_request(model, tok, "<s>user: what?", pil)
