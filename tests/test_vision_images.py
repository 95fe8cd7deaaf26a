"""Images from files (src/llmarch/vision/image_files.py, preprocess.py, prompts.py) against transformers: pixel_values
equal to its PIL image processors' (CLIP, SigLIP, Gemma 3) on images of odd sizes and modes written with Pillow,
input_ids equal to LlavaProcessor's and PaliGemmaProcessor's, and `llmarch generate --image` on a tiny random LLaVA
checkpoint giving transformers' greedy tokens; unreadable inputs refused in one line."""
import json

import numpy as np
import pytest
import torch

import llmarch
from conftest import perturbed
from llmarch.data.tokenizer import ByteTokenizer, load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.preprocess import PROCESSORS, image_processor_config, processor_for
from llmarch.vision.prompts import image_request
from test_cli_trust import call

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_files(tmp_path_factory.mktemp("images"))


def image_files(root):
    """Paths of five images of odd sizes under root: RGB noise (PNG), RGBA with graded alpha, grayscale, a palette
    image with a transparent colour, and a JPEG."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (41, 19, 4), dtype=np.uint8)
    palette = Image.fromarray(rng.integers(0, 256, (23, 30, 3), dtype=np.uint8)).quantize(8)
    palette.info["transparency"] = 3
    made = {"rgb.png": Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)),
            "rgba.png": Image.fromarray(rgba, "RGBA"), "gray.png": Image.fromarray(rng.integers(0, 256, (13, 29),
                                                                                            dtype=np.uint8)),
            "palette.png": palette, "photo.jpg": Image.fromarray(rng.integers(0, 256, (31, 17, 3), dtype=np.uint8))}
    for name, image in made.items():
        image.save(root / name, transparency=3) if name == "palette.png" else image.save(root / name)
    return [root / name for name in made]


# transformers class -> kwargs: shortest edge then a crop (one wider than the resized image: zero padding), a fixed
# size with another filter, Gemma 3's square
PROCESSOR_CASES = {
    "clip": ("CLIPImageProcessorPil", dict(size={"shortest_edge": 20}, crop_size={"height": 18, "width": 14})),
    "clip-padded": ("CLIPImageProcessorPil", dict(size={"shortest_edge": 10}, crop_size={"height": 9, "width": 21},
                                                  resample=2, image_mean=[0.3, 0.4, 0.5], image_std=0.25)),
    "siglip": ("SiglipImageProcessorPil", dict(size={"height": 24, "width": 20})),
    "siglip-lanczos": ("SiglipImageProcessorPil", dict(size={"height": 15, "width": 15}, resample=1)),
    "gemma3": ("Gemma3ImageProcessorPil", dict(size={"height": 16, "width": 16})),
}


@pytest.mark.parametrize("case", sorted(PROCESSOR_CASES))
def test_pixel_values_are_the_image_processors(case, images, tmp_path):
    cls, kwargs = PROCESSOR_CASES[case]
    hf = getattr(transformers, cls)(**kwargs)
    hf.save_pretrained(tmp_path)
    config = image_processor_config({"preprocessor_config.json": (tmp_path / "preprocessor_config.json")
                                    .read_bytes()}, str(tmp_path))
    pil = [read_image(p) for p in images]
    ours = processor_for(config)(pil)["pixel_values"]
    want = hf(pil, return_tensors="pt")["pixel_values"]
    assert ours.dtype == want.dtype == torch.float32 and ours.shape == want.shape
    # equal, not only within 1e-5: the same operations in the same order (a float32 rescale is 5e-7 off)
    assert torch.equal(ours, want)


def test_processor_choice_and_refusals():
    assert {"CLIPImageProcessor", "SiglipImageProcessor", "Gemma3ImageProcessor",
            "Qwen2VLImageProcessor"} <= set(PROCESSORS.names())
    # transformers 5 saves a processor's image processor inside processor_config.json; fast classes share configs
    nested = {"processor_config.json": json.dumps({"image_processor": {"image_processor_type": "X"}}).encode()}
    assert image_processor_config(nested, "d") == {"image_processor_type": "X"}
    for bad, message in ((b"{x", "cannot read the checkpoint's preprocessor_config.json"), (b"[1]", "JSON list")):
        with pytest.raises(LlmarchError, match=message):  # json's own error escaped the CLI
            image_processor_config({"preprocessor_config.json": bad}, "d")
    processor_for({"image_processor_type": "SiglipImageProcessorFast"})
    assert processor_for({"feature_extractor_type": "CLIPFeatureExtractor"}).crop == (224, 224)
    with pytest.raises(LlmarchError, match="'BlipImageProcessor' is not supported"):
        processor_for({"image_processor_type": "BlipImageProcessor"})
    with pytest.raises(LlmarchError, match="do_pan_and_scan is not supported"):
        processor_for({"image_processor_type": "Gemma3ImageProcessor", "do_pan_and_scan": True})
    with pytest.raises(LlmarchError, match="no preprocessor_config.json"):
        image_processor_config({}, "d")


def noise_images(*shapes):
    """PIL images of uniform noise from one generator (seed 0), one per shape: (H, W) grayscale, (H, W, 3) RGB,
    (H, W, 4) RGBA."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "RGBA" if shape[2:] == (4,) else None)
            for shape in shapes]


