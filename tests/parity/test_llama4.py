"""Llama 4 (interop/llama4.py) against transformers, through files: tiny seeded random Llama4ForCausalLM models with
RoPE layers (chunked attention over 8 positions, RMS QK-norm, adjacent-pair RoPE) and a NoPE layer (full attention
with temperature tuning, floor_scale 4 so it binds within the 13-20-token prompts), expert layers (sigmoid top-k
routing that scales the experts' inputs, a shared expert) and dense ones; the router scaled up so routing is far from
uniform. Logits on a left-padded batch, 32 greedy tokens, cached decoding, a to_hf round trip, and the text model of a
Llama4ForConditionalGeneration checkpoint (its images: test_llama4_vision.py).

transformers' temperature tuning counts the cache slot, not the row's position (Llama4TextAttention), so its
left-padded rows differ from the same rows alone on the NoPE layers; llmarch counts the position, as Meta's code
does, so its padded batch is compared with transformers' rows one at a time, unpadded."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf

from conftest import stepwise_logits
from test_hf_families import padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=32, intermediate_size_mlp=96, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4, attention_chunk_size=8,
            floor_scale=4, attn_scale=0.5, max_position_embeddings=256, rms_norm_eps=1e-5, pad_token_id=0)
CASES = {
    # Scout's shape: experts on every layer, top-1, QK-norm; layer 3 NoPE
    "scout": dict(TEXT),
    # Maverick's: experts on layers 1 and 3 (dense on 0 and 2), no QK-norm; here top-2
    "maverick": dict(TEXT, interleave_moe_layer_step=2, use_qk_norm=False, num_experts_per_tok=2),
}


def perturb(hf):
    """Random norm gains, and a router 20 times its 0.02 init: near-uniform routing would hide a swapped expert."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("router.weight"):
                p.mul_(20.0)
    hf.generation_config.eos_token_id = None
    return hf


def build(case, tmp_path):
    torch.manual_seed(0)
    hf = perturb(transformers.Llama4ForCausalLM(transformers.Llama4TextConfig(**CASES[case])).eval())
    hf.save_pretrained(tmp_path / "hf")
    return hf, from_hf(tmp_path / "hf")


def rows_alone(hf, ids, mask):
    """transformers' logits of each row of a left-padded batch run alone, unpadded: (B, T, V), 0 at padding."""
    out = torch.zeros(*ids.shape, hf.config.vocab_size)
    with torch.no_grad():
        for r in range(ids.shape[0]):
            real = mask[r].bool()
            out[r, real] = hf(ids[r:r + 1, real]).logits[0]
    return out


def max_diff_on_real(a, b, mask):
    return (a[mask.bool()] - b[mask.bool()]).abs().max().item()


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_reads_every_llama4_part(case, tmp_path):
    _, ours = build(case, tmp_path)
    cfg = ours.config
    assert cfg.layer_types == ["chunked_attention"] * 3 + ["full_attention_nope"]
    rope, nope = cfg.for_layer(0), cfg.for_layer(3)
    assert (rope.attention, rope.positions, rope.attn_temp_scale) == ("chunked", "rope", 0.0)
    assert rope.qk_norm == ("rms_after_rope" if case == "scout" else "none")
    assert (nope.attention, nope.positions, nope.qk_norm, nope.attn_temp_scale) == ("full", "none", "none", 0.5)
    assert (cfg.attention_chunk, cfg.attn_temp_floor, cfg.router_scoring, cfg.expert_input_weighted) == \
        (8, 4, "sigmoid", True)
    assert [cfg.is_moe_layer(i) for i in range(4)] == ([True] * 4 if case == "scout" else [False, True] * 2)


@pytest.mark.parametrize("case", sorted(CASES))
def test_left_padded_logits_and_greedy_tokens(case, tmp_path):
    hf, ours = build(case, tmp_path)
    torch.manual_seed(1)
    ids, mask = padded_batch(128)  # rows of 20 and 13 tokens: chunks of 8 bind, floor((p + 1) / 4) grows
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert max_diff_on_real(mine, rows_alone(hf, ids, mask), mask) <= 1e-4
    with torch.no_grad():  # the unpadded row is transformers' own batch row too
        assert (mine[0] - hf(ids, attention_mask=mask).logits[0]).abs().max() <= 1e-4

    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=32)
    T = ids.shape[1]
    for r in range(ids.shape[0]):
        prompt = ids[r:r + 1, mask[r].bool()]
        theirs = hf.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert torch.equal(generated[r, T:], theirs[0, prompt.shape[1]:])


@pytest.mark.parametrize("case", sorted(CASES))
def test_cached_decoding_equals_the_full_forward(case, tmp_path):
    """A left-padded prompt, then one token at a time over the KV cache: across chunk boundaries and the growing
    temperature, what one forward over the whole padded batch gives."""
    _, ours = build(case, tmp_path)
    assert cached_against_full(ours) <= 1e-4


def cached_against_full(ours) -> float:
    """Max |dlogit| on real tokens between a left-padded batch (rows of 30 and 22) decoded over the cache, a
    20-token prompt then one token at a time, and one forward over the whole batch."""
    torch.manual_seed(2)
    ids, mask = padded_batch(128, lengths=(30, 22))
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
    return max_diff_on_real(stepwise_logits(ours, ids, 20, mask), full, mask)


@pytest.mark.parametrize("case", sorted(CASES))
def test_to_hf_round_trip(case, tmp_path):
    hf, ours = build(case, tmp_path)
    to_hf(ours, tmp_path / "out")
    again = transformers.Llama4ForCausalLM.from_pretrained(tmp_path / "out").eval()
    for key in ("no_rope_layers", "layer_types", "moe_layers", "attention_chunk_size", "use_qk_norm",
                "attn_temperature_tuning", "attn_scale", "floor_scale", "intermediate_size", "intermediate_size_mlp",
                "num_experts_per_tok", "num_local_experts", "head_dim"):
        assert getattr(again.config, key) == getattr(hf.config, key), key
    ids = torch.randint(0, 128, (2, 21))
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    assert (from_hf(tmp_path / "out").config.to_dict() == ours.config.to_dict())


def test_vision_language_checkpoint_reads_its_text_model(tmp_path):
    """Llama4ForConditionalGeneration (Scout and Maverick as published): config text_config, the text model under
    language_model.model.; read with its vision model and projector (test_llama4_vision.py), its text-only logits
    transformers'."""
    torch.manual_seed(0)
    conf = transformers.Llama4Config(
        text_config=CASES["scout"],
        vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14, vision_output_dim=32, projector_input_dim=32,
                           projector_output_dim=32))
    hf = perturb(transformers.Llama4ForConditionalGeneration(conf).eval())
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.hf_model_type == "llama4" and ours.config.vision["width"] == 32
    ids = torch.randint(1, 128, (2, 21))
    with torch.no_grad():
        assert (ours(ids).logits - hf(input_ids=ids).logits).abs().max() <= 1e-4
