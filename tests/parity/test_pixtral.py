"""Mistral Small 3.1/3.2 with images (mistral3; vision/pixtral_tower.py, interop/pixtral_vision.py) against
transformers in fp32: two images of different sizes (one whose patch rows are odd, the last dropped by the merger as
transformers' unfold drops it) padded into one pixel_values, in a left-padded batch laid out as the processor lays
them ([IMG] per merged patch, [IMG_BREAK] after each row, [IMG_END] after the last): logits, greedy tokens equal to
its generate, cached decoding after the image prefill equal to the whole forward, the to_hf round trip. A tiny
random checkpoint, its tower's matrices drawn N(0, 0.1) (queries' and keys' N(0, 0.4)) and every norm gain and bias
moved off its init."""
import pytest
import torch
import transformers

import llmarch
from conftest import perturbed
from test_llava_next import assert_cached_after_image_prefill, assert_round_trip, gap, hf_logits
from llmarch.errors import LlmarchError

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=100, sliding_window=None, rms_norm_eps=1e-5)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, head_dim=16,
             patch_size=2, image_size=16, hidden_act="silu")
IMG, BREAK, END = 99, 97, 98
SIZES = [(8, 12), (10, 4)]  # (height, width): 4 x 6 patches -> 2 x 3 tokens; 5 x 2 -> 2 x 1, the fifth row dropped


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    conf = transformers.Mistral3Config(text_config=TEXT, vision_config=TOWER, image_token_index=IMG,
                                       multimodal_projector_bias=True, tie_word_embeddings=False)
    hf = transformers.Mistral3ForConditionalGeneration(conf)
    with torch.no_grad():
        for name, p in hf.model.vision_tower.named_parameters():
            if p.dim() > 1:  # queries and keys larger, so that attention is far from uniform and a wrong rotation shows
                p.normal_(0, 0.4 if any(k in name for k in ("q_proj", "k_proj")) else 0.1)
    hf = perturbed(hf)
    hf.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp("pixtral")
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def image_ids(h: int, w: int) -> list[int]:
    """An image's tokens as PixtralProcessor lays them out, rows of merged patches (2 x 2 of 2-pixel patches)."""
    rows, cols = h // 4, w // 4
    out = [([IMG] * cols + [BREAK]) for _ in range(rows)]
    return sum(out, [])[:-1] + [END]


def batch():
    """ids (2, T) left-padded, each row some text, one image's tokens, more text; its mask; the images padded into
    (2, 3, 10, 12) and their sizes."""
    g = torch.Generator().manual_seed(1)
    rows = [[1, 5, 6] + image_ids(*SIZES[0]) + [7, 8, 9, 10], [1, 11] + image_ids(*SIZES[1]) + [12, 13, 14]]
    T = max(map(len, rows))
    ids, mask = torch.zeros(2, T, dtype=torch.long), torch.zeros(2, T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, T - len(row):], mask[b, T - len(row):] = torch.tensor(row), 1
    pixels = torch.randn(2, 3, 10, 12, generator=g)
    return ids, mask, pixels, torch.tensor(SIZES)


def test_the_tower_and_projector_are_read(pair):
    v = pair[1].vision.v
    assert (pair[1].config.hf_model_type, v.tower, v.ffn, v.n_layers, v.merge_size) == ("mistral3", "pixtral",
                                                                                          "swiglu", 2, 2)


def test_image_features_equal_transformers(pair):
    """The merged features themselves, before the text model dilutes a wrong rotation or merge order."""
    hf, ours = pair
    _, _, pixels, sizes = batch()
    with torch.no_grad():
        theirs = torch.cat(hf.model.get_image_features(pixels, sizes).pooler_output)
        grids = [(h // 2, w // 2) for h, w in SIZES]
        mine = ours.vision.projector(ours.vision.tower(pixels, grids), grids)
    assert mine.shape == theirs.shape == (6 + 2, 32) and (mine - theirs).abs().max() <= 1e-4


def test_logits_with_two_images_of_different_sizes(pair):
    hf, ours = pair
    ids, mask, pixels, sizes = batch()
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
    assert gap(mine, hf_logits(hf, ids, mask, pixels, sizes), mask) <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, pixels, sizes = batch()
    theirs = hf.generate(input_ids=ids, pixel_values=pixels, image_sizes=sizes, attention_mask=mask,
                         max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, 8, attention_mask=mask, pixel_values=pixels, image_sizes=sizes),
                       theirs)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    assert_cached_after_image_prefill(pair[1], *batch())


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    assert_round_trip(*pair, tmp_path / "out", *batch())


def test_wrong_images_or_variants_are_refused(pair):
    _, ours = pair
    ids, mask, pixels, sizes = batch()
    with pytest.raises(LlmarchError, match="image tokens"):
        ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes[[0, 0]])
    with pytest.raises(LlmarchError, match="within pixel_values"):
        ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes * 2)
    hf = dict(model_type="mistral3", text_config=dict(TEXT, model_type="mistral"), vision_config=TOWER)
    from llmarch.interop.mistral import mistral3_config
    with pytest.raises(LlmarchError, match="vision_feature_layer"):
        mistral3_config(dict(hf, vision_feature_layer=-2))
    with pytest.raises(LlmarchError, match="hidden_act"):
        mistral3_config(dict(hf, vision_config=dict(TOWER, hidden_act="relu")))