def tokenizer(special, **more):
    """A small byte-level BPE with `special` tokens first and BOS added in front of every encoding (as LLaMA's);
    `more`: PreTrainedTokenizerFast's other arguments (InternVL's named image tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.train_from_iterator(["the cat sat on the mat. what is in the picture? USER: ASSISTANT:"] * 20,
                           trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", **more)


TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=8,
             patch_size=4)
CLIP = dict(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})


# llava-1.5's chat template (its images first, each an <image> line, then the text), string content allowed
TEMPLATE = ("{% for message in messages %}{{ message['role'].upper() + ': ' }}"
            "{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
            "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
            "{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] + ' ' }}{% endfor %}"
            "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """A tiny random LLaVA checkpoint saved by transformers with its LlavaProcessor (4 features per image), and
    the processor."""
    path = tmp_path_factory.mktemp("llava")
    tok = tokenizer(["<unk>", "<s>", "</s>", "<image>"])
    processor = transformers.LlavaProcessor(image_processor=transformers.CLIPImageProcessorPil(**CLIP), tokenizer=tok,
                                            patch_size=4, vision_feature_select_strategy="default",
                                            num_additional_image_tokens=1, chat_template=TEMPLATE)
    torch.manual_seed(0)
    config = transformers.LlavaConfig(text_config=dict(model_type="llama", vocab_size=len(tok), **TEXT),
                                      vision_config=dict(model_type="clip_vision_model", **TOWER),
                                      image_token_index=tok.convert_tokens_to_ids("<image>"))
    return saved(path, perturbed(transformers.LlavaForConditionalGeneration(config)).eval(), processor)


def saved(path, hf, processor):
    """A transformers model and its processor saved to path as a checkpoint (the tokenizer's EOS its generation's),
    transformers' own generate told to run on past EOS: (path, hf, processor)."""
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": processor.tokenizer.eos_token_id}))
    return path, hf, processor


PROMPT = "USER: <image>\nwhat is in the picture? ASSISTANT:"


def test_llava_image_prompt_generates_transformers_tokens(llava, images):
    """input_ids and pixel_values as LlavaProcessor gives them, the greedy tokens of transformers' generate."""
    path, hf, processor = llava
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(images[1])]
    ids, arguments = image_request(model, tok, PROMPT, pil)
    want = processor(images=pil, text=PROMPT, return_tensors="pt")
    assert ids == want["input_ids"][0].tolist() and ids.count(3) == 4 and list(arguments) == ["pixel_values"]
    assert (arguments["pixel_values"] - want["pixel_values"]).abs().max() <= 1e-5
    expected = hf.generate(**want, max_new_tokens=6, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 6, **arguments)[0] == expected
    # without an image token, the image goes first on its own line
    assert image_request(model, tok, "what?", pil)[0] == tok.encode("<image>" * 4 + "\nwhat?")


