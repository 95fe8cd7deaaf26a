"""Falcon Mamba (`model_type: falcon_mamba`) against transformers, through files as the other families' parity tests:
a tiny seeded random FalconMambaForCausalLM (1-D parameters perturbed), Mamba-1 with gainless RMS norms over dt, B
and C; its mixer_rms_eps the default 1e-6, or 0.25 (so that an epsilon taken from the wrong field shows); tied and
untied. Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding
equal to the whole forward, a to_hf round trip that transformers loads with the same logits and that reads back to
the same config."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, state_size=8, initializer_range=0.1, bos_token_id=1,
            eos_token_id=2)
CASES = {"tied": {}, "untied-wide-eps": dict(tie_word_embeddings=False, mixer_rms_eps=0.25, time_step_rank=6)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.FalconMambaForCausalLM(transformers.FalconMambaConfig(**{**BASE, **CASES[case]})).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    eps, rank = (0.25, 6) if "eps" in case else (1e-6, 4)
    assert (cfg.mixer, cfg.ssm_inner_norm, cfg.ssm_inner_norm_gain, cfg.ssm_inner_norm_eps) == ("mamba", True, False,
                                                                                                 eps)
    assert (cfg.ssm_dt_rank, cfg.tie_embeddings) == (rank, case == "tied")
    ids, mask, _ = assert_matches_transformers(hf, ours, "FalconMambaForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    with torch.no_grad():  # a prompt, then one token per step, equals the whole left-padded forward
        full = ours(ids, attention_mask=mask).logits
    steps = stepwise_logits(ours, ids, 14, mask)
    assert (steps - full)[mask.bool()].abs().max() < 1e-4


def test_to_hf_refuses_norms_falcon_mamba_has_not(tmp_path):
    """Learned gains on the dt, B, C norms (Jamba's), or no such norms at all, are not Falcon Mamba; and Mamba's
    layout refuses Falcon Mamba's norms."""
    torch.manual_seed(0)
    transformers.FalconMambaForCausalLM(transformers.FalconMambaConfig(**BASE)).save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    for change in (dict(ssm_inner_norm_gain=True), dict(ssm_inner_norm=False), dict(hf_model_type="mamba")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match="needs ssm_inner_norm"):
            to_hf(ours, tmp_path / "out")
        ours.config = from_hf(tmp_path / "hf").config
