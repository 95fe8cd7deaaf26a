"""Emu3's text model (interop/emu3.py) against transformers, through files: tiny seeded Emu3ForCausalLM models
(1-D parameters perturbed) with Emu3's defaults (RoPE base 1e6, no biases) and with attention_bias (q, k, v and o,
none on the MLP) and linear RoPE scaling; logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal
to transformers', cached decoding equal to the whole forward, a to_hf round trip that transformers loads to the
same logits and llmarch to the same config. An Emu3ForConditionalGeneration checkpoint (a tiny VQ-VAE beside the
text model) reads as its text model, in transformers 5's names and as published."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES
from llmarch.interop.hf import hf_model_config

from conftest import (assert_cached_decoding_and_config_round_trip, assert_multimodal_reads_as_text,
                      perturbed_from_hf)
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
CASES = {"default": TEXT,
         "biased": dict(TEXT, attention_bias=True, rope_parameters={"rope_type": "linear", "rope_theta": 5000.0,
                                                                    "factor": 2.0})}
VQ = dict(base_channels=32, channel_multiplier=[1], num_res_blocks=1, attn_resolutions=[], codebook_size=16,
          embed_dim=4, latent_channels=4, hidden_size=32)


def build(case, folder):
    torch.manual_seed(0)
    hf = transformers.Emu3ForCausalLM(transformers.Emu3TextConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, folder)
    hf.generation_config.eos_token_id = None
    return hf, ours


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_cached_decoding_and_round_trip(case, tmp_path):
    hf, ours = build(case, tmp_path / "hf")
    cfg = ours.config
    assert (cfg.hf_model_type, cfg.qkv_bias, cfg.o_bias, cfg.bias) == ("emu3_text_model", case == "biased",
                                                                       case == "biased", False)
    ids, mask, generated = assert_matches_transformers(hf, ours, "Emu3ForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_multimodal_checkpoint_reads_its_text_model(tmp_path):
    hf, ours = build("biased", tmp_path / "text")
    torch.manual_seed(0)
    mm = transformers.Emu3ForConditionalGeneration(transformers.Emu3Config(
        text_config=CASES["biased"], vq_config=VQ, vocabulary_map={"<image>": 5})).eval()
    state = {("model.text_model." + k.removeprefix("model.")) if k.startswith("model.") else k: v
             for k, v in hf.state_dict().items()}
    assert not set(state) - set(mm.state_dict())
    mm.load_state_dict(state, strict=False)
    ids = torch.randint(0, 128, (2, 11))
    read = assert_multimodal_reads_as_text(tmp_path / "mm", mm, ids, lambda k: k if k.startswith("text_model.") else (
        k.replace("model.text_model.", "text_model.model.", 1).replace("model.vqmodel.", "vqmodel.", 1)
        .replace("lm_head.", "text_model.lm_head.", 1)), "emu3_text_model", ours)
    assert not read.config.tie_embeddings
    with pytest.raises(LlmarchError, match="emu3_text_model"):
        FAMILIES["emu3"].from_config(read.config.replace(hf_model_type="emu3"))


def test_defaults_and_what_cannot_be_written():
    """Emu3TextConfig's defaults where config.json leaves a field out; a layout Emu3's config cannot hold."""
    cfg = hf_model_config(dict(model_type="emu3_text_model", vocab_size=128, hidden_size=64, intermediate_size=96,
                               num_hidden_layers=2, num_attention_heads=8))
    assert (cfg.rope_theta, cfg.norm_eps, cfg.n_kv_heads, cfg.context_length, cfg.tie_embeddings) == \
        (1e6, 1e-5, 8, 9216, False)
    with pytest.raises(LlmarchError, match="o_bias"):  # a bias on q, k, v without one on o: Emu3 has no such switch
        FAMILIES["emu3_text_model"].from_config(cfg.replace(qkv_bias=True))