def test_paligemma_prompt_is_the_processors(tmp_path, images):
    """PaliGemmaProcessor's input_ids (image tokens, BOS, the prompt, a newline, no BOS added in front; with the image
    tokens in the prompt or without them, for two images) and pixel_values; on a tiny random PaliGemma saved by
    transformers, the greedy tokens of its generate (a prefix-LM over the processor's prompt)."""
    processor = transformers.PaliGemmaProcessor(
        image_processor=transformers.SiglipImageProcessorPil(size={"height": 8, "width": 8}, image_seq_length=4),
        tokenizer=tokenizer(["<unk>", "<s>", "</s>"]))
    torch.manual_seed(0)
    config = transformers.PaliGemmaConfig(
        text_config=dict(model_type="gemma", vocab_size=len(processor.tokenizer), **TEXT),
        vision_config=dict(model_type="siglip_vision_model", **TOWER), image_token_index=processor.image_token_id,
        projection_dim=32, hidden_size=32)
    hf = perturbed(transformers.PaliGemmaForConditionalGeneration(config)).eval()
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    model, tok = llmarch.load(tmp_path), load_tokenizer(tmp_path)
    pil = [read_image(images[0]), read_image(images[2])]
    for prompt in ("caption en", "<image><image>answer the cat"):
        want = processor(images=[pil], text=[prompt], return_tensors="pt")
        ids, arguments = image_request(model, tok, prompt, pil)
        assert ids == want["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], want["pixel_values"])
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    with pytest.raises(LlmarchError, match="holds 1 <image> token"):
        image_request(model, tok, "<image> one", pil)


def test_unreadable_images_are_one_line_errors(tmp_path, images, monkeypatch):
    (tmp_path / "notes.txt").write_text("not an image")
    whole = images[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[:len(whole) // 2])
    for name, text in [("missing.png", "no such file"), ("notes.txt", "is not an image file"),
                       ("cut.png", "cannot be decoded")]:
        with pytest.raises(LlmarchError, match=text):
            read_image(tmp_path / name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's bomb check: an error past twice the limit
    with pytest.raises(LlmarchError, match="too large to decode"):
        read_image(images[0])


def test_cli_generate_with_an_image(llava, images, capsys, tmp_path):
    """`llmarch generate --image`: the prompt and transformers' greedy continuation as text, streamed or not."""
    path, hf, processor = llava
    inputs = processor(images=[read_image(images[4])], text=PROMPT, return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0],
                                          skip_special_tokens=True)
    argv = ["generate", "--checkpoint", path, "--image", images[4], "--prompt", PROMPT, "--temperature", "0",
            "--max-new-tokens", "6"]
    for extra in ([], ["--no-stream"]):
        code, out, err = call(capsys, *argv, *extra)
        assert code == 0, err
        assert out == expected + "\n"
    # converted to an llmarch checkpoint, the image processor's config travels with the tokenizer
    assert call(capsys, "convert", "--from-hf", path, "--out", tmp_path / "ours")[0] == 0
    code, out, err = call(capsys, *argv[:2], tmp_path / "ours", *argv[3:])
    assert code == 0 and out == expected + "\n", err


def test_cli_image_refusals_are_one_line(llava, images, tmp_path, capsys):
    from llmarch.checkpoint import save_model

    save_model(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, d_model=32, n_heads=2, context_length=32),
               tmp_path / "text")
    ByteTokenizer().save(tmp_path / "text")
    (tmp_path / "notes.txt").write_text("not an image")
    generate = ["generate", "--max-new-tokens", "2", "--prompt", "hi"]
    for argv, text in [((tmp_path / "text", images[0]), "reads no images"),
                       ((llava[0], tmp_path / "missing.png"), "no such file"),
                       ((llava[0], tmp_path / "notes.txt"), "is not an image file")]:
        code, _, err = call(capsys, *generate, "--checkpoint", argv[0], "--image", argv[1])
        assert code == 2 and len(err.strip().splitlines()) == 1 and text in err, err
    code, _, err = call(capsys, "generate", "--checkpoint", llava[0], "--image", images[0], "--audio", "a.wav")
    assert code == 2 and "--image goes with --prompt" in err, err


def test_terminal_chat_with_an_image(llava, images):
    """`llmarch chat`'s conversation with /image: the reply is transformers' greedy continuation of its processor's
    chat prompt; the image stays with its message on the next turn."""
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, processor = llava
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
    inputs = processor(images=[read_image(images[3])], return_tensors="pt",
                       text=processor.apply_chat_template(messages, add_generation_prompt=True))
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {images[3]}", "what is in the picture?", "/image nowhere.png", "and now?", "/exit"])
    shown = []
    chat_loop(conversation, lambda _: next(lines), shown.append)
    assert conversation.history[1]["content"] == processor.decode(new, skip_special_tokens=True)
    assert "(error: image nowhere.png: no such file)\n" in shown
    # the first message's image, the second with none
    assert conversation.prompt()[1]["pixel_values"].shape == (1, 3, 8, 8)


def test_terminal_chat_refuses_what_the_model_cannot_read(llava, images, tmp_path):
    """`llmarch chat`: an /audio clip for a model without an audio tower is refused when attached; a message whose
    attachment the model cannot take (a video, for LLaVA) fails with them dropped, so the next message is answered."""
    from llmarch.serve.terminal import Conversation, chat_loop

    path = llava[0]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 90, 30, 60)).save(frames / f"{i}.png")
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=3, temperature=0)
    lines = iter(["/audio clip.wav", f"/video {frames}", "what is this?", "and this?", "/exit"])
    shown = []
    chat_loop(conversation, lambda _: next(lines), shown.append)
    assert any(line.startswith("(error: ") and "reads no audio" in line for line in shown)
    assert any("(the message and its 1 attachment(s) dropped)" in line for line in shown)
    assert [m["content"] for m in conversation.history][:1] == ["and this?"] and not conversation.pending


