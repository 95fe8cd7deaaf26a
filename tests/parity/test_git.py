"""GIT (`model_type: git`, GitForCausalLM) against transformers, through files, on its text-only path (no
pixel_values): tiny seeded GitForCausalLM models (1-D parameters perturbed, a tiny CLIP image encoder and projection
beside the text decoder), untied with GELU and tied with ReLU: logits on a left-padded batch within 1e-4 (fp32), 32
greedy tokens equal to transformers' generate, cached decoding equal to the whole forward, a to_hf round trip that
transformers loads to the same logits and llmarch to the same config. The image encoder and projection are held
(interop/git.py: read, written back as read, never run by the model; pixel_values refused); run apart, our tower and
projector give transformers' projected image features."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=8,
              patch_size=4)
BASE = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=64, vision_config=VISION)
CASES = {"git-base-style": BASE, "tied-relu": dict(BASE, tie_word_embeddings=True, hidden_act="relu")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_cached_decoding_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.GitForCausalLM(transformers.GitConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.norm_placement, cfg.final_norm, cfg.causal, cfg.head_bias, cfg.tie_embeddings) == \
        ("post", False, True, True, case == "tied-relu")
    ids, mask, generated = assert_matches_transformers(hf, ours, "GitForCausalLM", tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")
    again = transformers.GitForCausalLM.from_pretrained(tmp_path / "out")
    theirs, back = hf.state_dict(), again.state_dict()
    image = [k for k in theirs if k.startswith(("git.image_encoder.", "git.visual_projection."))]
    assert len(image) == 27 and all(torch.equal(theirs[k], back[k]) for k in image)
    pixels = torch.randn(2, 3, 8, 8)
    with pytest.raises(LlmarchError, match="held"):
        ours(ids, pixel_values=pixels)
    with torch.no_grad():  # the held weights are GIT's image side: run apart, they give its projected features
        features = hf.git.visual_projection(hf.git.image_encoder(pixels).last_hidden_state)
        assert (ours.vision.projector(ours.vision.tower(pixels)) - features).abs().max() <= 1e-4


def test_unsupported_configs_are_refused():
    with pytest.raises(LlmarchError, match="hidden_act"):
        hf_model_config(dict(BASE, model_type="git", hidden_act="tanh"))
    with pytest.raises(LlmarchError, match="num_image_with_embedding"):
        hf_model_config(dict(BASE, model_type="git", num_image_with_embedding=6))


def test_released_shape_counts_as_transformers():
    from llmarch.analysis.accounting import model_facts

    with torch.device("meta"):  # microsoft/git-base: GitConfig's defaults
        hf = transformers.GitForCausalLM(transformers.GitConfig())
    assert model_facts(hf_model_config({"model_type": "git"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())
