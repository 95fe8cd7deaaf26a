"""Qwen2-VL, Qwen2.5-VL and Qwen3.5 images from files (vision/preprocess.py's Qwen2VLImageProcessor entry,
vision/prompts.py's Qwen layout) against transformers, on tiny random checkpoints it saved with their tokenizer and
image processor: pixel_values, image_grid_thw and input_ids equal to Qwen2VLProcessor's (Qwen2.5-VL's and Qwen3-VL's,
Qwen3.5's processor, give the same ids; Qwen3.5's checkpoint is its hybrid text model with Qwen3-VL's tower without
DeepStack); `llmarch generate --image` prints transformers' greedy continuation; `llmarch chat`'s /image and the
server's image_url parts answer as transformers does; a running batch decodes an image prompt beside a text prompt,
each row shifted by its own M-RoPE delta, with transformers' logits."""
import base64
import json
import re

import numpy as np
import pytest
import torch

import llmarch
from conftest import perturbed, trained_bpe
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import PROMPTS, image_request
from test_cli_trust import call

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
Image = pytest.importorskip("PIL.Image")

IMAGE = 6  # <|image_pad|>
SPECIAL = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[1, 1, 2]))
VISION = dict(patch_size=4, temporal_patch_size=2, spatial_merge_size=2, num_heads=2)
CASES = {  # model_type: (class prefix, vision config, the text config's changes to TEXT)
    "qwen2_vl": ("Qwen2VL", dict(VISION, depth=2, embed_dim=32, hidden_size=32, mlp_ratio=2), {}),
    "qwen2_5_vl": ("Qwen2_5_VL", dict(VISION, depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=40,
                                      window_size=16, fullatt_block_indexes=[1]), {}),
    # Qwen3.5: Qwen3-VL's tower without DeepStack; a Gated DeltaNet layer then gated attention, M-RoPE interleaved
    # over half of each 16-wide head
    "qwen3_5": ("Qwen3_5", dict(VISION, depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=40,
                                num_position_embeddings=16),
                dict(head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                     linear_value_head_dim=8, layer_types=["linear_attention", "full_attention"],
                     rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5,
                                          mrope_section=[1, 1, 2]))),
}
PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=40 * 40)
# Qwen2-VL's chat template, shortened: each image part <|vision_start|><|image_pad|><|vision_end|> in its place
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
            "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|>"
            "<|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tokenizer():
    """A small byte-level BPE with Qwen's special tokens, no BOS (as Qwen's), its chat template."""
    tk = trained_bpe(SPECIAL, "the cat sat on the mat. what is in the picture? describe it")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                                unk_token="<unk>", chat_template=TEMPLATE)


def processor(kind: str, tok, image_processor):
    """transformers' Qwen processor of that class without a video processor: its constructor's check of one needs
    torchvision, which the images never use."""
    class ImagesOnly(getattr(transformers, kind)):
        def check_argument_for_proper_class(self, name, argument):
            return None if argument is None else super().check_argument_for_proper_class(name, argument)

    return ImagesOnly(image_processor=image_processor, tokenizer=tok, video_processor=None, chat_template=TEMPLATE)


