"""Llama 4's images from files (vision/llama4_images.py: Llama4ImageProcessor's canvas, resize, zero padding, bfloat16
normalization, tiles and global tile; tiled_layouts.py's Llama4Processor layout) against transformers: its
Llama4ImageProcessor exists only for torchvision, which is not installed here; where it is, pixel_values and
input_ids are compared with Llama4Processor's, and everywhere with the digests of what that processor gave
(transformers 5.25, torchvision 0.28) on the same RGB images as LFM2-VL's test (a wide one on a 1 x 2 canvas, a
small one upscaled to one tile, a large one on 2 x 2) and prompt; and on a tiny random Llama 4 saved by transformers
the greedy tokens of its generate, `llmarch generate --image`, a chat template's image parts and the server's
image_url parts; a processor config that disagrees with the model refused in one line."""
import base64
import json
import shutil

import pytest
import torch

import llmarch
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import chat_request, image_request
from test_cli_trust import one_line_error
from test_lfm2_vl_images import rgb_images
from test_tiled_vlm_images import generate_prints, ours_and_theirs, sha
from test_vision_images import tokenizer

transformers = pytest.importorskip("transformers")
# Llama4Processor's default chat template: an image part is <|image|>
from transformers.models.llama4.processing_llama4 import chat_template as CHAT_TEMPLATE  # noqa: E402

SPECIAL = ["<unk>", "<s>", "</s>", "<|image_start|>", "<|image_end|>", "<|patch|>", "<|tile_x_separator|>",
           "<|tile_y_separator|>", "<|image|>"]
TEXT = dict(hidden_size=32, intermediate_size=32, intermediate_size_mlp=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, num_local_experts=2, attention_chunk_size=16, floor_scale=8,
            pad_token_id=0)
VISION = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=56,
              patch_size=14, vision_output_dim=32, projector_input_dim=32, projector_output_dim=32)
# Llama4ImageProcessor as its processor saves it: 56-pixel tiles, at most 4 of them
IMAGES = {"image_processor_type": "Llama4ImageProcessor", "do_convert_rgb": True, "do_normalize": True,
          "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
          "max_patches": 4, "resample": 2, "rescale_factor": 1 / 255, "resize_to_max_canvas": False,
          "size": {"height": 56, "width": 56}}
ASKED = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
PROMPT = "what is in <|image|>, <|image|> and <|image|>?"
# sha256 of Llama4Processor's pixel_values (as float32 bytes, (9, 3, 56, 56)) and of str(input_ids) on rgb_images()
# and PROMPT (transformers 5.25, torchvision 0.28)
PIXELS_SHA = "23e046a6712583f5b9213db45b56094546c443087d45d2e1d7d08da6e10433ce"
IDS_SHA = "9c4c892ed844c0691c72223cf98fa062af9654599b53918c0173300daefdbc47"


