"""Qwen2-VL's and Qwen2.5-VL's mmproj files (interop/gguf_mmproj_qwen.py) against transformers and llama.cpp: tiny
seeded Qwen2VLForConditionalGeneration and Qwen2_5_VLForConditionalGeneration (a 3-block tower 32 wide, as llama.cpp's
name table maps the merger's mlp.2 only below the block count, beside a text model 64 wide; Qwen2.5-VL's third block
full-attention, its window llama.cpp's 112 pixels, which a 128 x 32 image of 4-pixel patches splits in two), 1-D
parameters perturbed, the tower's matrices drawn N(0, 0.1); the mmproj written by llama.cpp's own converter (qkv
split into q, k, v, the Conv3d patch kernel into two Conv2d), the text model by to_gguf as qwen2 and rewritten as
llama.cpp's qwen2vl (its M-RoPE sections; RMSNorm epsilon 1e-12, which llama.cpp's qwen2vl ignores:
test_gguf_more_archs.py). The model read equals from_hf's (vision config; logits with an image transformers' within
1e-4); llama.cpp's image embeddings (an image whose size needs no resize) ours; its greedy tokens after the image ours,
and its logits after them (the image tokens' M-RoPE positions, each its (row, column), the text after them past the
larger side); cached decoding the whole forward's; a text model without M-RoPE refused in one line."""
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_mmproj_out import to_mmproj
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.interop.gguf_writer import to_gguf
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request
from llmarch.vision.qwen_config import qwen_vision_config

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
Image = pytest.importorskip("PIL.Image")

from test_gguf_mmproj import (  # noqa: E402
    assert_bad_mmproj_refused, assert_written_as_converted, chunk_embeddings, convert_mmproj, ids_of, reference)
from test_cli_trust import call  # noqa: E402
from test_qwen_vl_images import random_model  # noqa: E402
from test_vision_images import tokenizer  # noqa: E402

SECTION = [2, 3, 3]
TEXT = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            rms_norm_eps=1e-12, bos_token_id=1, eos_token_id=2,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=SECTION))
VISION = dict(depth=3, num_heads=2, patch_size=4, temporal_patch_size=2, spatial_merge_size=2)
CASES = {  # model_type: (class prefix, vision config)
    "qwen2_vl": ("Qwen2VL", dict(VISION, embed_dim=32, hidden_size=64, mlp_ratio=2)),
    "qwen2_5_vl": ("Qwen2_5_VL", dict(VISION, hidden_size=32, out_hidden_size=64, intermediate_size=40,
                                      window_size=112, fullatt_block_indexes=[2])),
}


def as_qwen2vl(src, dst, arch: str = "qwen2vl", sections: list = SECTION, deepstack: int | None = None) -> None:
    """A qwen2 (qwen3) GGUF file written again as llama.cpp's qwen2vl (qwen3vl: Qwen2VLModel's, Qwen3VLTextModel's
    converter): its keys renamed, the M-RoPE sections added (padded to four) and Qwen3-VL's count of DeepStack
    layers, its tensors' bytes as they are (quantized ones too)."""
    T = gguf.GGUFValueType
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), arch)
    for key, f in r.fields.items():
        if not key.startswith("GGUF.") and key != "general.architecture":
            w.add_key_value(re.sub(r"^qwen[23]\.", f"{arch}.", key), f.contents(), f.types[0],
                            sub_type=f.types[-1] if f.types[0] == T.ARRAY else None)
    w.add_key_value(f"{arch}.rope.dimension_sections", sections + [0], T.ARRAY, sub_type=T.INT32)
    if deepstack is not None:
        w.add_key_value(f"{arch}.n_deepstack_layers", deepstack, T.UINT32)
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module", params=sorted(CASES))
def files(request, tmp_path_factory):
    """(text model .gguf, mmproj .gguf, transformers model, llmarch's from_hf model, image path)."""
    from safetensors.torch import load_file, save_file

    prefix, vision = CASES[request.param]
    path = tmp_path_factory.mktemp(request.param)
    tok = tokenizer(["<unk>", "<s>", "</s>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>"])
    tok.save_pretrained(path / "hf")
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>")}
    hf = random_model(prefix, text_config=dict(TEXT, vocab_size=len(tok)), vision_config=vision,
                      image_token_id=ids["<|image_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                      vision_end_token_id=ids["<|vision_end|>"]).eval()
    hf.save_pretrained(path / "hf")
    (path / "hf" / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    weights = path / "hf" / "model.safetensors"  # the published layout (visual.*), which llama.cpp's converter reads
    save_file({k.removeprefix("model.") if k.startswith("model.visual.") else k: v
               for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    transformers.Qwen2VLImageProcessor(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=8 * 64,
                                       max_pixels=4096 * 64, image_mean=[0.5] * 3,
                                       image_std=[0.5] * 3).save_pretrained(path / "hf")
    convert_mmproj(path / "hf", path / "mmproj.gguf")
    ours = llmarch.from_hf(path / "hf").eval()
    text = llmarch.build(ours.config.replace(vision=None, hf_model_type="qwen2", mrope_section=None))
    text.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("vision.")})
    to_gguf(text, path / "qwen2.gguf", "f32", checkpoint_tokenizer(path / "hf"))
    as_qwen2vl(path / "qwen2.gguf", path / "text.gguf")
    image = path / "image.png"  # 128 x 32: 16 x 4 merged patches, within clip.cpp's bounds, no resize
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 128, 3), dtype=np.uint8)).save(image)
    return path / "text.gguf", path / "mmproj.gguf", hf, ours, image


