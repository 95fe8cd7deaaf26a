"""NVIDIA Nemotron-H (nemotron_h) against transformers, through files as the other families' parity tests: tiny seeded
random NemotronHForCausalLM models (1-D parameters perturbed, routers made decisive and their correction bias moved)
whose layers are each ONE of Mamba-2, attention, MLP and MoE. A dense Nemotron-H / Nano 2 shape (older config keys:
hybrid_override_pattern, mamba_n_groups; Mamba-2 heads x head_dim unlike expand x hidden; MLP and Mamba biases) and
Nemotron 3 Nano's mixture (grouped sigmoid routing with the correction bias, renormalised or not, scaled, a shared
MLP). Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', a to_hf round trip
that transformers loads with the same logits and that reads back to the same config; cached decoding equals the
whole forward, also under continuous batching."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import gguf_reads_back, perturbed_from_hf, stepwise_logits
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=96, mamba_num_heads=8, mamba_head_dim=12, ssm_state_size=16, n_groups=2, conv_kernel=4,
            chunk_size=8, initializer_range=0.1, layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)
MOE = dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
           moe_shared_expert_intermediate_size=48, n_group=2, topk_group=1, routed_scaling_factor=2.5)
CASES = {
    # Nemotron-H / Nano 2: Mamba-2, MLP and attention layers, written with the older keys
    "dense": dict(hybrid_override_pattern="M-M*-", mamba_n_groups=4, mlp_bias=True, use_bias=True),
    # Nemotron 3 Nano: MoE layers in place of the MLPs
    "moe": dict(layers_block_type=["linear_attention", "moe", "full_attention", "linear_attention", "moe"], **MOE),
    "moe-unnormalised": dict(layers_block_type=["linear_attention", "moe", "mlp", "full_attention", "moe"],
                             norm_topk_prob=False, **MOE),
}
# a stack whose first layer is an MoE one: transformers' generate fails on it (its cache asks layer 0 for a length,
# which an MoE layer's placeholder has not), so its forward is compared, and llmarch's cached decoding with it
MOE_FIRST = dict(layers_block_type=["moe", "linear_attention", "full_attention", "mlp", "moe"], **MOE)
KINDS = {"linear_attention": "Mamba2", "full_attention": "Attention", "mlp": "NoMixer", "moe": "NoMixer"}


def build_hf(case: str | dict):
    torch.manual_seed(0)
    change = case if isinstance(case, dict) else MOE_FIRST if case == "moe-first" else CASES[case]
    hf = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**{**BASE, **change})).eval()
    with torch.no_grad():  # routers decisive and their correction bias off zero, so a wrong choice would show
        for name, p in [*hf.named_parameters(), *hf.named_buffers()]:
            if name.endswith("mixer.gate.weight"):
                p.mul_(20.0)
            if name.endswith("e_score_correction_bias"):
                p.copy_(torch.randn_like(p) * 0.5)
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(case)
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert [type(b.seq_mixer).__name__ for b in ours.blocks] == [KINDS[t] for t in hf.config.layers_block_type]
    assert [b.mlp is None for b in ours.blocks] == [t in ("linear_attention", "full_attention")
                                                    for t in hf.config.layers_block_type]
    assert cfg.ssm_inner == 8 * 12 and cfg.ssm_head_dim == 12 and cfg.positions == "none" and not cfg.tie_embeddings
    assert_matches_transformers(hf, ours, "NemotronHForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_cached_decoding_equals_the_whole_forward(tmp_path):
    """A stack that starts with an MoE layer: its logits are transformers' on a left-padded batch, and a prompt and
    then one token per call give the logits of one call over the whole sequence (the MoE's and MLP's empty decode
    states among Mamba-2's state and attention's KV cache)."""
    hf = build_hf("moe-first")
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = ours(ids).logits
    assert (stepwise_logits(ours, ids, 11) - full).abs().max() < 1e-4


def test_continuous_batching_decodes_each_request_as_alone():
    from test_continuous_batching import run_batch

    cfg = hf_model_config({**BASE, **CASES["moe"], "model_type": "nemotron_h", "vocab_size": 300,
                           "max_position_embeddings": 48})
    torch.manual_seed(0)
    model = llmarch.build(cfg).eval()
    g = torch.Generator().manual_seed(1)
    lengths, news = [3, 20, 5, 30, 1, 12], [20, 9, 25, 12, 30, 10]
    prompts = [torch.randint(0, 300, (n,), generator=g).tolist() for n in lengths]
    alone = [llmarch.generate(model, [p], n)[0][len(p):] for p, n in zip(prompts, news)]
    outs, moves = run_batch(model, prompts, news, rows=3, join_every=3)
    assert outs == alone
    assert any(n > 0 for n in moves) and any(n < 0 for n in moves)


@pytest.mark.parametrize("change,problem", [
    (dict(layers_block_type=["mamba", "mlp"]), "unknown layer type 'mamba'"),
    (dict(layers_block_type=None, hybrid_override_pattern="M-X"), "hybrid_override_pattern has 'X'"),
    (dict(mlp_hidden_act="silu"), "mlp_hidden_act 'silu'"),
    (dict(moe_latent_size=16), "moe_latent_size"),
    (dict(attention_bias=True), "attention_bias=True"),
    (dict(sliding_window=8), "sliding_window"),
    (dict(time_step_limit=[0.0, 10.0]), "time_step_limit"),
    (dict(mlp_bias=True), "mlp_bias with MoE layers"),
])
def test_what_llmarch_cannot_hold_is_named(change, problem):
    with pytest.raises(LlmarchError, match=problem):
        hf_model_config({**BASE, **CASES["moe"], "model_type": "nemotron_h", **change})


def test_to_hf_refuses_a_layer_with_two_parts(tmp_path):
    """A layer of mixer and FFN both (or a change per layer type other than its part) has no nemotron_h layout."""
    from llmarch.interop import to_hf

    cfg = hf_model_config({**BASE, **CASES["dense"], "model_type": "nemotron_h"})
    for change, problem in ((dict(layer_overrides={"mamba": {"mixer": "mamba2"}, "mlp": {"mixer": "none"}}),
                             "each layer one part"),
                            (dict(layer_overrides={**cfg.layer_overrides, "attention": {"ffn": "none", "head_dim": 8}}),
                             "not head_dim"), (dict(positions="rope"), "positions='none'")):
        with pytest.raises(LlmarchError, match=problem):
            to_hf(llmarch.build(cfg.replace(**change), device="meta"), tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_no_mixer_is_checked():
    base = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, layer_types=["a", "f"])
    with pytest.raises(LlmarchError, match="sequential pre-norm"):
        llmarch.resolve("llama-tiny", **base, norm_placement="sandwich", layer_overrides={"f": {"mixer": "none"}})


@pytest.mark.parametrize("case", ["nano2-9b", "nano3-30b-a3b"])
def test_full_size_shapes_count_as_transformers(case):
    """Published shapes (Nemotron Nano 2 9B: 56 layers of 4480, Mamba-2 of 128 heads of 80; Nemotron 3 Nano 30B-A3B:
    52 layers of 2688, 128 experts of 1856 plus a shared MLP of 3712): llmarch's model (on the meta device) has
    transformers' parameter count."""
    if case == "nano2-9b":
        pattern = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-"
        hf = dict(vocab_size=131072, hidden_size=4480, hybrid_override_pattern=pattern, num_attention_heads=40,
                  num_key_value_heads=8, head_dim=128, intermediate_size=15680, mamba_num_heads=128,
                  mamba_head_dim=80, ssm_state_size=128, n_groups=8)
    else:
        pattern = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
        hf = dict(vocab_size=131072, hidden_size=2688, hybrid_override_pattern=pattern, num_attention_heads=32,
                  num_key_value_heads=2, head_dim=128, intermediate_size=1856, mamba_num_heads=64, mamba_head_dim=64,
                  ssm_state_size=128, n_groups=8, n_routed_experts=128, num_experts_per_tok=6,
                  moe_intermediate_size=1856, moe_shared_expert_intermediate_size=3712, n_group=1, topk_group=1,
                  routed_scaling_factor=2.5)
    config = transformers.NemotronHConfig(**hf)
    cfg = hf_model_config({**config.to_dict(), "model_type": "nemotron_h"})
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        assert ours == transformers.NemotronHForCausalLM(config).num_parameters()


