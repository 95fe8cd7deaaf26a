"""Gemma 4 with images (interop/gemma4_vision.py, vision/gemma4_tower.py, vision/gemma4_images.py) against
transformers' Gemma4ForConditionalGeneration, through files (fp32, max |dlogit| <= 1e-4). Two tiny random checkpoints,
each as published ones switch their parts: 'large' (26B/31B-like: standardized features, clipped linears, images
attending both ways on sliding layers only, use_bidirectional_attention 'vision', a window of 3 over images of 15 to
60 tokens), 'small' (E2B/E4B-like: per-layer inputs, which look the image token up as padding; clipped linears; 3 x 3
pooling; images read causally). Norm gains perturbed, the tower's matrices drawn N(0, 0.1) (queries' and keys'
N(0, 0.3)), clip bounds tight enough to bite, the standardizing bias and scale drawn. Checked: pixel_values and
positions equal to Gemma4ImageProcessorPil's, the pooled features, logits on a left-padded batch with one image in a
row and two of different sizes in the other (the processor's input_ids and mm_token_type_ids), greedy tokens equal to
its generate, cached decoding after the image prompt equal to the whole forward, the to_hf round trip (a clip bound
stored as +inf too), and `llmarch generate --image`, `llmarch chat`'s /image and the server's image_url parts giving
transformers' greedy text."""
import json

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES, from_hf
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from test_gemma3_vision import assert_cli_generates, batch as gemma3_batch  # noqa: E402
from test_llava_next import assert_cached_after_image_prefill  # noqa: E402
from test_vision_images import call, tokenizer  # noqa: E402

S, F = "sliding_attention", "full_attention"
SPECIAL = {"boi_token": "<|image>", "eoi_token": "<image|>", "image_token": "<|image|>", "boa_token": "<|audio>",
           "eoa_token": "<audio|>", "audio_token": "<|audio|>"}
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
            global_head_dim=16, intermediate_size=64, sliding_window=3, layer_types=[S, F],
            final_logit_softcapping=30.0)
VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
              head_dim=8, patch_size=2, position_embedding_size=64, use_clipped_linears=True)
# a chat template that writes the image token for each image part, as Gemma 4's does
TEMPLATE = ("{% for m in messages %}{{ m['role'] + ': ' }}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
            "{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<|image|>' }}{% else %}{{ c['text'] }}"
            "{% endif %}{% endfor %}{% endif %}{{ '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'model: ' }}"
            "{% endif %}")
VARIANTS = {"large": (dict(TEXT, hidden_size_per_layer_input=0, use_bidirectional_attention="vision"),
                      dict(VISION, pooling_kernel_size=2, standardize=True)),
            "small": (dict(TEXT, hidden_size_per_layer_input=4), dict(VISION, pooling_kernel_size=3))}


class Processor(transformers.Gemma4Processor):
    """Gemma4Processor without its video processor, which needs torchvision (not installed here)."""

    def check_argument_for_proper_class(self, name, arg):
        return None if name == "video_processor" else super().check_argument_for_proper_class(name, arg)


