"""SmolVLM and Idefics3 with images (interop/smolvlm.py, vision/buckets.py, the pixel_shuffle projector) against
transformers in fp32 through files: logits on a left-padded batch whose second image is padded (pixel_attention_mask
with padded patches, so bucketed positions and masked keys are both at work), greedy tokens equal to its generate,
cached decoding after an image prefill equal to the whole forward, and the to_hf round trip. The tower's matrices
drawn N(0, 0.1) and every norm gain and bias moved off its init."""

import numpy as np
import pytest
import torch
import transformers

import llmarch
from conftest import image_token_batch, perturbed, prefilled_then_stepped, saved_with_processor, trained_bpe
from llmarch.errors import LlmarchError
from llmarch.vision.preprocess import processor_for
from llmarch.vision.prompts import image_request

TEXT = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, vocab_size=100)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=16,
             patch_size=4)
KINDS = {"smolvlm": "SmolVLM", "idefics3": "Idefics3"}
LENGTHS = (14, 9)  # real tokens per row, left-padded to 14; each row one image of 4 tokens (16 patches / 2^2)
PER = 4


@pytest.fixture(scope="module", params=sorted(KINDS))
def pair(request, tmp_path_factory):
    name = KINDS[request.param]
    torch.manual_seed(0)
    conf = getattr(transformers, name + "Config")(text_config=TEXT, vision_config=TOWER, image_token_id=99,
                                                  scale_factor=2)
    hf = perturbed(getattr(transformers, name + "ForConditionalGeneration")(conf))
    with torch.no_grad():
        for key, p in hf.named_parameters():
            if key.startswith("model.vision_model.") and p.dim() > 1:
                p.normal_(0, 0.1)
    hf.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch():
    """ids (2, 14) left-padded, each row text, one image's 4 tokens, text; its mask; two images (2, 3, 16, 16), the
    second real on its top-left 12 x 8 pixels only (3 x 2 of its 4 x 4 patches), zero elsewhere as the processor pads;
    the pixel mask (2, 16, 16)."""
    ids, mask, g = image_token_batch(LENGTHS, [[(2, PER)]] * 2, 99)
    pixels, pixel_mask = torch.randn(2, 3, 16, 16, generator=g), torch.ones(2, 16, 16, dtype=torch.long)
    pixel_mask[1, 12:], pixel_mask[1, :, 8:] = 0, 0
    return ids, mask, pixels * pixel_mask[:, None], pixel_mask


def hf_logits(hf, ids, mask, pixels, pixel_mask):
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, position_ids=pos, pixel_values=pixels[:, None],
                  pixel_attention_mask=pixel_mask[:, None]).logits


def ours_logits(ours, ids, mask, pixels, pixel_mask):
    with torch.no_grad():
        return ours(ids, attention_mask=mask, pixel_values=pixels, pixel_attention_mask=pixel_mask).logits


def gap(a, b, mask) -> float:
    return (a - b)[mask.bool()].abs().max().item()


def test_logits_with_padded_images(pair):
    hf, ours = pair
    ids, mask, pixels, pixel_mask = batch()
    theirs = hf_logits(hf, ids, mask, pixels, pixel_mask)
    assert gap(ours_logits(ours, ids, mask, pixels, pixel_mask), theirs, mask) <= 1e-4
    # the pixel mask is at work: without it (every patch real, positions unbucketed) the logits differ
    assert gap(ours_logits(ours, ids, mask, pixels, None), theirs, mask) > 1e-3


def test_greedy_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    if hf.config.model_type == "idefics3":
        pytest.skip("the same code as smolvlm's; idefics3's generate is checked from files below")
    ids, mask, pixels, pixel_mask = batch()
    theirs = hf.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels[:, None],
                         pixel_attention_mask=pixel_mask[:, None], max_new_tokens=8, do_sample=False, pad_token_id=0)
    mine = llmarch.generate(ours, ids, 8, attention_mask=mask, pixel_values=pixels, pixel_attention_mask=pixel_mask)
    assert torch.equal(mine, theirs)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    hf, ours = pair
    if hf.config.model_type == "idefics3":
        pytest.skip("the same code as smolvlm's")
    ids, mask, pixels, pixel_mask = batch()
    P = 11  # both images in the prompt, the last 3 tokens one at a time
    with torch.no_grad():
        whole = ours_logits(ours, ids, mask, pixels, pixel_mask)
        embeds = ours.embed_inputs(ids[:, :P], pixels, pixel_mask)
    assert gap(prefilled_then_stepped(ours, ids, mask, P, embeds), whole[:, P - 1:], mask[:, P - 1:]) <= 1e-4


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    hf, ours = pair
    llmarch.to_hf(ours, tmp_path / "out")
    again = type(hf).from_pretrained(tmp_path / "out").eval()
    ids, mask, pixels, pixel_mask = batch()
    assert gap(hf_logits(again, ids, mask, pixels, pixel_mask), hf_logits(hf, ids, mask, pixels, pixel_mask),
               mask) <= 1e-4
    assert llmarch.from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_refusals(pair):
    _, ours = pair
    ids, mask, pixels, pixel_mask = batch()
    with pytest.raises(LlmarchError, match="image tokens"):
        ours(ids, attention_mask=mask, pixel_values=pixels[:1], pixel_attention_mask=pixel_mask[:1])
    with pytest.raises(LlmarchError, match="pixel_attention_mask must have shape"):
        ours(ids, attention_mask=mask, pixel_values=pixels, pixel_attention_mask=pixel_mask[:, :8])
    with pytest.raises(LlmarchError, match="divide by patch_size"):
        ours(ids, attention_mask=mask, pixel_values=pixels[..., :14], pixel_attention_mask=None)
    with pytest.raises(LlmarchError, match="shuffle_factor"):
        llmarch.build("llama-tiny", n_layers=1, vision={**ours.config.vision, "shuffle_factor": 3})