def image_logits_gap(model, files) -> float:
    """The largest difference of the logits with the image between `model` (read from the files) and
    transformers'."""
    text, mmproj, hf, _, image = files
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    ids, arguments = image_request(model, tok, "the cat <|vision_start|><|image_pad|><|vision_end|> sat",
                                   [read_image(image)])
    ids = torch.tensor([ids])
    with torch.no_grad():
        got = model(ids, **arguments).logits
        ref = hf(input_ids=ids, pixel_values=arguments["pixel_values"], image_grid_thw=arguments["image_grid_thw"],
                 mm_token_type_ids=(ids == model.config.vision["image_token_id"]).int()).logits
    return float((got - ref).abs().max())


def test_reads_as_from_hf_with_transformers_logits(files):
    text, mmproj, hf, want, image = files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    # the same tower (llama.cpp's files run no videos: no video token, Qwen2.5-VL's time steps left out)
    assert qwen_vision_config(model.config.vision) == replace(qwen_vision_config(want.config.vision),
                                                              video_token_id=None, tokens_per_second=None)
    assert model.config.mrope_section == SECTION
    diff = image_logits_gap(model, files)
    assert diff <= 1e-4, diff  # seen: 3e-7


def test_image_embeddings_and_greedy_tokens_are_llama_cpps(files):
    text, mmproj, _, _, image = files
    parts, theirs, want, last = reference(files[:2] + (None, image), "the cat <__media__> sat on")
    model = llmarch.from_gguf(text, mmproj=mmproj)
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    _, arguments = image_request(model, tok, "<|image_pad|>", [read_image(image)])
    with torch.no_grad():
        ours, _ = model.vision.tower(arguments["pixel_values"], arguments["image_grid_thw"])
    diff = (ours - theirs).abs().max()
    # seen: 1.8e-3 of 3.7 (Qwen2-VL), 1.9e-3 of 4.4 (Qwen2.5-VL): ggml's CPU kernels, whose GELU is a float16 table
    assert diff <= 1e-3 * theirs.abs().max(), (diff, theirs.abs().max())
    ids = ids_of(parts, model.config.vision["image_token_id"], ours.shape[0])
    got = llmarch.generate(model, ids, 6, temperature=0.0, **arguments)
    assert got[0, ids.shape[1]:].tolist() == want
    with torch.no_grad():  # cached decoding (generate's) is the whole forward's argmax
        logits = model(got, **arguments).logits[0]
    assert logits[ids.shape[1] - 1:-1].argmax(-1).tolist() == want
    # the logits 6 tokens past the image: its tokens' M-RoPE positions and the text's after them are llama.cpp's
    diff = (logits[-1] - last).abs().max()
    # seen: 3.1e-5 (Qwen2-VL), 2.5e-5 (Qwen2.5-VL) of ~0.5; with the M-RoPE sections reversed 2.0e-4, 1.1e-4
    assert diff <= 6e-5, diff


