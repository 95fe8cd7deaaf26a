"""Vision-language checkpoints with their images (src/llmarch/vision/): LLaVA (a CLIP tower's second-to-last hidden
states, an MLP projector, LLaMA) and PaliGemma (a SigLIP tower's output, a linear projector, Gemma, a prefix-LM
counting positions from 1) against transformers in fp32: logits on a left-padded batch with two images, greedy
tokens equal to its generate, cached decoding after an image prefill equal to the whole forward, and the to_hf round
trip. Random weights with norm gains and biases moved off their init."""
import pytest
import torch
import transformers

import llmarch
from conftest import perturbed, prefilled_then_stepped
from llmarch.errors import LlmarchError
from llmarch.vision.config import PROJECTOR_KINDS
from llmarch.vision.projector import PROJECTORS

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=100)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=8,
             patch_size=4)
# case -> (config class, model class, config kwargs); image token 99 in the vocabulary, or 100 past it (PaliGemma
# looks it up as 0)
CASES = {
    "llava": ("LlavaConfig", "LlavaForConditionalGeneration", dict(
        text_config=dict(model_type="llama", **TEXT), vision_config=dict(model_type="clip_vision_model", **TOWER),
        image_token_index=99, projector_hidden_act="gelu")),
    "llava-layers-full": ("LlavaConfig", "LlavaForConditionalGeneration", dict(
        text_config=dict(model_type="llama", **TEXT), vision_config=dict(model_type="clip_vision_model", **TOWER),
        image_token_index=99, vision_feature_layer=[-3, -1], vision_feature_select_strategy="full")),
    "paligemma": ("PaliGemmaConfig", "PaliGemmaForConditionalGeneration", dict(
        text_config=dict(model_type="gemma", **TEXT), vision_config=dict(model_type="siglip_vision_model", **TOWER),
        image_token_index=100, projection_dim=32, hidden_size=32)),
}
LENGTHS = (20, 13)  # real tokens per row, left-padded to 20


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    conf, cls, kwargs = CASES[request.param]
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, cls)(getattr(transformers, conf)(**kwargs)))
    hf.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return request.param, hf, llmarch.from_hf(path)


def batch(ours):
    """ids (2, 20) left-padded, each row text, one image's tokens, text; its mask; the images (2, 3, 8, 8); and
    token_type_ids, 0 on each row's first 10 real tokens (PaliGemma's prefix) and 1 after."""
    v = ours.vision.v
    g = torch.Generator().manual_seed(1)
    T = max(LENGTHS)
    ids = torch.randint(0, 99, (2, T), generator=g)
    mask, types = torch.zeros(2, T, dtype=torch.long), torch.ones(2, T, dtype=torch.long)
    for row, n in enumerate(LENGTHS):
        start = T - n
        mask[row, start:] = 1
        ids[row, start + 2:start + 2 + v.tokens_per_image] = v.image_token_id
        types[row, :start + 10] = 0
    return ids, mask, torch.randn(2, 3, 8, 8, generator=g), types