# GGUF (llama.cpp's nemotron_h, and nemotron_h_moe with experts): a vocabulary for llmarch's byte tokenizer; llama.cpp's
# Mamba-2 has no projection biases, its nemotron_h_moe no router groups and no MLP layers beside the MoE ones
GGUF = {"nemotron_h": dict(CASES["dense"], use_bias=False, vocab_size=272),
        "nemotron_h_moe": dict(MOE, n_group=1, topk_group=1, vocab_size=272,
                               layers_block_type=["linear_attention", "moe", "full_attention", "moe",
                                                  "linear_attention"])}


@pytest.mark.parametrize("case", sorted(GGUF))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    """llmarch writes the file, reads it back to the same config and logits (1e-4), and llama.cpp decodes it to
    llmarch's greedy tokens with logits within 1e-4 (an F32 KV cache: with llama.cpp's default F16 one, 1e-3)."""
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    gguf = pytest.importorskip("gguf")
    model = perturbed_from_hf(build_hf(GGUF[case]), tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == case
    back = gguf_reads_back(path, model, exact=True, apart=1e-4)
    assert back.config.layer_types == model.config.layer_types and back.config.hf_model_type == "nemotron_h"


@pytest.mark.parametrize("case,change,problem", [
    ("nemotron_h", dict(use_bias=True), "ssm_bias=False"),
    ("nemotron_h_moe", dict(n_group=2), "router without groups"),
    ("nemotron_h_moe", dict(layers_block_type=["linear_attention", "moe", "full_attention", "mlp"]),
     "no MLP layers beside MoE layers"),
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(case, change, problem, tmp_path):
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    cfg = hf_model_config({**BASE, **GGUF[case], **change, "model_type": "nemotron_h"})
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(llmarch.build(cfg), tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
