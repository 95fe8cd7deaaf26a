"""GLM-4.1V images from files (vision/preprocess.py's Glm4vImageProcessor entry, vision/prompts.py's GLM-4V layout)
against transformers, on a tiny random Glm4vForConditionalGeneration it saved with a tokenizer holding GLM's special
tokens and its PIL image processor: pixel_values, image_grid_thw and input_ids equal to Glm4vProcessor's (and
Glm46VProcessor's, which differs only in videos); `llmarch generate --image` prints transformers' greedy continuation;
`llmarch chat`'s /image and the server's image_url parts answer as transformers does."""
import base64

import pytest
import torch

import llmarch
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import PROMPTS, image_request
from test_cli_trust import call
import test_qwen_vl_images as qwen_images
from test_qwen_vl_images import chat_reference, processor, random_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SPECIAL = ["<unk>", "<|endoftext|>", "[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|begin_of_image|>",
           "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"]
IMAGE = SPECIAL.index("<|image|>")
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[1, 1, 2]))
VISION = dict(depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=40, num_heads=2, patch_size=4,
              image_size=16, spatial_merge_size=2, temporal_patch_size=2)
PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2,
              size=dict(shortest_edge=2 * 16 * 16, longest_edge=2 * 40 * 40))
# GLM-4.1V's chat template, shortened: each image part <|begin_of_image|><|image|><|end_of_image|> in its place
TEMPLATE = ("[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n{% if m['content'] is string %}"
            "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|begin_of_image|>"
            "<|image|><|end_of_image|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
PROMPT = "what is in the picture?"
images = qwen_images.images  # the image files fixture: RGB, RGBA and JPEG of odd sizes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(path, transformers model, Glm4vProcessor) of a tiny random checkpoint saved by transformers beside its
    tokenizer and image processor."""
    tok = qwen_images.tokenizer(SPECIAL, "<|user|>", TEMPLATE)  # GLM-4V's special tokens, no BOS
    hf = random_model("Glm4v", text_config=dict(TEXT, vocab_size=len(tok)), vision_config=VISION,
                      image_token_id=IMAGE)
    hf.generation_config.eos_token_id = tok.eos_token_id
    path = tmp_path_factory.mktemp("glm4v")
    hf.save_pretrained(path)
    image_processor = transformers.Glm4vImageProcessorPil(**PIXELS)
    image_processor.save_pretrained(path)
    tok.save_pretrained(path)
    glm = processor("Glm4vProcessor", tok, image_processor)
    glm.chat_template = TEMPLATE
    return path, hf, glm


def test_prompt_and_pixels_are_the_processors(checkpoint, images):
    """Two images of other sizes: each <|image|> expanded to its image's count, as Glm4vProcessor and
    Glm46VProcessor expand it; a prompt without one gets the chat template's markers first; pixel_values and
    image_grid_thw equal; one <|image|> for two images refused."""
    path, _, glm = checkpoint
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(p) for p in images[:2]]
    explicit = "the <|begin_of_image|><|image|><|end_of_image|> and <|image|> " + PROMPT
    for kind in ("Glm4vProcessor", "Glm46VProcessor"):
        want = processor(kind, glm.tokenizer, glm.image_processor)(images=pil, text=explicit, return_tensors="pt")
        ids, arguments = image_request(model, tok, explicit, pil)
        assert ids == want["input_ids"][0].tolist()
        assert torch.equal(arguments["image_grid_thw"], want["image_grid_thw"])
        assert torch.equal(arguments["pixel_values"], want["pixel_values"])  # RGBA composited onto white, as theirs
    assert arguments["image_grid_thw"][:, 1:].tolist() == [[6, 10], [10, 4]] and ids.count(IMAGE) == 15 + 10
    layout = "<|begin_of_image|><|image|><|end_of_image|>" * 2 + PROMPT
    assert image_request(model, tok, PROMPT, pil)[0] == glm(images=pil, text=layout)["input_ids"][0]
    assert {"glm4v", "glm4v_moe", "glm46v"} <= set(PROMPTS.names())
    with pytest.raises(LlmarchError, match=r"holds 1 <\|image\|> token"):
        image_request(model, tok, "<|image|> one", pil)


def test_cli_generate_with_images(checkpoint, images, capsys):
    """`llmarch generate --image A --image B`: transformers' greedy continuation of its processor's inputs."""
    path, hf, glm = checkpoint
    pil = [read_image(images[1]), read_image(images[2])]
    inputs = glm(images=pil, text="<|begin_of_image|><|image|><|end_of_image|>" * 2 + PROMPT, return_tensors="pt")
    expected = glm.tokenizer.decode(hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0],
                                    skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", images[1], "--image", images[2],
                          "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "6")
    assert code == 0, err
    assert out == expected + "\n"


def test_terminal_and_server_chat_with_an_image(checkpoint, images):
    """`llmarch chat`'s /image, and POST /v1/chat/completions with an image_url part: transformers' greedy reply
    (and prompt length)."""
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, glm = checkpoint
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    expected, _ = chat_reference(hf, glm, [read_image(images[0])], messages)
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {images[0]}", PROMPT, "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == expected

    expected, prompt_tokens = chat_reference(hf, glm, [read_image(images[1])], messages)
    url = "data:image/png;base64," + base64.b64encode(images[1].read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": PROMPT}]}]
    server = Server(llmarch.load(path), load_tokenizer(path), "glm4v", max_batch=2)
    with TestClient(build_app(server)) as client:
        reply = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
    assert reply["choices"][0]["message"]["content"] == expected
    assert reply["usage"]["prompt_tokens"] == prompt_tokens
