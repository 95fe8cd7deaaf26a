"""Qwen2-MoE against transformers, through files (as test_dense_families.py does): tiny seeded random models with
q/k/v biases, a softmax router far from uniform, experts narrower than the sigmoid-gated shared expert, compared on
a left-padded batch (fp32, max |dlogit| <= 1e-4), greedy generation of 32 tokens, cached decoding equal to the
whole forward, and the to_hf round trip (also with a sliding window on every layer); the variants llmarch cannot
express are refused in one line."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import FAMILIES

from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

CONFIG = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=96, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
              shared_expert_intermediate_size=64)
CASES = {
    # Qwen1.5-MoE's shape: every layer a mixture, top-k weights as the softmax gives them, shared expert 2x wide
    "qwen1.5": dict(),
    # a mixture every second layer past the dense first two (layer 3 of 4), renormalised top-k, a tied head; every
    # layer slides over 8 keys, shorter than the 13-20-token prompts
    "sparse-step-sliding": dict(num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[0, 1],
                                norm_topk_prob=True, tie_word_embeddings=True, shared_expert_intermediate_size=32,
                                use_sliding_window=True, sliding_window=8, layer_types=["sliding_attention"] * 4),
    # a shared expert of 48, not a multiple of the experts' 32: one shared MLP of its own width (shared_hidden)
    "shared-48": dict(shared_expert_intermediate_size=48),
}


def perturb(hf):
    """Non-trivial norm gains and biases; a router far from uniform; shared-expert gates away from 1/2."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith(("mlp.gate.weight", "shared_expert_gate.weight")):
                p.normal_(0, 0.4)
    return hf


def build_hf(tmp_path, **changes):
    torch.manual_seed(0)
    hf = perturb(transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(**{**CONFIG, **changes})).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(tmp_path, **CASES[case])
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert cfg.qkv_bias and not cfg.bias and cfg.shared_expert_gate
    assert cfg.shared_hidden == hf.config.shared_expert_intermediate_size
    assert cfg.n_shared_experts == (1 if case == "shared-48" else cfg.shared_hidden // cfg.expert_hidden)
    sparse = case == "sparse-step-sliding"
    assert [cfg.is_moe_layer(i) for i in range(cfg.n_layers)] == ([False, False, False, True] if sparse else [True] * 2)
    assert cfg.sliding_window == (8 if sparse else None)
    ids, mask, generated = assert_matches_transformers(hf, ours, "Qwen2MoeForCausalLM", tmp_path)
    full_mask = torch.cat([mask, torch.ones(mask.shape[0], 32, dtype=mask.dtype)], 1)
    with torch.no_grad():  # cached decoding (generate) equals the whole forward, recomputed without a cache
        again = ours(generated, attention_mask=full_mask).logits
    assert torch.equal(again[:, ids.shape[1] - 1:-1].argmax(-1), generated[:, ids.shape[1]:])
    assert FAMILIES["qwen2_moe"].to_config(FAMILIES["qwen2_moe"].from_config(cfg)) == cfg


@pytest.mark.parametrize("changes,key", [
    (dict(num_hidden_layers=3, mlp_only_layers=[1]), r"mlp_only_layers=\[1\]"),  # not a prefix
    (dict(use_sliding_window=True, sliding_window=8, num_hidden_layers=2), "use_sliding_window"),  # layer 0 only
])
def test_refuses_what_llmarch_cannot_express(changes, key):
    with pytest.raises(LlmarchError, match=key):
        FAMILIES["qwen2_moe"].to_config(transformers.Qwen2MoeConfig(**{**CONFIG, **changes}).to_dict())


def test_qwen1_5_moe_a2_7b_config_counts_as_transformers():
    """Qwen1.5-MoE-A2.7B's config.json (60 experts of 1408, top-4 unrenormalised, a shared expert of 5632 = 4 x
    1408): llmarch's model has transformers' 14,315,784,192 parameters (built on the meta device)."""
    hf = dict(CONFIG, vocab_size=151936, hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
              num_key_value_heads=16, intermediate_size=5632, moe_intermediate_size=1408,
              shared_expert_intermediate_size=5632, num_experts=60, num_experts_per_tok=4, rope_theta=1e6)
    cfg = FAMILIES["qwen2_moe"].to_config(transformers.Qwen2MoeConfig(**hf).to_dict())
    assert (cfg.n_shared_experts, cfg.router_renormalize, cfg.qkv_bias) == (4, False, True)
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        theirs = transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(**hf)).num_parameters()
    assert ours == theirs == 14_315_784_192