def random_model(prefix: str, **config):
    """transformers' `prefix`ForConditionalGeneration of that config, seeded, its tower's matrices drawn N(0, 0.1) so
    that it moves the logits, every 1-D parameter perturbed."""
    torch.manual_seed(0)
    hf = getattr(transformers, prefix + "ForConditionalGeneration")(getattr(transformers, prefix + "Config")(**config))
    with torch.no_grad():
        for p in hf.model.visual.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    return perturbed(hf)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Paths of three images of odd sizes: RGB noise, RGBA with graded alpha (composited onto white), a JPEG."""
    root = tmp_path_factory.mktemp("qwen_images")
    rng = np.random.default_rng(0)
    made = {"rgb.png": Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)),
            "rgba.png": Image.fromarray(rng.integers(0, 256, (41, 19, 4), dtype=np.uint8), "RGBA"),
            "photo.jpg": Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))}
    for name, image in made.items():
        image.save(root / name)
    return [root / name for name in made]


@pytest.fixture(scope="module", params=sorted(CASES))
def checkpoint(request, tmp_path_factory):
    """(path, transformers model, Qwen2VLProcessor) of a tiny random checkpoint saved by transformers beside its
    tokenizer and image processor (preprocessor_config.json, as the published checkpoints have it)."""
    prefix, vision, text = CASES[request.param]
    tok = tokenizer()
    hf = random_model(prefix, text_config=dict(TEXT, vocab_size=len(tok), **text), vision_config=vision,
                      image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
                      vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"))
    hf.generation_config.eos_token_id = tok.eos_token_id
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    image_processor = transformers.Qwen2VLImageProcessorPil(**PIXELS)
    image_processor.save_pretrained(path)
    tok.save_pretrained(path)
    return path, hf, processor("Qwen2VLProcessor", tok, image_processor)


PROMPT = "what is in the picture?"


def test_prompt_and_pixels_are_the_processors(checkpoint, images):
    """Qwen2VLProcessor's, Qwen2_5_VLProcessor's and Qwen3VLProcessor's ids, pixel_values and image_grid_thw."""
    assert_processors_agree(checkpoint, images, ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"), IMAGE,
                            ("Qwen2VLProcessor", "Qwen2_5_VLProcessor", "Qwen3VLProcessor"))
    assert {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"} <= set(PROMPTS.names())


def assert_processors_agree(checkpoint, images, markers: tuple[str, str, str], image_id: int, kinds: tuple):
    """Two images of other sizes: each image token expanded to its image's count, as the processor classes `kinds`
    expand it; a prompt without one gets the chat template's markers (start, image token, end) first; pixel_values
    and image_grid_thw equal; one image token for two images refused."""
    path, _, reference = checkpoint
    start, token, end = markers
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(p) for p in images[:2]]
    explicit = f"the {start}{token}{end} and {token} " + PROMPT
    for kind in kinds:
        want = processor(kind, reference.tokenizer, reference.image_processor)(images=pil, text=explicit,
                                                                               return_tensors="pt")
        ids, arguments = image_request(model, tok, explicit, pil)
        assert ids == want["input_ids"][0].tolist()
        assert torch.equal(arguments["image_grid_thw"], want["image_grid_thw"])
        assert torch.equal(arguments["pixel_values"], want["pixel_values"])  # RGBA composited onto white, as theirs
    assert arguments["image_grid_thw"][:, 1:].tolist() == [[6, 10], [10, 4]] and ids.count(image_id) == 15 + 10
    layout = (start + token + end) * 2 + PROMPT
    assert image_request(model, tok, PROMPT, pil)[0] == reference(images=pil, text=layout)["input_ids"][0]
    with pytest.raises(LlmarchError, match=re.escape(f"holds 1 {token} token")):
        image_request(model, tok, f"{token} one", pil)


def test_cli_generate_with_images(checkpoint, images, capsys):
    assert_cli_generates(checkpoint, images, capsys, "<|vision_start|><|image_pad|><|vision_end|>")


def assert_cli_generates(checkpoint, images, capsys, image_text: str):
    """`llmarch generate --image A --image B`: the prompt and transformers' greedy continuation of its processor's
    inputs (each image as `image_text`, the chat template's markers around the image token), as text."""
    path, hf, qwen2 = checkpoint
    pil = [read_image(images[1]), read_image(images[2])]
    inputs = qwen2(images=pil, text=image_text * 2 + PROMPT, return_tensors="pt")
    expected = qwen2.tokenizer.decode(hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0],
                                      skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", images[1], "--image", images[2],
                          "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "6")
    assert code == 0, err
    assert out == expected + "\n"


