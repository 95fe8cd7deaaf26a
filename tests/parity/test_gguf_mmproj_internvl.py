"""InternVL's mmproj files (`internvl`, interop/gguf_mmproj_internvl.py) against transformers and llama.cpp: a tiny
seeded InternVLForConditionalGeneration (a 4-block tower 32 wide, as llama.cpp's name table maps the projector's
mlp1.3 only below the block count, beside a Qwen2 text model 48 wide; 1-D parameters perturbed), saved in the layout
llama.cpp's converter reads (transformers' own, Intern-S1's names: model.vision_tower.*, model.multi_modal_projector.*,
its vision_config naming InternVisionModel), the mmproj written by that converter (q, k, v apart, the projector as
mlp1.N), the text model by to_gguf. The model read equals from_hf's (vision config; logits with an image
transformers' within 1e-4); llama.cpp's image embeddings (an image of the tower's size, one tile; a two-tile image,
three chunks) ours; its greedy tokens after the image ours on its own ids, cached decoding the whole forward's; bad
files refused in one line."""
import json

import numpy as np
import pytest
import torch

import llmarch
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request


transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
Image = pytest.importorskip("PIL.Image")

from conftest import perturbed, saved_with_processor  # noqa: E402
from test_gguf_mmproj import (  # noqa: E402
    assert_bad_mmproj_refused, assert_cli_writes_the_converters_mmproj, assert_greedy, convert_mmproj,
    ids_of, logits_gap, mtmd, text_and_image, with_llama_cpp)
from test_vision_images import tokenizer  # noqa: E402

SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
         "video_token": "<video>"}
TEXT = dict(model_type="qwen2", hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4, image_size=16,
             patch_size=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(text model .gguf, mmproj .gguf, transformers model, image path)."""
    from safetensors.torch import load_file, save_file

    path = tmp_path_factory.mktemp("internvl-gguf")
    tok = tokenizer(SPECIAL, extra_special_tokens=NAMED)
    processor = transformers.GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, max_patches=4,
                                                      image_mean=[0.5] * 3, image_std=[0.5] * 3)
    torch.manual_seed(0)
    conf = transformers.InternVLConfig(text_config=dict(TEXT, vocab_size=len(tok)), vision_config=TOWER,
                                       image_token_id=tok.context_image_token_id)
    hf = saved_with_processor(perturbed(transformers.InternVLForConditionalGeneration(conf)), path / "hf",
                              tok.eos_token_id, tok, processor).eval()
    config = json.loads((path / "hf" / "config.json").read_text())
    config["vision_config"]["architectures"] = ["InternVisionModel"]  # the class llama.cpp's converter picks
    (path / "hf" / "config.json").write_text(json.dumps(config))
    weights = path / "hf" / "model.safetensors"
    save_file({"model." + k if k.startswith(("vision_tower.", "multi_modal_projector.")) else k: v
               for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    convert_mmproj(path / "hf", path / "mmproj.gguf")
    text, image = text_and_image(path, "qwen2")
    return text, path / "mmproj.gguf", hf, image


def test_reads_as_from_hf_with_transformers_logits(files):
    diff = logits_gap(files, "the cat <IMG_CONTEXT> sat")
    assert diff <= 1e-4, diff  # seen: 1.2e-7


def test_image_embeddings_and_greedy_tokens_are_llama_cpps(files):
    parts, theirs, want, model, arguments = with_llama_cpp(files, "<IMG_CONTEXT>")
    with torch.no_grad():
        ours = model.vision.projector(model.vision.tower(arguments["pixel_values"]))[0]
    diff = (ours - theirs).abs().max()
    # mtmd cuts a one-tile image into that tile alone (no overview): one chunk of 4 tokens
    assert theirs.shape == ours.shape == (4, 48)
    assert diff <= 5e-4 * theirs.abs().max(), (diff, theirs.abs().max())  # seen: 2.2e-5 of 0.33
    assert_greedy(model, ids_of(parts, model.config.vision["image_token_id"], ours.shape[0]), arguments, want)


def test_a_two_tile_image_is_cut_as_llama_cpp_cuts_it(files, tmp_path):
    """A 16 x 32 image: two tiles and the overview after them, in mtmd as in GotOcr2ImageProcessor's crop_to_patches;
    each of mtmd's three chunks' embeddings ours, its greedy tokens ours on its prompt."""
    text, mmproj, _, _ = files
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(wide)
    ref = mtmd((text, mmproj, None, wide), "the cat <__media__> sat on")
    try:
        parts = ref.parts()
        theirs = torch.stack([ref.embeddings(p) for p in parts if not isinstance(p, list)])
        want = ref.greedy(6)
    finally:
        ref.close()
    model = llmarch.from_gguf(text, mmproj=mmproj)
    _, arguments = image_request(model, checkpoint_tokenizer(text, mmproj=mmproj), "<IMG_CONTEXT>",
                                 [read_image(wide)])
    with torch.no_grad():
        ours = model.vision.projector(model.vision.tower(arguments["pixel_values"]))
    diff = (ours - theirs).abs().max()
    assert ours.shape == theirs.shape == (3, 4, 48) and diff <= 5e-4 * theirs.abs().max(), diff  # seen: 2.4e-5
    assert_greedy(model, ids_of(parts, model.config.vision["image_token_id"], 4), arguments, want)


@pytest.mark.parametrize("change, problem", [
    (dict(meta={"clip.vision.projector.scale_factor": 3}), "shuffle"),
    (dict(drop=("v.blk.0.ls1.weight",)), "missing tensor"),
])
def test_bad_internvl_mmproj_is_one_line(files, tmp_path, capsys, change, problem):
    assert_bad_mmproj_refused(files, tmp_path, capsys, change, problem)


def test_convert_writes_the_converters_mmproj(files, tmp_path, capsys):
    """`convert --to-gguf --mmproj-out`: the converter's mmproj (the projector as mlp1.N), read by mtmd and llmarch as
    that file is; the tile bounds written from the image processor's (max_patches 4), where the converter reads
    them only from the original layout's config."""
    assert_cli_writes_the_converters_mmproj(files, tmp_path, capsys, {"clip.vision.preproc_min_tiles": 1,
                                                                      "clip.vision.preproc_max_tiles": 4})
