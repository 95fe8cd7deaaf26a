"""SmolVLM, Idefics3 and Idefics2 images in `llmarch chat` and the server (vision/prompts.py chat_request) against
transformers: the conversation's ids and pixel_values are Idefics3Processor's (Idefics2Processor's) on its
apply_chat_template text (the checkpoints' templates, Idefics3's writing its BOS itself, the others not), and the reply
transformers' greedy continuation of them;
the server's image_url parts answer the same. SmolVLMProcessor lays images out with Idefics3Processor's code, but needs
torchvision and num2words for its video processor, which are not here: Idefics3Processor over SmolVLM's image
processor stands in for it. Tiny random checkpoints whose images split into tiles (4 features a tile)."""
import base64

import numpy as np
import pytest
import torch

import llmarch
from conftest import saved_with_processor, trained_bpe
from llmarch.data.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
Image = pytest.importorskip("PIL.Image")

SPECIAL = ["<unk>", "<s>", "</s>", "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
           *(f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4))]
SPLIT = dict(size={"longest_edge": 40}, max_image_size={"longest_edge": 16})
TEXT = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=16,
             patch_size=4)
# the checkpoints' chat templates (HuggingFaceM4/Idefics3-8B-Llama3's, SmolVLM's, idefics2-8b's), <s> for Llama 3's
# BOS in the first
TEMPLATE = ("{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
            "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == "
            "'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
            "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
# case: (class prefix, chat template, image processor arguments, processor class, its image_seq_len, config)
CASES = {
    "idefics3": ("Idefics3", "<s>" + TEMPLATE, SPLIT, "Idefics3Processor", 4,
                 dict(text_config=TEXT, vision_config=TOWER, scale_factor=2)),
    "smolvlm": ("SmolVLM", "<|im_start|>" + TEMPLATE, SPLIT, "Idefics3Processor", 4,
                dict(text_config=TEXT, vision_config=TOWER, scale_factor=2)),
    "idefics2": ("Idefics2", TEMPLATE, dict(size={"shortest_edge": 8, "longest_edge": 22}, do_image_splitting=True),
                 "Idefics2Processor", 3, dict(
                     text_config=dict(TEXT, model_type="mistral", sliding_window=64), vision_config=TOWER,
                     perceiver_config=dict(hidden_size=32, resampler_n_latents=3, resampler_depth=2,
                                           resampler_n_heads=4, resampler_head_dim=6, num_key_value_heads=2))),
}
QUESTION = "what is in the picture?"


def tokenizer(template: str):
    """A small byte-level BPE with Idefics3's image tokens, BOS added in front of every encoding (as LLaMA's)."""
    from tokenizers import processors

    tk = trained_bpe(SPECIAL, "User: what is in the picture?\nAssistant: a cat on a mat.", vocab_size=200)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", chat_template=template)


@pytest.fixture(scope="module", params=sorted(CASES))
def checkpoint(request, tmp_path_factory):
    """(path, transformers model, its processor over the checkpoint's image processor and tokenizer)."""
    name, template, split, kind, per, config = CASES[request.param]
    tok = tokenizer(template)
    images = getattr(transformers, name + "ImageProcessorPil")(**split)

    class Layout(getattr(transformers, kind)):  # SmolVLM's image processor beside Idefics3's layout
        def check_argument_for_proper_class(self, argument_name, argument):
            return None

    processor = Layout(image_processor=images, tokenizer=tok, image_seq_len=per, chat_template=template)
    torch.manual_seed(0)
    config = dict(config, text_config=dict(config["text_config"], vocab_size=len(tok)))
    hf = getattr(transformers, name + "ForConditionalGeneration")(getattr(transformers, name + "Config")(
        **config, image_token_id=tok.convert_tokens_to_ids("<image>")))
    with torch.no_grad():  # the tower's and connector's matrices drawn N(0, 0.1), so that the image moves the logits
        for key, p in hf.named_parameters():
            if key.startswith(("model.vision_model.", "model.connector.")) and p.dim() > 1:
                p.normal_(0, 0.1)
    path = tmp_path_factory.mktemp(request.param)
    return path, saved_with_processor(hf, path, tok.eos_token_id, tok, images), processor


def pictures(root):
    """Two image files: RGB wider than high (3 x 1 tiles and the global image), RGBA higher than wide."""
    rng, paths = np.random.default_rng(0), []
    for k, (shape, mode) in enumerate([((23, 37, 3), "RGB"), ((50, 13, 4), "RGBA")]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / f"{k}.png")
        paths.append(root / f"{k}.png")
    return paths


def reference(hf, processor, files):
    """(the processor's inputs for one user turn of the images and the question, transformers' greedy reply)."""
    from llmarch.vision.image_files import read_image

    messages = [{"role": "user", "content": [{"type": "image"} for _ in files] + [{"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    add = not text.startswith("<s>")  # as processor.apply_chat_template tokenizes it
    inputs = processor(text=[text], images=[[read_image(f) for f in files]], return_tensors="pt",
                       add_special_tokens=add)
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    return inputs, processor.decode(new, skip_special_tokens=True)


def test_terminal_chat_with_images(checkpoint, tmp_path):
    """/image twice then a question: the prompt's ids and pixel_values are the processor's, the reply transformers'."""
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, processor = checkpoint
    files = pictures(tmp_path)
    inputs, expected = reference(hf, processor, files)
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {files[0]}", f"/image {files[1]}", QUESTION, "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == expected
    conversation.history.pop()  # the prompt that was answered
    ids, arguments = conversation.prompt()
    assert ids == inputs["input_ids"][0].tolist()
    for name in ("pixel_values", "pixel_attention_mask"):
        if name in arguments:  # Idefics2's (images padded to the largest); Idefics3's tiles are all whole
            assert torch.equal(arguments[name], inputs[name][0])
    assert "pixel_values" in arguments


def test_server_chat_with_images(checkpoint, tmp_path):
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app

    path, hf, processor = checkpoint
    files = pictures(tmp_path)
    inputs, expected = reference(hf, processor, files)
    parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(
        f.read_bytes()).decode()}} for f in files]
    asked = [{"role": "user", "content": parts + [{"type": "text", "text": QUESTION}]}]
    server = Server(llmarch.load(path), load_tokenizer(path), "m", max_batch=2)
    with TestClient(build_app(server)) as client:
        reply = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
    assert reply["choices"][0]["message"]["content"] == expected
    assert reply["usage"]["prompt_tokens"] == inputs["input_ids"].shape[1]