def chat_reference(hf, qwen2, pil, messages, new: int = 5):
    """The text of transformers' greedy reply to `messages` (its processor's chat prompt)."""
    inputs = qwen2(images=pil, text=qwen2.apply_chat_template(messages, add_generation_prompt=True),
                   return_tensors="pt")
    out = hf.generate(**inputs, max_new_tokens=new, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    return qwen2.decode(out, skip_special_tokens=True), inputs["input_ids"].shape[1]


def test_terminal_chat_with_an_image(checkpoint, images):
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, qwen2 = checkpoint
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    expected, _ = chat_reference(hf, qwen2, [read_image(images[0])], messages)
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {images[0]}", PROMPT, "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == expected


def test_server_chat_with_an_image(checkpoint, images):
    """POST /v1/chat/completions with an image_url part: transformers' greedy reply and prompt length."""
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app

    path, hf, qwen2 = checkpoint
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    expected, prompt_tokens = chat_reference(hf, qwen2, [read_image(images[1])], messages)
    url = "data:image/png;base64," + base64.b64encode(images[1].read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": PROMPT}]}]
    server = Server(llmarch.load(path), load_tokenizer(path), "qwen", max_batch=2)
    with TestClient(build_app(server)) as client:
        reply = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
    assert reply["choices"][0]["message"]["content"] == expected
    assert reply["usage"]["prompt_tokens"] == prompt_tokens


def test_running_batch_keeps_each_rows_delta(checkpoint, images):
    """An image prompt joins a running batch beside a text prompt that started first: every decoded step's logits
    are transformers' (each row alone) within 1e-4, its greedy tokens the same; the image row's positions are
    shifted by its own M-RoPE delta, the text row's by none."""
    from llmarch.generate.batch import RunningBatch

    path, hf, qwen2 = checkpoint
    model, tok = llmarch.load(path), load_tokenizer(path)
    pictured, arguments = image_request(model, tok, PROMPT, [read_image(images[2])])
    plain = tok.encode("the cat sat on the mat")
    batch, new = RunningBatch(model, rows=2, max_len=64), 5
    tokens, logits = {}, {}
    for row, (ids, given) in enumerate([(plain, None), (pictured, arguments)]):
        states, first = batch.prefill(ids, images=given)
        batch.join(row, states, len(ids), batch.rope_delta(ids, given))
        tokens[row], logits[row] = [int(first.argmax())], [first]
    assert batch.delta.tolist() == [0, 4 - 16]  # 16 image tokens at 4 x 4 positions
    for _ in range(new - 1):
        out = batch.decode(torch.tensor([tokens[0][-1], tokens[1][-1]]))
        for row in (0, 1):
            tokens[row].append(int(out[row].argmax()))
            logits[row].append(out[row])
    batch.close()
    for row, (ids, given) in enumerate([(plain, None), (pictured, arguments)]):
        theirs = hf.generate(input_ids=torch.tensor([ids]), max_new_tokens=new, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, eos_token_id=None,
                             **({} if given is None else dict(mm_token_type_ids=(torch.tensor([ids]) == IMAGE).int(),
                                                              **given)))
        assert theirs.sequences[0, len(ids):].tolist() == tokens[row]
        assert (torch.stack(logits[row]) - torch.cat(theirs.logits)).abs().max() <= 1e-4


def test_processor_names_and_refusals(checkpoint, images):
    """The processor's torchvision class reads the same config; a LLaVA-style image processor (fixed-size
    pixel_values, no grid) for a Qwen tower refused before anything runs."""
    from llmarch.vision.preprocess import processor_for

    fast = processor_for({"image_processor_type": "Qwen2VLImageProcessorFast", **PIXELS})([read_image(images[0])])
    assert fast["image_grid_thw"].tolist() == [[1, 6, 10]]
    path, _, _ = checkpoint
    model, tok = llmarch.load(path), load_tokenizer(path)
    tok.side_files = {**tok.side_files, "preprocessor_config.json": json.dumps(
        {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 8},
         "crop_size": {"height": 8, "width": 8}}).encode()}
    with pytest.raises(LlmarchError, match="without image_grid_thw; the tower reads"):
        image_request(model, tok, PROMPT, [read_image(images[0])])
