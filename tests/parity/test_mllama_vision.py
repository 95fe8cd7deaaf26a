"""Llama 3.2 Vision with its images (interop/mllama.py, mllama_vision.py; vision/mllama_tower.py;
layers/vision_cross.py) against transformers' MllamaForConditionalGeneration, through files: a tiny seeded model (a
text model of three layers, the middle one cross-attention; a tower of two local blocks and one global, two tiles of
16 pixels, two feature layers), 1-D parameters perturbed and every tanh gate set in [0.6, 1.4] (the cross-attention
layer's, the global blocks', the positional and aspect-ratio embeddings'). One image on one row, and a left-padded
batch of a row with a two-tile image, a row with two images of one and two tiles (their image tokens apart), and a
text-only row: logits within 1e-4 (fp32; seen about 2e-7), greedy and beam tokens equal to transformers' generate,
cached decoding equal to the whole forward (its cross-attention mask extended by the last prompt row, as
transformers' generate extends it), to_hf loaded by transformers to the same logits. The cross-attention mask made
from the ids equals MllamaProcessor's on runs of image tokens, a text-only forward skips the cross-attention layers
as transformers does, and rows with images of their own (or none) decode in one running batch (the server's) what
each decodes alone."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.vision.mllama_tower import cross_attention_mask

from conftest import perturbed

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
from transformers.models.mllama import processing_mllama  # noqa: E402

IMAGE = 120  # the first of the 8 embedding rows past the head's vocabulary, as Llama 3.2 Vision's <|image|>
TEXT = dict(vocab_size=120, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, cross_attention_layers=[1], pad_token_id=0,
            bos_token_id=1, eos_token_id=2)
VISION = dict(hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=48,
              vision_output_dim=96, image_size=16, patch_size=8, max_num_tiles=2, intermediate_layers_indices=[1, 0],
              supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.MllamaForConditionalGeneration(transformers.MllamaConfig(
        text_config=TEXT, vision_config=VISION, image_token_index=IMAGE))
    perturbed(hf)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "gate" in name and p.numel() == 1:  # the tanh gates
                p.uniform_(0.6, 1.4)
    folder = tmp_path_factory.mktemp("mllama")
    hf.save_pretrained(folder)
    return hf, llmarch.from_hf(folder).eval(), folder


def images(rows: int, ids: list, tiles: list) -> dict:
    """pixel_values, aspect_ratio_ids, aspect_ratio_mask as MllamaImageProcessor packs them: each row's images, by
    aspect-ratio id (1: one tile, 2 and 3: two), padded images and tiles zero."""
    torch.manual_seed(1)
    N = max(len(r) for r in ids) or 1
    pv, arids, mask = torch.zeros(rows, N, 2, 3, 16, 16), torch.zeros(rows, N, dtype=torch.long), \
        torch.zeros(rows, N, 2, dtype=torch.long)
    mask[:, :, 0] = 1
    for r, (row_ids, row_tiles) in enumerate(zip(ids, tiles)):
        for k, (a, t) in enumerate(zip(row_ids, row_tiles)):
            pv[r, k, :t], arids[r, k], mask[r, k, :t] = torch.randn(t, 3, 16, 16), a, 1
    return dict(pixel_values=pv, aspect_ratio_ids=arids, aspect_ratio_mask=mask)


CASES = {
    "one-image": (torch.tensor([[1, IMAGE, 7, 8, 9, 10, 11]]), None, [[2]], [[2]]),
    "batch": (torch.tensor([[1, 5, IMAGE, 7, 8, 9, 10, 11], [0, 1, IMAGE, 12, 13, IMAGE, 14, 15],
                            [0, 0, 0, 1, 16, 17, 18, 19]]),
              torch.tensor([[1] * 8, [0] + [1] * 7, [0] * 3 + [1] * 5]), [[3], [1, 2], []], [[2], [1, 2], []]),
}


def case(name):
    ids, mask, arids, tiles = CASES[name]
    kw = images(ids.shape[0], arids, tiles)
    cam = cross_attention_mask(ids, IMAGE, kw["aspect_ratio_ids"], kw["aspect_ratio_mask"]).long()
    return ids, mask, kw, cam


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_greedy_beams_and_cached_decoding(pair, name):
    hf, ours, _ = pair
    ids, mask, kw, cam = case(name)
    real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, cross_attention_mask=cam, **kw).logits
        got = ours(ids, mask, **kw).logits
    assert (ref - got)[real].abs().max() <= 1e-4
    n = 10
    with torch.no_grad():
        theirs = hf.generate(input_ids=ids, attention_mask=mask, cross_attention_mask=cam, max_new_tokens=n,
                             do_sample=False, eos_token_id=None, pad_token_id=0, **kw)
        beams = hf.generate(input_ids=ids, attention_mask=mask, cross_attention_mask=cam, max_new_tokens=6,
                            num_beams=2, do_sample=False, eos_token_id=None, pad_token_id=0, **kw)
    mine = llmarch.generate(ours, ids, n, attention_mask=mask, **kw)
    assert torch.equal(mine, theirs)
    assert torch.equal(llmarch.generate(ours, ids, 6, attention_mask=mask, num_beams=2, **kw), beams)
    # the whole forward over prompt and new tokens, each new token seeing what the prompt's last saw
    whole_mask = None if mask is None else torch.cat([mask, torch.ones(ids.shape[0], n, dtype=torch.long)], 1)
    whole_cam = torch.cat([cam, cam[:, -1:].expand(-1, n, -1, -1)], 1)
    with torch.no_grad():
        whole = ours(mine, whole_mask, cross_attention_mask=whole_cam, **kw).logits
    assert torch.equal(whole[:, ids.shape[1] - 1:-1].argmax(-1), mine[:, ids.shape[1]:])


def test_round_trip_loads_in_transformers(pair, tmp_path):
    hf, ours, _ = pair
    ids, mask, kw, cam = case("batch")
    llmarch.to_hf(ours, tmp_path / "out")
    again = transformers.MllamaForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    assert again.state_dict().keys() == hf.state_dict().keys()
    with torch.no_grad():
        a = hf(input_ids=ids, attention_mask=mask, cross_attention_mask=cam, **kw).logits
        b = again(input_ids=ids, attention_mask=mask, cross_attention_mask=cam, **kw).logits
    assert torch.equal(a, b)
    assert llmarch.from_hf(tmp_path / "out").config == ours.config


def test_text_only_skips_the_cross_attention_layers(pair):
    hf, ours, _ = pair
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert (hf(input_ids=ids).logits - ours(ids).logits).abs().max() <= 1e-4
    assert torch.equal(llmarch.generate(ours, ids, 5), hf.generate(input_ids=ids, max_new_tokens=5, do_sample=False,
                                                                   eos_token_id=None, pad_token_id=0))


@pytest.mark.parametrize("row", [[IMAGE, 1, 5, 6], [1, IMAGE, IMAGE, 5, IMAGE, 6, 7], [IMAGE, IMAGE, 4, 5, 6],
                                 [1, IMAGE, 4, IMAGE, IMAGE, 5], [1, 4, 5, IMAGE]])
def test_cross_attention_mask_is_the_processors(row):
    k = row.count(IMAGE)
    arids = torch.tensor([[2, 1, 3][:k]])
    armask = torch.tensor([[[1, 1], [1, 0], [1, 1]][:k]])
    spans = [processing_mllama.get_cross_attention_token_mask(row, IMAGE)]
    dense = processing_mllama.convert_sparse_cross_attention_mask_to_dense(spans, [[2, 1, 2][:k]], 2, len(row))
    assert torch.equal(cross_attention_mask(torch.tensor([row]), IMAGE, arids, armask), torch.from_numpy(dense).bool())


def test_bad_image_arguments_are_refused(pair):
    _, ours, _ = pair
    ids, mask, kw, _ = case("one-image")
    with pytest.raises(LlmarchError, match="aspect_ratio_ids and aspect_ratio_mask"):
        ours(ids, pixel_values=kw["pixel_values"])
    with pytest.raises(LlmarchError, match="one image token"):
        ours(ids[:, 2:], **kw)
    with pytest.raises(LlmarchError, match="pixel_values"):
        ours(ids, pixel_values=kw["pixel_values"][:, :, :1], aspect_ratio_ids=kw["aspect_ratio_ids"],
             aspect_ratio_mask=kw["aspect_ratio_mask"])
    with pytest.raises(LlmarchError, match="aspect_ratio_ids, aspect_ratio_mask and cross_attention_mask"):
        ours(ids, aspect_ratio_ids=kw["aspect_ratio_ids"])


def test_rows_with_their_own_images_share_a_running_batch(pair):
    """Continuous batching (generate/batch.py): a text prompt, a one-image and a two-image prompt, each prefilled alone
    and joined in one batch (the image keys grown to the longest row's, masked), decode what each decodes alone."""
    from llmarch.generate.batch import RunningBatch

    _, ours, _ = pair
    prompts = [[1, 16, 17], [1, IMAGE, 7, 8], [1, IMAGE, 12, IMAGE, 14, 15]]
    kw = [None, images(1, [[3]], [[2]]), images(1, [[1, 2]], [[1, 2]])]
    n = 5
    alone = [llmarch.generate(ours, [p], n, **(k or {}))[0][len(p):] for p, k in zip(prompts, kw)]
    batch = RunningBatch(ours, 3, 32)
    try:
        tokens = torch.zeros(3, dtype=torch.long)
        for row, (p, k) in enumerate(zip(prompts, kw)):
            states, logits = batch.prefill(p, images=k)
            batch.join(row, states, len(p))
            tokens[row] = logits.argmax()
        out = [tokens.clone()]
        for _ in range(n - 1):
            tokens = batch.decode(tokens).argmax(-1)
            out.append(tokens)
    finally:
        batch.close()
    assert torch.stack(out, 1).tolist() == alone