def saved_gemma4(path, text: dict, vision: dict):
    """A tiny random Gemma4ForConditionalGeneration and its processor's parts saved at `path`: (model, processor)."""
    tok = tokenizer(["<unk>", "<s>", "</s>", *SPECIAL.values()])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, bos_token="<s>", eos_token="</s>",
                                               unk_token="<unk>", pad_token="<unk>", extra_special_tokens=SPECIAL)
    tok.chat_template = TEMPLATE
    images = transformers.Gemma4ImageProcessorPil(patch_size=2, max_soft_tokens=70,
                                                  pooling_kernel_size=vision["pooling_kernel_size"])
    from transformers.video_processing_utils import BaseVideoProcessor
    processor = Processor(feature_extractor=transformers.Gemma4AudioFeatureExtractor(), image_processor=images,
                          tokenizer=tok, video_processor=BaseVideoProcessor(), chat_template=TEMPLATE)
    torch.manual_seed(0)
    config = transformers.Gemma4Config(text_config=dict(text, vocab_size=len(tok), pad_token_id=0),
                                       vision_config=vision, image_token_id=tok.image_token_id)
    hf = transformers.Gemma4ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            elif "vision" in name:
                p.normal_(0, 0.3 if any(k in name for k in ("q_proj", "k_proj")) else 0.1)
            elif name.endswith("embed_tokens.weight"):
                p.mul_(20.0)  # logits far from 0 under the final cap, so a small error shows
        for name, b in hf.named_buffers():
            bound = {"input_min": -0.6, "input_max": 0.5, "output_min": -0.9, "output_max": 0.8}
            if name.endswith("layers.1.mlp.up_proj.output_max"):
                continue  # +inf, as transformers stores a bound that does not bite
            if name.rsplit(".", 1)[-1] in bound:
                b.fill_(bound[name.rsplit(".", 1)[-1]])
            elif name.endswith(("std_bias", "layer_scalar")):
                b.copy_(torch.randn_like(b) * 0.5 + name.endswith("layer_scalar"))
            elif name.endswith("std_scale"):
                b.uniform_(0.5, 1.5)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    images.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    return hf, processor


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def gemma4(request, tmp_path_factory):
    """(folder, transformers model, processor, paths of three images)."""
    path = tmp_path_factory.mktemp("gemma4_" + request.param)
    hf, processor = saved_gemma4(path, *VARIANTS[request.param])
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate([(23, 37), (30, 17), (12, 64)]):  # the last one's height rounds down to one row of 6
        images.append(path / f"image{i}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images[-1])
    return path, hf, processor, images


def batch(processor, images):
    """A left-padded batch: one image in the first row, two of different sizes in the second."""
    return gemma3_batch(processor, images, "<|image|>")


def test_pixels_positions_and_features_are_transformers(gemma4):
    path, hf, processor, images = gemma4
    ours, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(p) for p in images]
    ids, arguments = image_request(ours, tok, "<|image|> and <|image|> and <|image|> a cat", pil)
    want = processor(images=[pil], text=["<|image|> and <|image|> and <|image|> a cat"], return_tensors="pt")
    assert ids == want["input_ids"][0].tolist()
    assert torch.equal(arguments["pixel_values"], want["pixel_values"])  # equal, not only close
    positions = want["image_position_ids"]
    for i, (h, w) in enumerate(arguments["image_sizes"].tolist()):  # (column, row) of each real patch, row-major
        real = positions[i][(positions[i] >= 0).all(-1)]
        assert torch.equal(real, torch.stack(torch.meshgrid(torch.arange(w // 2), torch.arange(h // 2),
                                                            indexing="xy"), -1).reshape(-1, 2))
        assert (positions[i][len(real):] == -1).all()
    with torch.no_grad():
        theirs = torch.cat(hf.model.get_image_features(want["pixel_values"], positions).pooler_output)
        mine = ours.vision.features(arguments["pixel_values"], arguments["image_sizes"])
    assert mine.shape == theirs.shape and (mine - theirs).abs().max() <= 1e-4


def logits(model, inputs, sizes, **changes):
    """Our logits on the processor's batch, the model's config changed by `changes` where given."""
    if changes:
        other = llmarch.build(model.config.replace(**changes)).eval()
        other.load_state_dict(model.state_dict())
        model = other
    return model(inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=inputs["pixel_values"],
                 image_sizes=sizes).logits


def image_sizes(inputs) -> torch.Tensor:
    """(N, 2) each image's resized (height, width), from the processor's image_position_ids (patches of 2)."""
    pos = inputs["image_position_ids"]
    return torch.stack([(pos[..., 1].amax(-1) + 1) * 2, (pos[..., 0].amax(-1) + 1) * 2], -1)


def test_logits_with_one_and_two_images(gemma4):
    path, hf, processor, images = gemma4
    ours = from_hf(path).eval()
    inputs = batch(processor, images)
    real, sizes = inputs["attention_mask"].bool(), image_sizes(inputs)
    assert (~real).any() and inputs["mm_token_type_ids"].equal((inputs["input_ids"] == ours.vision.v.image_token_id)
                                                               .long())
    with torch.no_grad():
        want = hf(**inputs).logits
        assert (logits(ours, inputs, sizes) - want)[real].abs().max() <= 1e-4
        # what this checks moves the logits: the tower's rotation, and where the variant has them, the image blocks
        # (images causal, or both ways on the full layers too)
        assert (logits(ours, inputs, sizes, vision={**ours.config.vision, "rope_theta": 10.0}) - want)[real].abs() \
            .max() > 1e-2
        if ours.config.bidirectional_token is not None:
            for changes in (dict(bidirectional_token=None, bidirectional_sliding=False),
                            dict(bidirectional_sliding=False)):
                assert (logits(ours, inputs, sizes, **changes) - want)[real].abs().max() > 1e-2


def test_generation_cached_decoding_and_round_trip(gemma4, tmp_path):
    path, hf, processor, images = gemma4
    ours = from_hf(path).eval()
    inputs = batch(processor, images)
    ids, mask, pixels, sizes = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], \
        image_sizes(inputs)
    want = hf.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert llmarch.generate(ours, ids, 6, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).equal(want)
    full = torch.cat([mask, torch.ones(2, want.shape[1] - ids.shape[1], dtype=mask.dtype)], 1)
    assert_cached_after_image_prefill(ours, want, full, pixels, sizes)  # its last 3 tokens from the cache
    llmarch.to_hf(ours, tmp_path / "out")
    back = transformers.Gemma4ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (back(**inputs).logits - hf(**inputs).logits)[mask.bool()].abs().max() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


