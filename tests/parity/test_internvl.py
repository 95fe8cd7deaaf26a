"""InternVL (interop/internvl.py: InternViT with layer scale, QK-norm and either norm, the pixel_shuffle_mlp projector)
against transformers in fp32 through files: logits on a left-padded batch whose rows hold one and two images, greedy
and beam tokens equal to its generate, cached decoding after an image prefill equal to the whole forward, and the
to_hf round trip loaded by transformers; for Qwen2, Qwen3 and LLaMA text models. The tower's matrices drawn
N(0, 0.1), its layer scales N(1, 0.1) and every norm gain and bias moved off its init."""
import pytest
import torch
import transformers

import llmarch
from conftest import image_token_batch, perturbed, prefilled_then_stepped
from llmarch.errors import LlmarchError
from llmarch.interop.hf import FAMILIES
from llmarch.vision.config import vision_config
from test_llava_next import gap

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=100)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=16,
             patch_size=4)
# text model, the tower's options, the wrapper's: InternVL 3's (Qwen2, LayerNorm), InternVL 3.5's (Qwen3) with
# InternViT-6B's RMSNorm and QK-norm, and a LLaMA one with q, k, v biases reading the next-to-last block
CASES = {"qwen2": ("qwen2", {}, {}),
         "qwen3-rms-qknorm": ("qwen3", dict(norm_type="rms_norm", use_qk_norm=True), {}),
         "llama-qkv-bias": ("llama", dict(attention_bias=True, use_qk_norm=True, hidden_act="gelu_pytorch_tanh"),
                            dict(vision_feature_layer=-2, projector_hidden_act="silu")),
         "qwen3_moe": ("qwen3_moe", {}, {}), "gpt_oss": ("gpt_oss", {}, {})}
# the text configs' fields beyond TEXT, by model type (InternVL 3.5's 30B-A3B and GPT-OSS-20B are mixtures of experts,
# whose text models are checked for logits, greedy tokens and the round trip: beams and the cache are the tower's
# business here, and the other cases cover them)
MORE_TEXT = {"qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16),
             "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=8)}
PER = 4  # tokens per image: 16 patches, shuffled by 2
LENGTHS = (16, 11)  # real tokens per row, left-padded to 16: row 0 two images, row 1 one


def hf_model(case: str):
    text, tower, more = CASES[case]
    torch.manual_seed(0)
    conf = transformers.InternVLConfig(text_config={**TEXT, **MORE_TEXT.get(text, {}), "model_type": text},
                                       vision_config={**TOWER, **tower},
                                       image_token_id=99, **more)
    hf = perturbed(transformers.InternVLForConditionalGeneration(conf))
    with torch.no_grad():
        for key, p in hf.named_parameters():
            if key.startswith("model.vision_tower.") and p.dim() > 1:
                p.normal_(0, 0.1)
            if "lambda_" in key:  # layer scales near 1 (their init is 0.1), so the blocks' outputs show
                p.normal_(1, 0.1)
    hf.generation_config.eos_token_id = None
    return hf


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    hf = hf_model(request.param)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch():
    """ids (2, 16) left-padded: row 0 text, an image, text, an image, text; row 1 text, an image, text; three
    images (3, 3, 16, 16)."""
    ids, mask, g = image_token_batch(LENGTHS, [[(1, PER), (7, PER)], [(2, PER)]], 99)
    return ids, mask, torch.randn(3, 3, 16, 16, generator=g)


def hf_logits(hf, ids, mask, pixels):
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                  position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits


def test_logits_with_one_and_two_images_a_row(pair):
    hf, ours = pair
    ids, mask, pixels = batch()
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, pixel_values=pixels).logits
    assert gap(mine, hf_logits(hf, ids, mask, pixels), mask) <= 1e-4
    with torch.no_grad():  # the images are at work: others give other logits
        assert gap(ours(ids, attention_mask=mask, pixel_values=pixels.flip(0)).logits, mine, mask) > 1e-3


def test_greedy_and_beam_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, pixels = batch()
    theirs = hf.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=8, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, 8, attention_mask=mask, pixel_values=pixels), theirs)
    if hf.config.text_config.model_type in MORE_TEXT:
        return
    beams = hf.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4, do_sample=False,
                        num_beams=3, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, 4, attention_mask=mask, pixel_values=pixels, num_beams=3), beams)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    hf, ours = pair
    if hf.config.text_config.model_type in MORE_TEXT:
        pytest.skip("the tower's cached decoding is the other cases'")
    ids, mask, pixels = batch()
    P = ids.shape[1] - 3  # every image in the prompt, the last 3 tokens one at a time
    with torch.no_grad():
        whole = ours(ids, attention_mask=mask, pixel_values=pixels).logits
        embeds = ours.embed_inputs(ids[:, :P], pixels)
    assert gap(prefilled_then_stepped(ours, ids, mask, P, embeds), whole[:, P - 1:], mask[:, P - 1:]) <= 1e-4


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    hf, ours = pair
    llmarch.to_hf(ours, tmp_path / "out")
    again = type(hf).from_pretrained(tmp_path / "out").eval()
    assert again.config.text_config.model_type == hf.config.text_config.model_type
    ids, mask, pixels = batch()
    assert gap(hf_logits(again, ids, mask, pixels), hf_logits(hf, ids, mask, pixels), mask) <= 1e-4
    assert llmarch.from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_refusals(pair, tmp_path):
    hf, ours = pair
    ids, mask, pixels = batch()
    with pytest.raises(LlmarchError, match="image tokens"):
        ours(ids, attention_mask=mask, pixel_values=pixels[:2])
    with pytest.raises(LlmarchError, match="shuffle_factor"):
        llmarch.build("llama-tiny", n_layers=1, vision={**ours.config.vision, "shuffle_factor": 3})
    with pytest.raises(LlmarchError, match="vision norm"):
        llmarch.build("llama-tiny", n_layers=1, vision={**ours.config.vision, "norm": "l2"})
    for bad, message in ((dict(text_config={**TEXT, "model_type": "mistral"}), "'mistral' text model"),
                         (dict(downsample_ratio=0.3), "downsample_ratio"),
                         (dict(vision_config={**TOWER, "use_mean_pooling": False}), "use_mean_pooling"),
                         (dict(vision_feature_select_strategy="full"), "vision_feature_select_strategy")):
        conf = hf.config.to_dict()
        conf.update(bad)
        (tmp_path / "config.json").write_text(transformers.InternVLConfig(**conf).to_json_string())
        with pytest.raises(LlmarchError, match=message):
            llmarch.from_hf(tmp_path)


def test_the_default_config_reads_as_internvl3():
    """InternVLConfig's defaults (InternVL3-1B-hf's shape: InternViT-300M at 448, patch 14, a Qwen2 text model): 256
    image tokens a tile, and back to the same config.json fields."""
    family = FAMILIES["internvl"]
    hf = transformers.InternVLConfig().to_dict()
    cfg = family.to_config(hf)
    v = vision_config(cfg.vision)
    assert (v.image_size, v.patch_size, v.width, v.shuffle_factor, v.tokens_per_image) == (448, 14, 1024, 2, 256)
    assert (v.qkv_bias, v.qk_norm, v.norm, v.image_token_id) == (False, False, "layernorm", 151667)
    written = family.from_config(cfg)
    assert written["text_config"]["model_type"] == "qwen2" and written["image_seq_length"] == hf["image_seq_length"]
    assert family.to_config(written) == cfg