@pytest.fixture(scope="module")
def llama4(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama4")
    tok = tokenizer(SPECIAL, pad_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    conf = transformers.Llama4Config(text_config=dict(TEXT, vocab_size=len(tok)), vision_config=VISION,
                                     image_token_index=tok.convert_tokens_to_ids("<|patch|>"))
    hf = saved_with_processor(transformers.Llama4ForConditionalGeneration(conf), path, tok.eos_token_id, tok)
    (path / "processor_config.json").write_text(json.dumps({"image_processor": IMAGES, "patch_size": 14,
                                                            "pixel_shuffle_ratio": 0.5,
                                                            "processor_class": "Llama4Processor"}))
    return path, hf, tok


def test_llama4_prompt_and_pixels_are_the_processors(llama4):
    path, hf, hf_tok = llama4
    model, tok = llmarch.load(path), load_tokenizer(path)
    ids, arguments = image_request(model, tok, PROMPT, rgb_images())
    assert list(arguments) == ["pixel_values"] and arguments["pixel_values"].shape == (3 + 1 + 5, 3, 56, 56)
    assert sha(arguments["pixel_values"].numpy().tobytes()) == PIXELS_SHA and sha(str(ids).encode()) == IDS_SHA
    assert ids[0] == hf_tok.bos_token_id and ids.count(model.vision.v.image_token_id) == 4 * 9
    assert image_request(model, tok, "what?", rgb_images()[:1])[0] == image_request(model, tok, "<|image|>what?",
                                                                                    rgb_images()[:1])[0]
    expected = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"], max_new_tokens=5,
                           do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected


def test_llama4_against_transformers_processor(llama4):
    """Where torchvision is installed: transformers' own Llama4Processor."""
    pytest.importorskip("torchvision")
    path, _, tok = llama4
    processor = transformers.Llama4Processor(image_processor=transformers.Llama4ImageProcessor(**IMAGES),
                                             tokenizer=tok, patch_size=14, pixel_shuffle_ratio=0.5)
    model, ours_tok, (ids, arguments), want = ours_and_theirs(path, processor, PROMPT, rgb_images())
    assert ids == want["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], want["pixel_values"].float())
    text = processor.apply_chat_template(ASKED, add_generation_prompt=True)
    want = processor(images=rgb_images()[2:], text=text, add_special_tokens=False, return_tensors="pt")
    assert chat_request(model, ours_tok, text, rgb_images()[2:])[0] == want["input_ids"][0].tolist()


def test_llama4_processor_settings_must_agree_with_the_model(llama4, tmp_path):
    path, _, _ = llama4
    model, tok = llmarch.load(path), load_tokenizer(path)
    tok.side_files = dict(tok.side_files, **{"processor_config.json": json.dumps(
        {"image_processor": IMAGES, "patch_size": 7}).encode()})
    with pytest.raises(LlmarchError, match="a tile"):
        image_request(model, tok, PROMPT, rgb_images())
    tok.side_files["processor_config.json"] = json.dumps({"image_processor": dict(IMAGES, resample=3)}).encode()
    with pytest.raises(LlmarchError, match="resample"):
        image_request(model, tok, PROMPT, rgb_images())


def test_llama4_chat_places_images_at_its_placeholder(llama4):
    path, _, _ = llama4
    model, tok = llmarch.load(path), load_tokenizer(path)
    text = "<s>user: <|image|>what is in the picture?"
    ids, _ = chat_request(model, tok, text, rgb_images()[2:])
    assert ids == image_request(model, tok, text.removeprefix("<s>"), rgb_images()[2:])[0]


def test_cli_generate_with_a_llama4_image(llama4, tmp_path, capsys):
    path, hf, tok = llama4
    rgb_images()[2].save(tmp_path / "big.png")
    prompt = "<|image|>what is in the picture?"
    ids, arguments = image_request(llmarch.load(path), load_tokenizer(path), prompt, [read_image(tmp_path / "big.png")])
    out = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"], max_new_tokens=4,
                      do_sample=False)[0]
    generate_prints(capsys, path, tmp_path / "big.png", prompt, tok.decode(out, skip_special_tokens=True))


def test_terminal_chat_and_server_with_a_llama4_image(llama4, tmp_path):
    """`llmarch chat`'s /image and the server's image_url part: transformers' greedy reply to the chat template's
    prompt (its ids those of Llama4Processor: test_llama4_against_transformers_processor)."""
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, hf_tok = llama4
    rgb_images()[2].save(tmp_path / "big.png")
    model, tok = llmarch.load(path), load_tokenizer(path)
    text = hf_tok.apply_chat_template(ASKED, add_generation_prompt=True, tokenize=False)
    ids, arguments = chat_request(model, tok, text, [read_image(tmp_path / "big.png")])
    out = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"], max_new_tokens=5,
                      do_sample=False)[0, len(ids):]
    reply = hf_tok.decode(out, skip_special_tokens=True)

    conversation = Conversation(model, tok, max_tokens=5, temperature=0)
    lines = iter([f"/image {tmp_path / 'big.png'}", "what is in the picture?", "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == reply

    url = "data:image/png;base64," + base64.b64encode((tmp_path / "big.png").read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": "what is in the picture?"}]}]
    with TestClient(build_app(Server(model, tok, "llama4", max_batch=2))) as client:
        answer = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
    assert answer["choices"][0]["message"]["content"] == reply and answer["usage"]["prompt_tokens"] == len(ids)


def test_cli_refuses_a_processor_that_disagrees_with_the_model_in_one_line(llama4, tmp_path, capsys):
    path, _, _ = llama4
    bad = shutil.copytree(path, tmp_path / "bad")
    (bad / "processor_config.json").write_text(json.dumps({"image_processor": IMAGES, "patch_size": 7}))
    rgb_images()[0].save(tmp_path / "wide.png")
    one_line_error(capsys, "a tile", "generate", "--checkpoint", bad, "--image", tmp_path / "wide.png", "--prompt",
                   "<|image|>what?", "--max-new-tokens", "2")