def hf_logits(hf, ids, mask, pixels, types):
    """transformers' logits at the positions its generate gives left-padded rows (PaliGemma's counted from 1), with
    PaliGemma's prefix as token_type_ids."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    paligemma = hf.config.model_type == "paligemma"
    extra = dict(token_type_ids=types, position_ids=pos + 1) if paligemma else dict(position_ids=pos)
    with torch.no_grad():
        return hf(input_ids=ids, pixel_values=pixels, attention_mask=mask, **extra).logits


def ours_logits(ours, ids, mask, pixels, types):
    prefix = (types == 0) & mask.bool() if ours.config.prefix_lm else None
    with torch.no_grad():
        return ours(ids, attention_mask=mask, pixel_values=pixels, prefix_mask=prefix).logits


def gap(a, b, mask) -> float:
    return (a - b)[mask.bool()].abs().max().item()


def test_logits_with_images(pair):
    _, hf, ours = pair
    ids, mask, pixels, types = batch(ours)
    assert gap(ours_logits(ours, ids, mask, pixels, types), hf_logits(hf, ids, mask, pixels, types), mask) <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    _, hf, ours = pair
    ids, mask, pixels, _ = batch(ours)
    extra = dict(token_type_ids=torch.zeros_like(ids)) if hf.config.model_type == "paligemma" else {}
    theirs = hf.generate(input_ids=ids, pixel_values=pixels, attention_mask=mask, max_new_tokens=12, do_sample=False,
                         pad_token_id=0, **extra)
    mine = llmarch.generate(ours, ids, 12, attention_mask=mask, pixel_values=pixels)
    assert torch.equal(mine, theirs)


def test_beam_search_with_images_equals_transformers(pair):
    """Each beam's copy of its row's image embeddings (generate repeats them with the prompt)."""
    _, hf, ours = pair
    ids, mask, pixels, _ = batch(ours)
    extra = dict(token_type_ids=torch.zeros_like(ids)) if hf.config.model_type == "paligemma" else {}
    theirs = hf.generate(input_ids=ids, pixel_values=pixels, attention_mask=mask, max_new_tokens=6, do_sample=False,
                         num_beams=3, pad_token_id=0, **extra)
    mine = llmarch.generate(ours, ids, 6, attention_mask=mask, pixel_values=pixels, num_beams=3)
    assert torch.equal(mine, theirs)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    _, _, ours = pair
    ids, mask, pixels, _ = batch(ours)
    P = 16  # the image in the prompt, the last 4 tokens one at a time
    prompt_prefix = torch.zeros_like(ids, dtype=torch.bool)
    prompt_prefix[:, :P] = mask[:, :P].bool()
    with torch.no_grad():
        whole = ours(ids, attention_mask=mask, pixel_values=pixels,
                     prefix_mask=prompt_prefix if ours.config.prefix_lm else None).logits
        embeds = ours.embed_inputs(ids[:, :P], pixels)
    steps = prefilled_then_stepped(ours, ids, mask, P, embeds,
                                   prefix_mask=prompt_prefix[:, :P] if ours.config.prefix_lm else None)
    assert gap(steps, whole[:, P - 1:], mask[:, P - 1:]) <= 1e-4


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    _, hf, ours = pair
    llmarch.to_hf(ours, tmp_path / "out")
    again = type(hf).from_pretrained(tmp_path / "out").eval()
    ids, mask, pixels, types = batch(ours)
    assert gap(hf_logits(again, ids, mask, pixels, types), hf_logits(hf, ids, mask, pixels, types), mask) <= 1e-4
    assert llmarch.from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_paligemma_prefix_matters(pair):
    """The parity above cannot pass without the prefix-LM mask. (Its positions counted from 1 turn every query and
    key by one more step of RoPE, which leaves their products as they are: no test can tell them apart.)"""
    name, hf, ours = pair
    if name != "paligemma":
        pytest.skip("PaliGemma's prefix-LM")
    ids, mask, pixels, types = batch(ours)
    theirs = hf_logits(hf, ids, mask, pixels, types)
    with torch.no_grad():
        causal = ours(ids, attention_mask=mask, pixel_values=pixels).logits
    assert gap(causal, theirs, mask) > 1e-3


def test_refusals(pair):
    _, _, ours = pair
    ids, mask, pixels, _ = batch(ours)
    with pytest.raises(LlmarchError, match="image tokens"):
        ours(ids, attention_mask=mask, pixel_values=pixels[:1])
    with pytest.raises(LlmarchError, match="shape"):
        ours(ids, attention_mask=mask, pixel_values=pixels[:, :, :4])
    with pytest.raises(LlmarchError, match="no vision tower"):
        llmarch.build("llama-tiny", n_layers=1)(ids.clamp(max=9), pixel_values=pixels)
    with pytest.raises(LlmarchError, match="compile"):
        llmarch.generate(ours, ids, 2, attention_mask=mask, pixel_values=pixels, compile=True)


def test_published_names(pair, tmp_path):
    """Checkpoints as published before transformers 5 (language_model.model.*, vision_tower.vision_model.*,
    multi_modal_projector.*) read as transformers 5's names."""
    from safetensors.torch import load_file, save_file

    name, hf, _ = pair
    hf.save_pretrained(tmp_path)
    # read afresh, not the shared pair's model, which decoding in other tests lays out for the CPU (a split head:
    # the same logits to rounding, not to the bit)
    ours = llmarch.from_hf(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    published = {}
    for key, t in state.items():  # whichever layout transformers wrote, as the published one
        key = key.removeprefix("model.")
        key = "language_model.model." + key.removeprefix("language_model.") if key.startswith("language_model.") \
            and not key.startswith(("language_model.model.", "language_model.lm_head.")) else key
        key = "language_model." + key if key.startswith("lm_head.") else key
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            key = key.replace("vision_tower.", "vision_tower.vision_model.", 1)
        published[key] = t
    assert any(k.startswith("vision_tower.vision_model.") for k in published)
    save_file(published, tmp_path / "model.safetensors", metadata={"format": "pt"})
    again = llmarch.from_hf(tmp_path)
    ids, mask, pixels, types = batch(ours)
    assert torch.equal(ours_logits(again, ids, mask, pixels, types), ours_logits(ours, ids, mask, pixels, types))


def test_unsupported_text_model_and_registry(tmp_path):
    conf = transformers.LlavaConfig(text_config=dict(model_type="mistral", **TEXT),
                                    vision_config=dict(model_type="clip_vision_model", **TOWER))
    (tmp_path / "config.json").write_text(conf.to_json_string())
    with pytest.raises(LlmarchError, match="mistral"):
        llmarch.from_hf(tmp_path)
    assert tuple(PROJECTORS.names()) == PROJECTOR_KINDS


def test_a_paligemma_prompt_reads_both_ways_on_every_path(pair):
    """A text prompt to PaliGemma (no image) is its prefix wherever it is prefilled: generate's engine, the server's
    per-request prefill (generate/batch.py) and prompt lookup's engine give transformers' first logits with the
    prompt as token type 0, not the causal reading's."""
    from llmarch.generate.batch import RunningBatch
    from llmarch.generate.engine import Engine

    name, hf, ours = pair
    if name != "paligemma":
        pytest.skip("PaliGemma's prefix-LM")
    ids = torch.randint(1, 99, (1, 9), generator=torch.Generator().manual_seed(3))
    pos = torch.arange(9)[None] + 1
    with torch.no_grad():
        theirs = hf(input_ids=ids, token_type_ids=torch.zeros_like(ids), position_ids=pos).logits[0, -1]
        causal = ours(ids).logits[0, -1]
        with Engine(ours, 1, 16) as engine:
            first = engine.prefill(ids)[0]
    _, served = RunningBatch(ours, rows=2, max_len=16).prefill(ids[0].tolist())
    assert (causal - theirs).abs().max() > 1e-3  # the prefix matters on this prompt
    for logits in (first, served):
        assert (logits - theirs).abs().max() <= 1e-4