def test_a_text_model_other_than_llama_is_refused(tmp_path):
    conf = transformers.SmolVLMConfig(text_config={**TEXT, "model_type": "mistral"}, vision_config=TOWER)
    (tmp_path / "config.json").write_text(conf.to_json_string())
    with pytest.raises(LlmarchError, match="'mistral' text model"):
        llmarch.from_hf(tmp_path)


# images from files: the image processors' pixel_values and Idefics3Processor's input_ids (SmolVLMProcessor lays
# images out with the same code, but needs torchvision and num2words for its video processor, which are not here)
Image = pytest.importorskip("PIL.Image")
SPECIAL = ["<unk>", "<s>", "</s>", "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
           *(f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4))]
SPLIT = dict(size={"longest_edge": 40}, max_image_size={"longest_edge": 16})


def pil_images():
    """An RGB image wider than high, an RGBA one higher than wide, a small grayscale one."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (50, 13, 4), dtype=np.uint8), "RGBA"),
            Image.fromarray(rng.integers(0, 256, (9, 11), dtype=np.uint8))]


@pytest.mark.parametrize("cls,kwargs", [("Idefics3ImageProcessorPil", SPLIT),
                                        ("SmolVLMImageProcessorPil", dict(SPLIT, resample=2)),
                                        ("SmolVLMImageProcessorPil", dict(SPLIT, do_image_splitting=False))])
def test_pixel_values_are_the_image_processors(cls, kwargs):
    hf = getattr(transformers, cls)(**kwargs)
    config = {**hf.to_dict(), "image_processor_type": cls}
    pil = pil_images()
    ours = processor_for(config)(pil)["pixel_values"]
    want = hf(pil, return_tensors="pt")
    assert want["pixel_attention_mask"].all()  # one prompt's tiles are all tile x tile
    assert torch.equal(ours, want["pixel_values"][0])
    rows_cols = hf(pil, return_row_col_info=True)
    assert [processor_for(config).grid(im) for im in pil] == list(zip(rows_cols["rows"][0], rows_cols["cols"][0]))


def tokenizer():
    """A small byte-level BPE with Idefics3's image tokens, BOS added in front of every encoding (as LLaMA's)."""
    from tokenizers import processors

    tk = trained_bpe(SPECIAL, "User: what is in the picture?\nAssistant: a cat on a mat.", vocab_size=200)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")


@pytest.fixture(scope="module")
def idefics3(tmp_path_factory):
    """A tiny random Idefics3 checkpoint saved by transformers with its Idefics3Processor (4 features a tile)."""
    path = tmp_path_factory.mktemp("idefics3-files")
    tok = tokenizer()
    processor = transformers.Idefics3Processor(image_processor=transformers.Idefics3ImageProcessorPil(**SPLIT),
                                               tokenizer=tok, image_seq_len=PER)
    torch.manual_seed(0)
    conf = transformers.Idefics3Config(text_config={**TEXT, "vocab_size": len(tok)}, vision_config=TOWER,
                                       image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
    hf = saved_with_processor(transformers.Idefics3ForConditionalGeneration(conf), path, tok.eos_token_id, processor)
    return path, hf, processor


def test_image_prompt_is_the_processors_and_generates_its_tokens(idefics3):
    from llmarch.data.tokenizer import load_tokenizer

    path, hf, processor = idefics3
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()[:2]
    for prompt in ("User:<image>what is in the picture?<image>", "what?"):
        ids, arguments = image_request(model, tok, prompt, pil)
        pixels = arguments["pixel_values"]
        if "<image>" in prompt:
            want = processor(images=[pil], text=[prompt], return_tensors="pt")
            assert ids == want["input_ids"][0].tolist() and torch.equal(pixels, want["pixel_values"][0])
    assert ids == image_request(model, tok, "<image><image>what?", pil)[0]  # none in the prompt: images first
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [want["input_ids"][0].tolist()], 5, pixel_values=pixels)[0] == expected


def test_cli_generate_with_an_image(idefics3, tmp_path, capsys):
    """`llmarch generate --image`: the prompt and transformers' greedy continuation as text."""
    from llmarch.cli import main

    path, hf, processor = idefics3
    image = pil_images()[0]
    image.save(tmp_path / "cat.png")
    prompt = "User:<image>what is in the picture?"
    inputs = processor(images=[[image]], text=[prompt], return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=4, do_sample=False)[0],
                                          skip_special_tokens=True)
    code = main(["generate", "--checkpoint", str(path), "--image", str(tmp_path / "cat.png"), "--prompt", prompt,
                 "--temperature", "0", "--max-new-tokens", "4", "--no-stream"])
    out, err = capsys.readouterr()
    assert code in (0, None) and out == expected + "\n", err