def test_text_model_without_mrope_is_refused_in_one_line(files, capsys):
    text, mmproj, _, _, image = files
    plain = text.parent / "qwen2.gguf"
    with pytest.raises(LlmarchError, match="needs a text model with M-RoPE"):
        llmarch.from_gguf(plain, mmproj=mmproj)
    code, _, stderr = call(capsys, "generate", "--checkpoint", plain, "--mmproj", mmproj, "--image", image,
                           "--prompt", "x", "--max-new-tokens", "1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "M-RoPE" in stderr
    assert json.loads(checkpoint_tokenizer(text, mmproj=mmproj).side_files["preprocessor_config.json"])[
        "min_pixels"] == 8 * 64


def test_to_mmproj_writes_the_converters_mmproj(files, tmp_path, capsys):
    """to_mmproj: the converter's mmproj (qkv and the patch kernel split again), read by mtmd and llmarch as that
    file is. `convert --mmproj-out` refuses in one line: its text model is llama.cpp's qwen2vl, which llmarch reads
    but does not write."""
    text, _, _, _, image = files
    folder = text.parent / "hf"
    to_mmproj(llmarch.from_hf(folder), tmp_path / "ours.gguf", checkpoint_tokenizer(folder))
    assert_written_as_converted(files, tmp_path / "ours.gguf")
    code, _, err = call(capsys, "convert", "--to-gguf", folder, "--out", tmp_path / "t.gguf", "--mmproj-out",
                        tmp_path / "m.gguf")
    assert code == 2 and "_vl_text" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "t.gguf").exists()


@pytest.mark.parametrize("kind, method", [("q8_0", "int8"), ("q4_0", "int4")])
def test_quantized_text_model_stays_on_the_kernels(files, kind, method, tmp_path):
    """A Q8_0 / Q4_0 text model read with an mmproj keeps its matrices on llmarch's int8 / int4 kernels (the tower
    in float), its greedy tokens with the image those of the same file read dequantized."""
    from torch import nn

    from llmarch.quant.linear import Int4Linear, Int8Linear

    text, mmproj, _, _, image = files
    if "qwen2_5" in str(text):
        pytest.skip("one tower is enough")
    to_gguf(llmarch.from_gguf(text.parent / "qwen2.gguf"), tmp_path / "q.gguf", kind,
            checkpoint_tokenizer(text.parent / "hf"))
    as_qwen2vl(tmp_path / "q.gguf", tmp_path / "text.gguf")
    model = llmarch.from_gguf(tmp_path / "text.gguf", mmproj=mmproj, kernels=True)
    plain = llmarch.from_gguf(tmp_path / "text.gguf", mmproj=mmproj)
    assert model.quantization.method == method and getattr(plain, "quantization", None) is None
    quantized = (Int8Linear, Int4Linear)
    assert isinstance(model.blocks[0].attn.o_proj, quantized)
    assert not any(isinstance(m, quantized) for m in model.vision.modules())
    assert isinstance(model.vision.tower.merger.fc2, nn.Linear)
    tok = checkpoint_tokenizer(tmp_path / "text.gguf", mmproj=mmproj)
    ids, arguments = image_request(model, tok, "the cat <|vision_start|><|image_pad|><|vision_end|> sat",
                                   [read_image(image)])
    ids = torch.tensor([ids])
    assert torch.equal(llmarch.generate(model, ids, 4, temperature=0.0, **arguments),
                       llmarch.generate(plain, ids, 4, temperature=0.0, **arguments))


QWEN3_SECTION = [3, 3, 2]  # interleaved: each of the 8 pairs below 3 x its section, so llama.cpp rotates them all
QWEN3_TEXT = dict(TEXT, head_dim=16, rms_norm_eps=1e-6,
                  rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=QWEN3_SECTION,
                                       mrope_interleaved=True))
QWEN3_VISION = dict(VISION, hidden_size=32, intermediate_size=48, out_hidden_size=64, num_position_embeddings=16,
                    deepstack_visual_indexes=[1, 2])


