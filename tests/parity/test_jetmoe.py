"""JetMoE (`model_type: jetmoe`) against transformers, through files: a tiny seeded JetMoeForCausalLM (its norms
and the zero-initialised output biases of the attention experts and the MoE perturbed, its routers made
decisive), read by from_hf: logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to
transformers', cached decoding equal to the whole forward, and a to_hf round trip that transformers loads to the
same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config
from llmarch.layers.moa import MoA

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_key_value_heads=2, kv_channels=16,
             intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, pad_token_id=0)
CASES = {"tied": SMALL,
         # 3 of 4 experts per token (6 query heads over 2 key/value heads), an untied head, a final-norm epsilon
         # other than the blocks' 1e-6
         "top3-untied-eps": dict(SMALL, num_experts_per_tok=3, tie_word_embeddings=False, rms_norm_eps=0.05)}


@torch.no_grad()
def _decisive(hf):
    """Routers (0.01-init) scaled up so that a wrong choice of experts shows."""
    for name, p in hf.named_parameters():
        if name.endswith("router.layer.weight"):
            p.mul_(30.0)
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = _decisive(transformers.JetMoeForCausalLM(transformers.JetMoeConfig(**CASES[case]))).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert isinstance(ours.blocks[0].attn, MoA) and cfg.n_heads == cfg.experts_per_token * cfg.n_kv_heads
    assert cfg.final_norm_eps == (0.05 if "eps" in case else None)
    ids, mask, generated = assert_matches_transformers(hf, ours, "JetMoeForCausalLM", tmp_path)
    with torch.no_grad():
        whole = ours(generated, attention_mask=torch.ones_like(generated)).logits
    steps = stepwise_logits(ours, generated, ids.shape[1], torch.ones_like(generated))
    assert (steps - whole).abs().max() <= 1e-4


def test_router_loss_is_transformers_over_both_kinds_of_expert(tmp_path):
    """The load-balancing loss counts the attention experts' routing beside the FFN's, as transformers' aux_loss
    does (within 1e-6); the FFN's alone is another number."""
    from llmarch.models.routing import router_losses

    torch.manual_seed(0)
    hf = transformers.JetMoeForCausalLM(transformers.JetMoeConfig(**SMALL)).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    ids = torch.randint(1, 128, (2, 9))
    with torch.no_grad():
        expected = hf(input_ids=ids, output_router_logits=True).aux_loss
        ours(ids)
    aux = router_losses(ours)["aux"]
    assert abs(float(aux) - float(expected)) <= 1e-6
    ours.blocks[0].attn.routing = ours.blocks[1].attn.routing = None
    assert abs(float(router_losses(ours)["aux"]) - float(expected)) > 1e-3


def test_other_activations_are_refused():
    with pytest.raises(LlmarchError, match="activation_function"):
        hf_model_config(dict(SMALL, model_type="jetmoe", activation_function="gelu"))


def test_released_shape_counts_as_transformers():
    from llmarch.analysis.accounting import model_facts

    shape = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=24, num_key_value_heads=16, kv_channels=128,
                 intermediate_size=5632, num_local_experts=8, num_experts_per_tok=2)  # JetMoE-8B
    with torch.device("meta"):
        hf = transformers.JetMoeForCausalLM(transformers.JetMoeConfig(**shape))
    assert model_facts(hf_model_config({**shape, "model_type": "jetmoe"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())
