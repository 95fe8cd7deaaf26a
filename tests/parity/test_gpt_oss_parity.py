"""gpt-oss against `transformers`: a tiny seeded random GptOssForCausalLM (sinks, alternating sliding and full
layers with a window shorter than the prompts, YaRN RoPE, biased router, clamped-SwiGLU experts with biases),
loaded with `from_hf` and compared on a left-padded batch in fp32 (max |dlogit| <= 1e-4); greedy generation of
32 tokens equals transformers' generate; cached decoding equals the full forward; `to_hf` output loads back
into transformers with the same logits. Also YaRN's frequencies against transformers' own computation."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf
from llmarch.layers.positions import RotaryPositions

from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")

YARN = {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "truncate": False, "original_max_position_embeddings": 16}
TINY = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
            max_position_embeddings=64, rope_parameters=YARN)
CASES = {
    "gpt-oss": TINY,
    # a small limit, so the clamps of the SwiGLU bite, another alpha; sliding, sliding, full layers
    "gpt-oss-clamped": dict(TINY, num_hidden_layers=3, swiglu_limit=0.1, swiglu_alpha=1.5, num_experts_per_tok=3,
                            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                            rope_parameters=dict(YARN, truncate=True)),
}


def build_hf(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(**CASES[case])).eval()
    with torch.no_grad():  # random biases, gains and sinks, so a swapped or de-interleaved one cannot hide
        for name, p in hf.named_parameters():
            if p.dim() == 1 or name.endswith("_bias"):
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("sinks"):
                p.normal_(0, 2.0)
            if name.endswith("router.weight"):  # 0.02 init: near-uniform routing would hide swaps
                p.mul_(20.0)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(case, tmp_path)
    ours = from_hf(tmp_path / "hf")
    assert ours.config.attn_sinks and ours.config.ffn == "swiglu_clamped" and ours.config.rope_scaling == "yarn"
    kinds = {"sliding_attention": "SlidingWindowKind", "full_attention": "Full"}
    assert [type(b.attn.kind).__name__ for b in ours.blocks] == [kinds[t] for t in hf.config.layer_types]
    # prompts of 20 and 13 tokens, past the window of 8
    assert_matches_transformers(hf, ours, "GptOssForCausalLM", tmp_path)


def test_cached_decoding_equals_the_full_forward(tmp_path):
    build_hf("gpt-oss", tmp_path)
    ours = from_hf(tmp_path / "hf")
    ids = torch.randint(0, 128, (2, 40))
    with torch.no_grad():
        full = ours(ids).logits
        ours.setup_cache(2, 40)
        steps = [ours(ids[:, :12], input_pos=torch.arange(12), kv_len=12).logits]
        steps += [ours(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(12, 40)]
        ours.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


@pytest.mark.parametrize("params", [
    YARN, dict(YARN, truncate=True), dict(YARN, factor=40.0, beta_fast=16.0, beta_slow=2.0),
    dict(YARN, attention_factor=0.8),
    # DeepSeek-V3's form: mscale and mscale_all_dim set the attention factor; rotary dims of a partial rope
    dict(YARN, mscale=0.707, mscale_all_dim=1.0, partial_rotary_factor=0.5),
])
def test_yarn_equals_transformers(params):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from llmarch.interop.llama import rope_fields

    hf_cfg = transformers.GptOssConfig(**dict(TINY, rope_parameters=params))
    inv_freq, factor = ROPE_INIT_FUNCTIONS["yarn"](hf_cfg)
    fields = rope_fields(dict(rope_parameters=params, max_position_embeddings=64))
    fraction = params.get("partial_rotary_factor", 1.0)
    cfg = llmarch.ModelConfig(positions="rope", head_dim=16, n_heads=4, d_model=64, rope_fraction=fraction,
                              context_length=64, **fields)
    rope = RotaryPositions(cfg)
    assert torch.allclose(rope.inv_freq, inv_freq, rtol=1e-6, atol=0)
    assert rope.attn_factor == pytest.approx(factor)
    cos, sin = rope.rotary(torch.arange(5)[None])
    assert torch.allclose(cos[0, 0], torch.full_like(cos[0, 0], factor))
