"""llmarch's GPT-2 against transformers' GPT2LMHeadModel with the same weights (fp32, max |dlogit| <= 1e-4)."""
import pytest
import torch

import llmarch
from llmarch.checkpoint import state_for_saving
from llmarch.interop import export_state, import_state
from llmarch.interop.gpt2 import RULES, hf_config

transformers = pytest.importorskip("transformers")


def test_gpt2_logits_match_transformers():
    torch.manual_seed(0)
    ours = llmarch.build("gpt2", n_layers=2, d_model=128, n_heads=4, vocab_size=1000, context_length=64).eval()
    cfg = ours.config
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config(cfg))).eval()
    missing, unexpected = hf.load_state_dict(export_state(ours.state_dict(), RULES, cfg), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    x = torch.randint(0, 1000, (2, 40))
    with torch.no_grad():
        diff = (ours(x).logits - hf(x).logits).abs().max().item()
    assert diff <= 1e-4
    # and back: transformers' weights -> ours reproduce the original state exactly
    back = import_state(hf.state_dict(), RULES, cfg)
    assert all(torch.equal(back[k], v) for k, v in state_for_saving(ours).items())
