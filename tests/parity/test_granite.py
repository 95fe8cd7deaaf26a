"""IBM Granite 3.x against transformers, through files (as test_dense_families.py does): a tiny seeded random
GraniteForCausalLM (1-D parameters perturbed) with its four scalars far from 1 (embeddings x 12, scores x 1/d,
residual branches x 0.22, logits / 8, as the released models' magnitudes), read by from_hf; logits on a left-padded
batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole forward, a
to_hf round trip that transformers loads with the same logits. Then each scalar alone, by its effect on llmarch."""
import pytest
import torch

import llmarch
from llmarch.analysis.hooks import run_with_cache
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=96, bos_token_id=1, eos_token_id=2, embedding_multiplier=12.0,
              attention_multiplier=1 / 16, residual_multiplier=0.22, logits_scaling=8.0, initializer_range=0.1)
CASES = {
    # Granite 3.x's shape: GQA, no biases, a tied head
    "tied": dict(COMMON, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e7}),
    # biases on q, k, v, o and the MLP, an untied head, head_dim != d / heads
    "biased-untied": dict(COMMON, attention_bias=True, mlp_bias=True, tie_word_embeddings=False, head_dim=24),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.GraniteForCausalLM(transformers.GraniteConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.embed_multiplier, cfg.attn_scale, cfg.residual_multiplier, cfg.logit_divisor) == (12.0, 1 / 16, 0.22,
                                                                                                  8.0)
    assert cfg.head_dim == hf.model.layers[0].self_attn.head_dim and cfg.bias == hf.config.mlp_bias
    ids, mask, generated = assert_matches_transformers(hf, ours, "GraniteForCausalLM", tmp_path)
    full_mask = torch.cat([mask, torch.ones(mask.shape[0], 32, dtype=mask.dtype)], 1)
    with torch.no_grad():
        again = ours(generated, attention_mask=full_mask).logits
    assert torch.equal(again[:, ids.shape[1] - 1:-1].argmax(-1), generated[:, ids.shape[1]:])
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


# a tiny norm epsilon: with it RMSNorm reads a residual stream scaled by a constant as the same
TINY = dict(n_layers=2, d_model=32, n_heads=4, vocab_size=64, ffn_hidden=64, context_length=32, norm_eps=1e-12)


def test_each_scalar_does_what_it_says():
    torch.manual_seed(0)
    base = llmarch.build("llama-tiny", **TINY).eval()
    ids = torch.randint(0, 64, (2, 9))

    def like(**fields):  # the same weights, one scalar changed
        model = llmarch.build("llama-tiny", **TINY, **fields).eval()
        model.load_state_dict(base.state_dict())
        return model

    with torch.no_grad():
        logits = base(ids).logits
        assert torch.allclose(like(logit_divisor=4.0)(ids).logits, logits / 4, atol=1e-6)
        # RMSNorm reads a scaled residual stream as the same, so scaling the embeddings alone changes the branches'
        # share of the stream; scaling them with it gives the base model's stream times 3, and its logits
        _, h = run_with_cache(like(embed_multiplier=3.0), ids, ["blocks.1.hook_resid_post"])
        _, b = run_with_cache(base, ids, ["blocks.1.hook_resid_post"])
        assert not torch.allclose(h["blocks.1.hook_resid_post"], 3 * b["blocks.1.hook_resid_post"], atol=1e-3)
        both = like(embed_multiplier=3.0, residual_multiplier=3.0)
        assert (both(ids).logits - logits).abs().max() <= 1e-4
        # hook_attn_out sees what is added: resid_mid = resid_pre + attn_out
        _, seen = run_with_cache(both, ids, [f"blocks.0.{n}" for n in ("hook_resid_pre", "hook_attn_out",
                                                                       "hook_resid_mid")])
        assert torch.allclose(seen["blocks.0.hook_resid_pre"] + seen["blocks.0.hook_attn_out"],
                              seen["blocks.0.hook_resid_mid"], atol=1e-6)


def test_a_multiplier_of_one_adds_nothing_to_a_block():
    block = llmarch.build("llama-tiny", **TINY).blocks[0]
    assert block.branch is block.drop  # the dropout (here the identity function) itself: no extra call or op
    assert "branch" not in block._modules
    assert llmarch.build("llama-tiny", **TINY)._embed_multiplier is None


@pytest.mark.parametrize("fields,problem", [
    (dict(embed_multiplier=0.0), "embed_multiplier must be positive"),
    (dict(residual_multiplier=-1.0), "residual_multiplier must be positive"),
    (dict(logit_divisor=float("inf")), "logit_divisor must be a finite number"),
    (dict(logit_divisor=2.0, head="classify"), "head='classify'"),
])
def test_bad_scalars_are_refused(fields, problem):
    with pytest.raises(LlmarchError, match=problem):
        llmarch.build("llama-tiny", **TINY, **fields)


def test_granite_moe_and_what_granite_cannot_compute_are_refused(tmp_path):
    with pytest.raises(LlmarchError, match="Granite MoE's model_type is granitemoe"):
        hf_model_config(dict(COMMON, model_type="granite", num_local_experts=4))
    shared = hf_model_config(dict(COMMON, model_type="granitemoeshared", num_local_experts=4,
                                  shared_intermediate_size=2 * COMMON["intermediate_size"]))
    assert (shared.n_experts, shared.n_shared_experts) == (4, 2)  # read now (test_dense_families.py)
    torch.manual_seed(0)
    transformers.GraniteForCausalLM(transformers.GraniteConfig(**CASES["tied"])).save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    for change, problem in ((dict(embed_scale=True), "embed_scale=False"), (dict(ffn="gelu"), "a gated ffn"),
                            (dict(sliding_window=8), "sliding_window=None")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match=problem):
            to_hf(ours, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        ours.config = from_hf(tmp_path / "hf").config


def test_granite_moe_logits_generation_and_round_trip(tmp_path):
    """Granite MoE (granitemoe: granite-3.0-1b-a400m's layout): Granite's scalars with every FFN 4 stacked SwiGLU
    experts, top 2 (`block_sparse_moe.input_linear` / `output_linear` / `router.layer`), against transformers'
    GraniteMoeForCausalLM as the dense Granite above, and a to_hf round trip."""
    fields = {k: v for k, v in COMMON.items() if k != "intermediate_size"}
    torch.manual_seed(0)
    hf = transformers.GraniteMoeForCausalLM(transformers.GraniteMoeConfig(
        **fields, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=True)).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert (cfg.n_experts, cfg.experts_per_token, cfg.expert_hidden, cfg.embed_multiplier) == (4, 2, 48, 12.0)
    assert_matches_transformers(hf, ours, "GraniteMoeForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_granite_moe_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(LlmarchError, match="granitemoe with attention_bias=True"):
        hf_model_config({**COMMON, "model_type": "granitemoe", "num_local_experts": 4, "attention_bias": True})
    dense = llmarch.build("llama-tiny", hf_model_type="granitemoe", n_layers=1, d_model=32, n_heads=4,
                          vocab_size=64, ffn_hidden=64)
    with pytest.raises(LlmarchError, match="needs a mixture of experts"):
        to_hf(dense, tmp_path / "dense")