@pytest.mark.parametrize("gemma4", ["large"], indirect=True)
def test_the_cli_generates_transformers_text(gemma4, capsys):
    path, hf, processor, images = gemma4
    assert_cli_generates(capsys, path, hf, processor, images[2], "<|image|> the cat")
    code, out, _ = call(capsys, "info", path)
    assert code == 0 and "vision: 2-layer Gemma 4 ViT, width 32" in out and "2x2 pooled" in out


def chat_reply(processor, hf, image) -> str:
    """transformers' greedy 5 tokens after its processor's chat prompt about `image`, decoded."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
    inputs = processor(images=[read_image(image)], return_tensors="pt",
                       text=processor.apply_chat_template(messages, add_generation_prompt=True))
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    return processor.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("gemma4", ["large"], indirect=True)
def test_terminal_and_server_chat_with_an_image(gemma4):
    """`llmarch chat`'s /image and the server's image_url part: transformers' reply to its processor's chat prompt."""
    import base64

    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, processor, images = gemma4
    want = chat_reply(processor, hf, images[1])
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {images[1]}", "what is in the picture?", "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == want
    url = "data:image/png;base64," + base64.b64encode(images[1].read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": "what is in the picture?"}]}]
    with TestClient(build_app(Server(llmarch.load(path), load_tokenizer(path), "gemma4", max_batch=2))) as client:
        reply = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
    assert reply["choices"][0]["message"]["content"] == want


def test_unsupported_configs_and_inputs_are_refused(gemma4):
    path = gemma4[0]
    ours = from_hf(path)
    cfg = ours.config
    with pytest.raises(LlmarchError, match="hf_model_type='gemma4_text'"):
        FAMILIES["gemma4"].from_config(cfg.replace(vision=None, bidirectional_token=None, bidirectional_sliding=False,
                                                   placeholder_ids=None))
    with pytest.raises(LlmarchError, match="head_dim 6 must be a multiple of 4"):
        cfg.replace(vision={**cfg.vision, "head_dim": 6})
    with pytest.raises(LlmarchError, match="rope_type 'default2' is not supported"):
        FAMILIES["gemma4"].to_config({"model_type": "gemma4", "vision_config": {"rope_parameters": {
            "rope_type": "default2"}}})
    with pytest.raises(LlmarchError, match="image_sizes"):
        ours(torch.tensor([[1, 2]]), pixel_values=torch.zeros(1, 4, 12))
    with pytest.raises(LlmarchError, match="multiples of patch_size x pooling"):
        ours(torch.tensor([[1, 2]]), pixel_values=torch.zeros(1, 4, 12), image_sizes=torch.tensor([[5, 4]]))
