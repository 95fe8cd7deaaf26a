"""GLM-4.1V images from files (vision/preprocess.py's Glm4vImageProcessor entry, vision/prompts.py's GLM-4V layout)
against transformers, on a tiny random Glm4vForConditionalGeneration it saved with a tokenizer holding GLM's special
tokens and its PIL image processor: pixel_values, image_grid_thw and input_ids equal to Glm4vProcessor's (and
Glm46VProcessor's, which differs only in videos); `llmarch generate --image` prints transformers' greedy continuation;
`llmarch chat`'s /image and the server's image_url parts answer as transformers does (test_qwen_vl_images' checks on
this checkpoint)."""
import pytest

from llmarch.vision.prompts import PROMPTS
import test_qwen_vl_images as qwen_images
from test_qwen_vl_images import assert_cli_generates, assert_processors_agree, processor, random_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# GLM-4V's special tokens, added to Qwen's test tokenizer
SPECIAL = ["[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|begin_of_image|>", "<|end_of_image|>", "<|image|>",
           "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"]
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
images = qwen_images.images  # the image files fixture: RGB, RGBA and JPEG of odd sizes
# `llmarch chat`'s /image and the server's image_url part against transformers' greedy reply, on this checkpoint
test_terminal_chat_with_an_image = qwen_images.test_terminal_chat_with_an_image
test_server_chat_with_an_image = qwen_images.test_server_chat_with_an_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(path, transformers model, Glm4vProcessor) of a tiny random checkpoint saved by transformers beside its
    tokenizer and image processor."""
    tok = qwen_images.tokenizer()
    tok.add_special_tokens({"additional_special_tokens": SPECIAL})
    tok.eos_token, tok.chat_template = "<|user|>", TEMPLATE
    hf = random_model("Glm4v", text_config=dict(TEXT, vocab_size=len(tok)), vision_config=VISION,
                      image_token_id=tok.convert_tokens_to_ids("<|image|>"))
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
    """Glm4vProcessor's and Glm46VProcessor's ids, pixel_values and image_grid_thw."""
    image = checkpoint[1].config.image_token_id
    assert_processors_agree(checkpoint, images, ("<|begin_of_image|>", "<|image|>", "<|end_of_image|>"), image,
                            ("Glm4vProcessor", "Glm46VProcessor"))
    assert {"glm4v", "glm4v_moe", "glm46v"} <= set(PROMPTS.names())


def test_cli_generate_with_images(checkpoint, images, capsys):
    assert_cli_generates(checkpoint, images, capsys, "<|begin_of_image|><|image|><|end_of_image|>")
