"""Recent decoder families against transformers 5.25, through files: for each, a tiny seeded model (2 layers, widths
of 64, 1-D parameters perturbed, routers made decisive) saved with save_pretrained and read by from_hf: logits on a
left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole
forward, and a to_hf round trip that transformers loads to the same logits and llmarch to the same config.

aria_text: Aria's MoE language model (AriaTextForCausalLM), its shared experts GELU-gated here (hidden_act) beside
the routed experts, which are always SiLU-gated."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import to_hf

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf, routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             pad_token_id=0)


@torch.no_grad()
def decisive(hf, suffix: str):
    """routed_apart, and the routers it does not know by name (`suffix`) scaled as it scales the others."""
    for name, p in hf.named_parameters():
        if name.endswith(suffix):
            p.mul_(20.0)
    return routed_apart(hf)


def parity(hf, exported: str, tmp_path):
    """The whole check on a built transformers model; returns llmarch's model."""
    ours = perturbed_from_hf(hf.eval(), tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    ids, mask, generated = assert_matches_transformers(hf, ours, exported, tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")
    return ours


def test_aria_text(tmp_path):
    torch.manual_seed(0)
    config = transformers.AriaTextConfig(**SMALL, intermediate_size=32, moe_num_experts=4, moe_topk=2,
                                         moe_num_shared_experts=2, hidden_act="gelu",
                                         initializer_range=0.1)
    ours = parity(decisive(transformers.AriaTextForCausalLM(config), "mlp.router.weight"), "AriaTextForCausalLM",
                  tmp_path)
    cfg = ours.config
    assert (cfg.n_experts, cfg.n_shared_experts, cfg.shared_hidden, cfg.ffn, cfg.expert_ffn) == \
        (4, 2, 64, "geglu", "swiglu")
    ours.config = cfg.replace(shared_expert_gate=True)
    with pytest.raises(LlmarchError, match="ungated shared experts"):
        to_hf(ours, tmp_path / "refused")
    ours.config = cfg