@pytest.fixture(scope="module")
def qwen3_files(tmp_path_factory):
    """Qwen3-VL's (a 3-block tower 32 wide, a 4 x 4 grid of learned positions, DeepStack after blocks 1 and 2; a
    Qwen3 text model 64 wide): text model .gguf (qwen3vl), mmproj .gguf, transformers model, image path."""
    path = tmp_path_factory.mktemp("qwen3_vl")
    tok = tokenizer(["<unk>", "<s>", "</s>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>"])
    tok.save_pretrained(path / "hf")
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>")}
    hf = random_model("Qwen3VL", text_config=dict(QWEN3_TEXT, vocab_size=len(tok)), vision_config=QWEN3_VISION,
                      image_token_id=ids["<|image_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                      vision_end_token_id=ids["<|vision_end|>"]).eval()
    hf.save_pretrained(path / "hf")
    (path / "hf" / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    transformers.Qwen2VLImageProcessor(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=8 * 64,
                                       max_pixels=4096 * 64, image_mean=[0.5] * 3,
                                       image_std=[0.5] * 3).save_pretrained(path / "hf")
    convert_mmproj(path / "hf", path / "mmproj.gguf")
    ours = llmarch.from_hf(path / "hf").eval()
    text = llmarch.build(ours.config.replace(vision=None, hf_model_type="qwen3", mrope_section=None,
                                             mrope_interleaved=False))
    text.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("vision.")})
    to_gguf(text, path / "qwen3.gguf", "f32", checkpoint_tokenizer(path / "hf"))
    as_qwen2vl(path / "qwen3.gguf", path / "text.gguf", "qwen3vl", QWEN3_SECTION, 2)
    image = path / "image.png"  # 32 x 24: 4 x 3 merged patches
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(image)
    return path / "text.gguf", path / "mmproj.gguf", hf, ours, image


def test_qwen3_vl_reads_as_from_hf_with_transformers_logits(qwen3_files):
    """The tower with its grid positions and DeepStack mergers (the converter's own names: v.deepstack.N by block,
    the merger as v.post_ln, mm.0, mm.2) and the interleaved M-RoPE sections read as from_hf reads the checkpoint:
    the logits with an image (DeepStack's features added after the first text blocks) transformers'."""
    text, mmproj, hf, want, image = qwen3_files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    assert qwen_vision_config(model.config.vision) == replace(qwen_vision_config(want.config.vision),
                                                              video_token_id=None, frames_apart=False)
    assert (model.config.mrope_section, model.config.mrope_interleaved) == (QWEN3_SECTION, True)
    diff = image_logits_gap(model, qwen3_files)
    assert diff <= 1e-4, diff  # seen: 2.5e-7; 0.22 with the DeepStack mergers' blocks swapped


def test_qwen3_vl_embeddings_are_llama_cpps(qwen3_files):
    """mtmd's embeddings of the image (each token's merged features, then each DeepStack merger's, side by side) ours.
    Its greedy tokens are not compared: llama-cpp-python 0.3.36 aborts decoding a Qwen3-VL image batch (ggml_add's
    repeat assertion, the DeepStack add of its qwen3vl graph) on this tiny model."""
    pytest.importorskip("llama_cpp.mtmd_cpp", reason="llama-cpp-python (with mtmd) is not installed")
    text, mmproj, _, _, image = qwen3_files
    (theirs,) = chunk_embeddings(text, mmproj, image)
    model = llmarch.from_gguf(text, mmproj=mmproj)
    _, arguments = image_request(model, checkpoint_tokenizer(text, mmproj=mmproj), "<|image_pad|>",
                                 [read_image(image)])
    with torch.no_grad():
        ours, deepstack = model.vision.tower(arguments["pixel_values"], arguments["image_grid_thw"])
    ours = torch.cat([ours, *deepstack], dim=-1)
    diff = (ours - theirs).abs().max()
    # seen: 1.5e-3 of 3.0 (ggml's CPU kernels); 3.9 with the DeepStack mergers' blocks swapped
    assert ours.shape == theirs.shape == (12, 3 * 64) and diff <= 1e-3 * theirs.abs().max(), (diff, theirs.abs().max())


def test_bad_qwen3_vl_mmproj_is_one_line(qwen3_files, tmp_path, capsys):
    text, mmproj, _, _, image = qwen3_files
    assert_bad_mmproj_refused((text, mmproj, None, image), tmp_path, capsys,
                              dict(drop=("v.deepstack.2.fc1.weight",)), "missing tensor")


def test_to_mmproj_refuses_full_attention_blocks_llama_cpp_cannot_place(files, tmp_path):
    """llama.cpp's qwen2.5vl_merger places full-attention blocks every n_wa_pattern-th: a tower whose are not so spaced
    is refused in one line, nothing written."""
    text, _, _, _, _ = files
    if "qwen2_5" not in str(text):
        pytest.skip("Qwen2.5-VL's windows")
    folder = text.parent / "hf"
    model = llmarch.from_hf(folder)
    model.config = model.config.replace(vision=dict(model.config.vision, full_layers=[0, 2]))
    with pytest.raises(LlmarchError, match="evenly spaced, each n_wa_pattern-th"):
        to_mmproj(model, tmp_path / "m.gguf", checkpoint_tokenizer(folder))
    assert not (tmp_path / "m.gguf").exists()
