"""Llama 3.2 Vision's language model (interop/mllama.py) against transformers' MllamaForCausalLM, through files:
tiny seeded models of three layers, one or two of them cross-attention layers (skipped whole by the text-only
forward: blocks with mixer 'vision_cross', the identity holding their weights), 1-D parameters perturbed (the tanh
gates too), with default and llama3-scaled RoPE. Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens
equal to transformers', cached decoding equal to the whole forward, a to_hf round trip that transformers loads to the
same logits and the same cross-attention weights, and llmarch to the same config. No case puts a cross-attention
layer first: transformers' text-only generate reads the cache's length off layer 0, which a skipped layer leaves
empty (its greedy tokens then go astray; Llama 3.2 Vision's first is layer 3). An
MllamaForConditionalGeneration checkpoint (a tiny vision model beside the text model) reads whole, in transformers
5's names and as published."""
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

TEXT = dict(vocab_size=120, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, cross_attention_layers=[1], pad_token_id=0,
            bos_token_id=1, eos_token_id=2)
CASES = {"one-cross": TEXT,
         "llama3-rope": dict(TEXT, cross_attention_layers=[1, 2], rope_parameters={
             "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
             "high_freq_factor": 4.0, "original_max_position_embeddings": 16})}
VISION = dict(hidden_size=32, num_hidden_layers=1, num_global_layers=1, attention_heads=2, intermediate_size=48,
              vision_output_dim=64, image_size=16, patch_size=8, max_num_tiles=1, intermediate_layers_indices=[0],
              supported_aspect_ratios=[[1, 1]])


def build(case, folder):
    torch.manual_seed(0)
    hf = transformers.MllamaForCausalLM(transformers.MllamaTextConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, folder)
    hf.generation_config.eos_token_id = None
    return hf, ours


def cross_weights(state: dict, layers: list[int]) -> dict:
    return {k: v for k, v in state.items() if any(k.startswith(f"model.layers.{i}.") for i in layers)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_cached_decoding_and_round_trip(case, tmp_path):
    hf, ours = build(case, tmp_path / "hf")
    cross = CASES[case]["cross_attention_layers"]
    cfg = ours.config
    assert [cfg.for_layer(i).mixer for i in range(3)] == ["vision_cross" if i in cross else "attention"
                                                          for i in range(3)]
    assert (cfg.vocab_size, cfg.head_vocab, cfg.head_dim) == (128, 120, 16)
    ids, mask, generated = assert_matches_transformers(hf, ours, "MllamaForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")
    again = transformers.MllamaForCausalLM.from_pretrained(tmp_path / "out")
    theirs, back = cross_weights(hf.state_dict(), cross), cross_weights(again.state_dict(), cross)
    assert theirs.keys() == back.keys() and all(torch.equal(theirs[k], back[k]) for k in theirs)


def test_multimodal_checkpoint_reads_whole_in_either_layout(tmp_path):
    """An MllamaForConditionalGeneration checkpoint reads whole (its images: test_mllama_vision.py), from transformers
    5's names and from the published ones (language_model.model.*, vision_model.*), to transformers' text logits,
    which are its text model's (the cross-attention layers skipped without images)."""
    hf, ours = build("one-cross", tmp_path / "text")
    torch.manual_seed(0)
    mm = transformers.MllamaForConditionalGeneration(transformers.MllamaConfig(
        text_config=TEXT, vision_config=VISION, image_token_index=119)).eval()
    state = {("model.language_model." + k.removeprefix("model.")) if k.startswith("model.") else k: v
             for k, v in hf.state_dict().items()}
    assert not set(state) - set(mm.state_dict())
    mm.load_state_dict(state, strict=False)
    read = assert_multimodal_reads_as_text(tmp_path / "mm", mm, torch.randint(0, 119, (2, 11)), published, "mllama",
                                           ours)
    assert read.config.vision["tower"] == "mllama"


def published(k: str) -> str:
    """transformers 5's names as Llama-3.2-11B-Vision's files spell them."""
    if k.startswith("language_model."):
        return k
    return (k.replace("model.language_model.", "language_model.model.", 1).replace("model.vision_model.",
                                                                                   "vision_model.", 1)
            .replace("model.multi_modal_projector.", "multi_modal_projector.", 1)
            .replace("lm_head.", "language_model.lm_head.", 1))


@pytest.mark.parametrize("hf, match", [
    (dict(TEXT, tie_word_embeddings=True), "tie_word_embeddings"),
    (dict(TEXT, cross_attention_layers=[3]), "cross_attention_layers"),
])
def test_unsupported_configs_are_refused(hf, match):
    with pytest.raises(LlmarchError, match=match):
        hf_model_config(dict(hf, model_type="mllama_text_model"))


def test_what_its_config_cannot_hold_is_not_written():
    cfg = hf_model_config(dict(TEXT, model_type="mllama_text_model"))
    with pytest.raises(LlmarchError, match="qkv_bias"):
        FAMILIES["mllama_text_model"].from_config(cfg.replace(qkv_bias=True))
    with pytest.raises(LlmarchError, match="head_vocab"):
        FAMILIES["mllama_text_model"].from_config(cfg.replace(head_vocab=100))


def test_released_shape_counts_as_transformers():
    """Llama-3.2-11B-Vision's language model widths, 10 of its 40 layers (cross-attention at 3 and 8): llmarch's
    parameter count, the cross-attention layers' weights and the 8 extra embedding rows included, is transformers'."""
    from llmarch.analysis.accounting import model_facts

    conf = transformers.MllamaTextConfig(num_hidden_layers=10, cross_attention_layers=[3, 8])
    with torch.device("meta"):
        hf = transformers.MllamaForCausalLM(conf)
    assert model_facts(hf_model_config(conf.to_dict()))["parameters"] == sum(p.numel() for p in hf.parameters())


def test_flops_leave_out_the_skipped_cross_attention_layers(tmp_path):
    """`llmarch info`'s training FLOPs per token are within 3% of a forward's counted FLOPs (conftest's
    measured_flops_per_token): a 'vision_cross' layer, skipped without image states, counts in the parameters and not
    in the FLOPs. Until 2026-12-07 it counted in both, 43% over."""
    from conftest import measured_flops_per_token
    from llmarch.analysis.accounting import model_facts

    _, ours = build("one-cross", tmp_path)
    T = 16
    measured = measured_flops_per_token(ours, torch.randint(3, 120, (1, T)), tokens=T)
    assert abs(model_facts(ours.config.replace(context_length=T))["flops_per_token"] / measured - 1) < 0.03
