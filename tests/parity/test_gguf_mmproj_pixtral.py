"""Mistral 3's mmproj files (`pixtral`, interop/gguf_mmproj_pixtral.py) against transformers and llama.cpp: a tiny
seeded Mistral3ForConditionalGeneration (a 3-block tower 32 wide, as llama.cpp's name table maps the projector's
linear_2 only below the block count, its queries and keys drawn N(0, 0.4) so a wrong RoPE order shows, beside a text
model 48 wide; 1-D parameters perturbed), the mmproj written by llama.cpp's own converter (q and k rows permuted), the
text model by to_gguf. The model read equals from_hf's (vision config; logits with an image transformers' within
1e-4); llama.cpp's image embeddings (a 16 x 12 image, 4 x 3 merged patches, which neither resizes) ours; its greedy
tokens after the image ours on its own ids (mtmd's image chunk, then [IMG_END]: no [IMG_BREAK], which the converter
does not write from a Hugging Face checkpoint), cached decoding the whole forward's; bad files refused in one line."""
import json

import pytest
import torch

import llmarch
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
Image = pytest.importorskip("PIL.Image")

from conftest import perturbed  # noqa: E402
from test_gguf_mmproj import (  # noqa: E402
    assert_bad_mmproj_refused, assert_cli_writes_the_converters_mmproj, assert_greedy, convert_mmproj,
    logits_gap, rewrite, text_and_image, with_llama_cpp)
from test_vision_images import tokenizer  # noqa: E402

TEXT = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=12, sliding_window=None, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2, head_dim=16,
             patch_size=2, image_size=16, hidden_act="silu")
PROCESSOR = dict(image_processor_type="PixtralImageProcessor", image_mean=[0.5] * 3, image_std=[0.5] * 3,
                 patch_size={"height": 2, "width": 2}, size={"longest_edge": 16}, resample=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(text model .gguf, mmproj .gguf, transformers model, image path)."""
    path = tmp_path_factory.mktemp("pixtral-gguf")
    tok = tokenizer(["<unk>", "<s>", "</s>", "[IMG]", "[IMG_BREAK]", "[IMG_END]"])
    tok.save_pretrained(path / "hf")
    torch.manual_seed(0)
    config = transformers.Mistral3Config(text_config=dict(TEXT, vocab_size=len(tok)), vision_config=TOWER,
                                         image_token_index=tok.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2,
                                         multimodal_projector_bias=True, tie_word_embeddings=False)
    hf = transformers.Mistral3ForConditionalGeneration(config)
    with torch.no_grad():
        for name, p in hf.model.vision_tower.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.4 if any(k in name for k in ("q_proj", "k_proj")) else 0.1)
    hf = perturbed(hf).eval()
    hf.save_pretrained(path / "hf")
    (path / "hf" / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    (path / "hf" / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    convert_mmproj(path / "hf", path / "mmproj-converted.gguf")
    # the [IMG_BREAK] embedding mtmd requires, which the converter takes from the text model's embeddings but skips
    # in a Hugging Face checkpoint (MmprojModel.filter_tensors drops language_model.*): added as it would write it
    row = hf.get_input_embeddings().weight[tok.convert_tokens_to_ids("[IMG_BREAK]")].detach().numpy()
    rewrite(path / "mmproj-converted.gguf", path / "mmproj.gguf", {"v.token_embd.img_break": row})
    text, image = text_and_image(path, "mistral", (16, 12))
    return text, path / "mmproj.gguf", hf, image


def test_reads_as_from_hf_with_transformers_logits(files):
    text, mmproj, _, image = files
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    ids, _ = image_request(llmarch.from_gguf(text, mmproj=mmproj), tok, "[IMG]", [read_image(image)])
    assert ids.count(tok.encode("[IMG_BREAK]")[-1]) == 3  # PixtralProcessor's rows: 4 rows of 3, ended by breaks
    diff = logits_gap(files, "the cat [IMG] sat")
    assert diff <= 1e-4, diff  # seen: 1.2e-7


def test_image_embeddings_and_greedy_tokens_are_llama_cpps(files):
    parts, theirs, want, model, arguments = with_llama_cpp(files, "[IMG]")
    img = model.config.vision["image_token_id"]
    grids = [(h // 2, w // 2) for h, w in arguments["image_sizes"].tolist()]
    with torch.no_grad():
        ours = model.vision.projector(model.vision.tower(arguments["pixel_values"], grids), grids)
    # mtmd's chunk: 4 rows of 3 merged features, each row but the last ended by the [IMG_BREAK] embedding
    brk = checkpoint_tokenizer(files[0], mmproj=files[1]).encode("[IMG_BREAK]")[-1]
    assert theirs.shape == (4 * 4 - 1, 48) and ours.shape == (12, 48)
    features = torch.cat([theirs[r * 4:r * 4 + 3] for r in range(4)])
    diff = (ours - features).abs().max()
    assert diff <= 5e-4 * theirs.abs().max(), (diff, theirs.abs().max())  # seen: 1.0e-5 of 0.24
    assert torch.equal(theirs[3::4], model.embed.weight[brk].detach().expand(3, -1))
    image_ids = sum(([img] * 3 + [brk] for _ in range(4)), [])[:-1]
    ids = torch.tensor([sum((p if isinstance(p, list) else image_ids for p in parts), [])])
    assert_greedy(model, ids, arguments, want)


@pytest.mark.parametrize("change, problem", [
    (dict(meta={"clip.use_silu": 0}), "clip.use_silu or clip.use_gelu"),  # neither activation set
    (dict(drop=("mm.patch_merger.weight",)), "without a patch merger"),  # Pixtral 12B's layout
])
def test_bad_pixtral_mmproj_is_one_line(files, tmp_path, capsys, change, problem):
    assert_bad_mmproj_refused(files, tmp_path, capsys, change, problem)


def test_convert_writes_the_converters_mmproj(files, tmp_path, capsys):
    """`convert --to-gguf --mmproj-out`: the converter's mmproj (q and k permuted again, the [IMG_BREAK] row the
    text model's), read by mtmd and llmarch as that file is."""
    assert_cli_writes_the_converters_mmproj(files, tmp_path, capsys)
