"""The language models of Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE (interop/qwen_vl.py) against transformers,
through files: tiny seeded multimodal models (Qwen2VLForConditionalGeneration ..., a one-block vision tower beside the
text model, 1-D parameters perturbed; Qwen3-VL with attention_bias and a tied head, Qwen3-VL-MoE with a dense layer
before a MoE one and experts 2I != C wide, so the stacked experts' orientation shows), read by from_hf with their
vision towers (their images: test_qwen_vl_vision.py). Their M-RoPE over text equals plain RoPE: transformers'
get_rope_index numbers a left-padded row's text on all three axes as llmarch numbers it, and with those positions the
logits agree within 1e-4 (fp32); 16 greedy tokens equal to transformers', cached decoding equal to the whole forward,
a to_hf round trip (the whole multimodal model) that transformers loads to the same logits and llmarch to the same
config. Each checkpoint also reads in the other name layout (transformers 5's model.language_model.* or the published
model.*, visual.*), and Qwen3-VL-MoE's experts in the published orientation."""
import json

import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config
from llmarch.models.masks import position_ids

from conftest import (assert_cached_decoding_and_config_round_trip, assert_multimodal_reads_as_text, perturbed,
                      routed_apart)
from test_hf_families import assert_close_on_real_tokens, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
NEW = 16  # greedy tokens compared
QWEN2_VISION = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2)
QWEN2_5_VISION = dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                      fullatt_block_indexes=[0])
QWEN3_VISION = dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                    deepstack_visual_indexes=[0])


def _rope(section, theta=10000.0, **more):
    return {"rope_parameters": {"rope_type": "default", "rope_theta": theta, "mrope_section": section, **more}}


# model_type: (class prefix, text config, vision config, wrapper's own fields)
CASES = {
    "qwen2_vl": ("Qwen2VL", dict(TEXT, **_rope([2, 3, 3])), QWEN2_VISION, {}),
    "qwen2_5_vl": ("Qwen2_5_VL", dict(TEXT, **_rope([4, 2, 2], 50000.0)), QWEN2_5_VISION, {}),
    "qwen3_vl": ("Qwen3VL", dict(TEXT, head_dim=24, attention_bias=True, **_rope([4, 4, 4], mrope_interleaved=True)),
                 QWEN3_VISION, {"tie_word_embeddings": True}),
    "qwen3_vl_moe": ("Qwen3VLMoe", dict(TEXT, head_dim=16, moe_intermediate_size=24, num_experts=4,
                                        num_experts_per_tok=2, decoder_sparse_step=2, tie_word_embeddings=False,
                                        **_rope([4, 2, 2], mrope_interleaved=True)), QWEN3_VISION, {}),
}




def wrapper(case, text):
    prefix, _, vision, own = CASES[case]
    config = getattr(transformers, prefix + "Config")(text_config=text, vision_config=vision, **own)
    return getattr(transformers, prefix + "ForConditionalGeneration"), config


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    case = request.param
    cls, config = wrapper(case, CASES[case][1])
    torch.manual_seed(0)
    hf = perturbed(routed_apart(cls(config)))
    folder = tmp_path_factory.mktemp(case)
    hf.save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return case, hf, from_hf(folder / "hf"), folder


def test_logits_generation_cached_decoding_and_round_trip(pair):
    case, hf, ours, folder = pair
    cfg = ours.config
    text = CASES[case][1]
    assert (cfg.hf_model_type, cfg.mrope_section, cfg.mrope_interleaved) == \
        (case, text["rope_parameters"]["mrope_section"], case.startswith("qwen3"))
    assert (cfg.qkv_bias, cfg.o_bias, cfg.tie_embeddings) == \
        (case != "qwen3_vl_moe", case == "qwen3_vl", case == "qwen3_vl")
    ids, mask = padded_batch(cfg.vocab_size, lengths=(12, 7))
    # transformers' M-RoPE positions of text (get_rope_index: t, h, w), each axis llmarch's positions on real tokens
    axes, _ = hf.model.get_rope_index(ids, mm_token_type_ids=torch.zeros_like(ids), attention_mask=mask)
    real = mask.bool()
    assert all(torch.equal(axis[real], position_ids(torch.arange(ids.shape[1]), 2, mask)[real]) for axis in axes)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        assert_close_on_real_tokens(mine, hf(ids, attention_mask=mask, position_ids=axes).logits, mask)
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=NEW)
    assert torch.equal(generated, hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                                              pad_token_id=0))
    to_hf(ours, folder / "out")
    written = json.loads((folder / "out" / "config.json").read_text())
    assert written["model_type"] == case  # written whole, its tower too
    again = type(hf).from_pretrained(folder / "out").eval()
    assert_close_on_real_tokens(hf_logits(again, ids, mask), mine, mask)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, folder / "out")


