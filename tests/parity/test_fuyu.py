"""Fuyu (`model_type: fuyu`, FuyuForCausalLM) read as its Persimmon language model (interop/persimmon.py), against
transformers, through files: a tiny seeded FuyuForCausalLM (1-D parameters perturbed, the patch embedding
vision_embed_tokens beside the text model) on the text-only path: logits on a left-padded batch within 1e-4 (fp32),
32 greedy tokens equal to transformers', cached decoding equal to the whole forward, a to_hf round trip (written as
persimmon) that PersimmonForCausalLM loads to the same logits and llmarch to the same config. transformers 5.25
saves Fuyu under the published names (language_model.model.*, language_model.lm_head.*, vision_embed_tokens.*); the
same weights under its module names (model.language_model.*, lm_head.*) read the same, tied or not."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES, from_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf
from test_hf_families import assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TEXT = dict(model_type="persimmon", vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=96, pad_token_id=0, rope_parameters={"rope_type": "default", "rope_theta": 25000.0,
                                                                   "partial_rotary_factor": 0.5})
VISION = dict(image_size=8, patch_size=4, num_channels=3, image_token_id=5)


def build(folder, tied=False):
    torch.manual_seed(0)
    text = dict(TEXT, tie_word_embeddings=tied)
    hf = transformers.FuyuForCausalLM(transformers.FuyuConfig(text_config=text, tie_word_embeddings=tied, **VISION))
    hf.eval()
    ours = perturbed_from_hf(hf, folder)
    hf.generation_config.eos_token_id = None
    return hf, ours


def test_logits_generation_cached_decoding_and_round_trip(tmp_path):
    hf, ours = build(tmp_path / "hf")
    cfg = ours.config
    assert (cfg.hf_model_type, cfg.qk_norm, cfg.rotary_dim, cfg.tie_embeddings) == ("persimmon", "head", 8, False)
    ids, mask, generated = assert_matches_transformers(hf, ours, "PersimmonForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


@pytest.mark.parametrize("tied", [False, True])
def test_module_names_read_the_same(tied, tmp_path):
    from safetensors.torch import load_file, save_file

    hf, ours = build(tmp_path / "hf", tied)
    assert ours.config.tie_embeddings == tied
    file = next((tmp_path / "hf").glob("*.safetensors"))
    saved = load_file(file)
    assert any(k.startswith("vision_embed_tokens.") for k in saved)
    modules = {k.replace("language_model.model.", "model.language_model.", 1)
               .replace("vision_embed_tokens.", "model.vision_embed_tokens.", 1)
               .replace("language_model.lm_head.", "lm_head.", 1): v for k, v in saved.items()}
    assert set(modules) == set(hf.state_dict()) - ({"lm_head.weight"} if tied else set())
    save_file(modules, file, metadata={"format": "pt"})
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert (from_hf(tmp_path / "hf")(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask))[
            mask.bool()].abs().max() <= 1e-4


def test_what_is_refused():
    cfg = hf_model_config(dict(model_type="fuyu", text_config=TEXT, **VISION))
    with pytest.raises(LlmarchError, match="persimmon"):
        FAMILIES["fuyu"].from_config(cfg.replace(hf_model_type="fuyu"))
    with pytest.raises(LlmarchError, match="text model"):
        hf_model_config(dict(model_type="fuyu", text_config=dict(TEXT, model_type="llama")))