def test_server_chat_with_an_image(llava, images):
    """POST /v1/chat/completions with an image_url part (a base64 data URL): the reply is transformers' greedy
    continuation of its processor's chat prompt; an http URL, bad base64 and a text-only model refused (400)."""
    import base64

    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app

    path, hf, processor = llava
    pil = read_image(images[3])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
    inputs = processor(images=[pil], text=processor.apply_chat_template(messages, add_generation_prompt=True),
                       return_tensors="pt")
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    url = "data:image/png;base64," + base64.b64encode(images[3].read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": "what is in the picture?"}]}]
    server = Server(llmarch.load(path), load_tokenizer(path), "llava", max_batch=2)
    with TestClient(build_app(server)) as client:
        reply = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
        assert len(new) == 5 and reply["choices"][0]["message"]["content"] == processor.decode(
            new, skip_special_tokens=True)
        assert reply["usage"]["prompt_tokens"] == inputs["input_ids"].shape[1]
        for bad, text in [("https://example.org/cat.png", "fetches no URLs"),
                          ("data:image/png;base64,@@", "does not decode"), ("cat.png", "must be a data:image")]:
            asked[0]["content"][0]["image_url"]["url"] = bad
            answer = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=2))
            assert answer.status_code == 400 and text in answer.json()["error"]["message"]
    text_only = Server(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, d_model=32, n_heads=2), ByteTokenizer(),
                       "text")
    with TestClient(build_app(text_only)) as client:
        asked[0]["content"][0]["image_url"]["url"] = url
        answer = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=2))
        assert answer.status_code == 400 and "reads no images" in answer.json()["error"]["message"]