def other_layout(name: str) -> str:
    """transformers 5's names (model.language_model.*, model.visual.*) as published (model.*, visual.*), and back."""
    for saved, published in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if name.startswith(saved):
            return published + name.removeprefix(saved)
    if name.startswith("visual."):
        return "model." + name
    return "model.language_model." + name.removeprefix("model.") if name.startswith("model.") else name


def test_multimodal_checkpoint_reads_in_both_layouts(pair, tmp_path):
    case, hf, ours, _ = pair
    ids = torch.randint(0, 128, (2, 11))
    assert_multimodal_reads_as_text(tmp_path, hf, ids, other_layout, case, ours)


def test_published_flat_config_and_what_is_refused():
    """Published Qwen2(.5)-VL configs are flat (the text fields beside vision_config) with rope_scaling of type
    'mrope'; an mrope_section that does not cover the head's rotated pairs, and a Qwen3-VL-MoE model that does not
    renormalise its top-k weights, are refused in one line."""
    nested = hf_model_config({"model_type": "qwen2_vl", "text_config": dict(CASES["qwen2_vl"][1]),
                              "vision_config": QWEN2_VISION})
    flat = {k: v for k, v in TEXT.items()}
    flat.update(model_type="qwen2_vl", rope_theta=10000.0, vision_config=QWEN2_VISION,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    assert hf_model_config(flat) == nested
    defaults = hf_model_config({"model_type": "qwen2_vl_text", "hidden_size": 128, "num_attention_heads": 1,
                                "num_key_value_heads": 1})
    assert (defaults.mrope_section, defaults.rope_theta, defaults.norm_eps, defaults.head_dim) == \
        ([16, 24, 24], 1e6, 1e-5, 128)
    with pytest.raises(LlmarchError, match="mrope_section"):  # 2 + 3 + 4 pairs for a head of 16 dims
        hf_model_config({"model_type": "qwen2_vl_text", **TEXT, **_rope([2, 3, 4])})
    with pytest.raises(LlmarchError, match="mrope_section"):  # the default 16 + 24 + 24 for the same head
        hf_model_config({"model_type": "qwen2_vl_text", **TEXT})
    moe = hf_model_config({"model_type": "qwen3_vl_moe_text", **CASES["qwen3_vl_moe"][1]})
    from llmarch.interop import FAMILIES
    with pytest.raises(LlmarchError, match="renormalises"):
        FAMILIES["qwen3_vl_moe_text"].from_config(moe.replace(router_renormalize=False))
    with pytest.raises(LlmarchError, match="qwen3_vl_text"):
        FAMILIES["qwen3_vl"].from_config(moe.replace(hf_model_type="qwen3_vl"))
    with pytest.raises(LlmarchError, match="qwen2_vl_text"):  # a text model has no tower to write
        FAMILIES["qwen2_vl"].from_config(defaults.replace(hf_model_type="qwen2_vl"))


@pytest.mark.parametrize("pair", ["qwen3_vl_moe"], indirect=True)
def test_published_moe_experts_transposed(pair, tmp_path):
    """Qwen3-VL-MoE's published checkpoints store the stacked experts (E, in, out), transformers 5 saves them
    (E, out, in): both read to the same model, as transformers reads both."""
    from safetensors.torch import load_file, save_file

    case, hf, ours, folder = pair
    saved = load_file(folder / "hf" / "model.safetensors")
    assert saved["model.language_model.layers.1.mlp.experts.gate_up_proj"].shape == (4, 48, 64)  # (E, 2I, C)
    (tmp_path / "config.json").write_text((folder / "hf" / "config.json").read_text())
    save_file({k: v.transpose(1, 2).contiguous() if ".experts." in k else v for k, v in saved.items()},
              tmp_path / "model.safetensors", metadata={"format": "pt"})
    ids = torch.randint(0, 128, (2, 9))
    again = type(hf).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        assert (again(input_ids=ids).logits - expected).abs().max() <= 1e-4
        assert (from_hf(tmp_path)(ids).logits - expected).abs().max() <= 1e-4
