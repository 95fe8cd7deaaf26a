"""Gated DeltaNet (layers/gated_deltanet.py) and the other parts of Qwen3-Next: the chunked form against the
recurrence, the mixer in any family and in hybrid stacks, padding, the attention output gate, the gated shared
expert, the presets' sizes and their decode state."""
import json

import pytest
import torch
import torch.nn.functional as F

import llmarch
from llmarch import LlmarchError, ModelConfig
from llmarch.analysis import model_facts
from llmarch.layers.gated_deltanet import chunk_delta_rule, delta_step

from conftest import stepwise_logits

SMALL = dict(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, context_length=128)


def random_inputs(b=2, T=37, H=3, dk=8, dv=5, seed=0):
    torch.manual_seed(seed)
    q, k = (F.normalize(torch.randn(b, T, H, dk), dim=-1) for _ in range(2))
    v, g, beta = torch.randn(b, T, H, dv), -2 * torch.rand(b, T, H), torch.rand(b, T, H)
    return q, k, v, g, beta, torch.randn(b, H, dk, dv)


@pytest.mark.parametrize("chunk", [1, 5, 8, 16, 64])
def test_chunked_form_equals_the_recurrence(chunk):
    q, k, v, g, beta, S0 = random_inputs()
    S = S0.clone()
    steps = torch.stack([delta_step(q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t], S) for t in range(37)], dim=1)
    o, last = chunk_delta_rule(q, k, v, g, beta, S0, chunk)
    assert (o - steps).abs().max() < 1e-5
    assert (last - S).abs().max() < 1e-5


def test_the_recurrence_is_the_gated_delta_rule():
    """S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T q_t, written out."""
    q, k, v, g, beta, S0 = random_inputs(b=1, T=1)
    S = S0.clone()
    o = delta_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], S)
    for h in range(3):
        kh, a, bh = k[0, 0, h], g[0, 0, h].exp(), beta[0, 0, h]
        expected = a * (torch.eye(8) - bh * torch.outer(kh, kh)) @ S0[0, h] + bh * torch.outer(kh, v[0, 0, h])
        assert torch.allclose(S[0, h], expected, atol=1e-6)
        assert torch.allclose(o[0, h], expected.T @ q[0, 0, h], atol=1e-6)


def deltanet(**overrides):
    torch.manual_seed(0)
    return llmarch.build("llama-tiny", **{**SMALL, "mixer": "gated_deltanet", **overrides}).eval()


@pytest.mark.parametrize("chunk", [4, 7, 64])
def test_any_chunk_gives_the_same_model_and_decoding_continues_it(chunk):
    """Grouped heads (2 query/key heads, 4 value heads): the forward at any chunk length, and a prompt then one
    token per call, equal the recurrence run over the whole sequence one token per call."""
    model = deltanet(delta_heads=2, delta_value_heads=4, delta_key_dim=8, delta_value_dim=6, ssm_chunk=chunk)
    ids = torch.randint(0, 61, (2, 30))
    with torch.no_grad():
        full = model(ids).logits
    assert (full - stepwise_logits(model, ids, 1)).abs().max() < 1e-4  # every token in a call of its own
    assert (stepwise_logits(model, ids, 21) - full).abs().max() < 1e-4


def test_left_padding_leaves_the_state_untouched():
    model = deltanet(ssm_chunk=4)
    ids = torch.randint(1, 61, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0
    with torch.no_grad():
        padded = model(ids, attention_mask=mask).logits
        alone = model(ids[1:, 5:]).logits
    assert (padded[1, 5:] - alone[0]).abs().max() < 1e-5
    prompts = [[5, 9, 1, 33, 7, 2], [40, 3]]
    batched = llmarch.generate(model, prompts, max_new_tokens=6)
    assert batched == [llmarch.generate(model, [p], max_new_tokens=6)[0] for p in prompts]


def test_hybrid_stack_by_layer_types():
    types = ["linear", "full", "linear", "full"]
    model = deltanet(mixer="attention", n_layers=4, layer_types=types, attn_output_gate=True,
                     layer_overrides={"linear": {"mixer": "gated_deltanet"}})
    assert [type(b.seq_mixer).__name__ for b in model.blocks] == ["GatedDeltaNet", "Attention"] * 2
    ids = torch.randint(0, 61, (2, 20))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_cache(2, 20)
        steps = [model(ids[:, :12], input_pos=torch.arange(12), kv_len=12).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(12, 20)]
        model.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def test_attention_output_gate():
    """q_proj's rows per head are [query, gate]; o = attention * sigmoid(gate) before o_proj, in any family: with
    the gate's rows zero, sigmoid = 1/2 and the layer gives half of the same attention without a gate."""
    from llmarch.layers.attention import AttentionContext

    torch.manual_seed(0)
    gated = llmarch.build("llama-tiny", **SMALL, attn_output_gate=True).eval()
    plain = llmarch.build("llama-tiny", **SMALL).eval()
    a, b = gated.blocks[0].attn, plain.blocks[0].attn
    assert a.qkv_proj.weight.shape[0] == (2 * 4 + 2 * 2) * 8
    with torch.no_grad():
        q_and_gate = a.qkv_proj.weight[:64].view(4, 2, 8, 32)
        q_and_gate[:, 1] = 0
        b.qkv_proj.weight.copy_(torch.cat([q_and_gate[:, 0].reshape(32, 32), a.qkv_proj.weight[64:]]))
        b.o_proj.weight.copy_(a.o_proj.weight)
        x = torch.randn(2, 9, 32)
        ctx = AttentionContext(mask=None, causal=True, rope=None, input_pos=torch.arange(9))
        assert torch.allclose(a(x, ctx), b(x, ctx) / 2, atol=1e-6)
    ids = torch.randint(0, 61, (2, 16))
    with torch.no_grad():
        full = gated(ids).logits
        gated.setup_cache(2, 16)
        steps = [gated(ids[:, :10], input_pos=torch.arange(10), kv_len=10).logits]
        steps += [gated(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(10, 16)]
        gated.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def test_shared_expert_gate_scales_the_shared_expert():
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **SMALL, n_experts=4, n_shared_experts=1, expert_hidden=16,
                          shared_expert_gate=True).eval()
    moe = model.blocks[0].mlp
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        gated, gate, shared = moe(x), torch.sigmoid(x @ moe.shared_gate.weight.T), moe.shared(x)
        moe.shared = None
        routed = moe(x)
    assert gate.shape == (2, 5, 1) and torch.allclose(gated, routed + gate * shared, atol=1e-6)


@pytest.mark.parametrize("kw, message", [
    (dict(mixer="gated_deltanet", delta_heads=3, delta_value_heads=4), "delta_value_heads=4 must be a multiple"),
    (dict(mixer="gated_deltanet", delta_key_dim=0), "delta_key_dim must be a positive integer"),
    (dict(mixer="gated_deltanet", causal=False), "mixer='gated_deltanet' is causal"),
    (dict(shared_expert_gate=True, n_experts=4), "shared_expert_gate gates the shared experts"),
])
def test_bad_configs_are_one_line_errors(kw, message):
    with pytest.raises(LlmarchError, match=message):
        ModelConfig(**{**SMALL, **kw})


def test_qwen3_next_preset_sizes():
    """Qwen3-Next-80B-A3B: 80B parameters (79.7B; transformers' Qwen3NextForCausalLM of this config counts the
    same), about 3B active per token without the embedding and head (3.25B), and a decode state of 36 delta-rule
    layers' fp32 states (32 heads of 128 x 128) and conv tails, however long the context, plus 12 layers' KV."""
    cfg = llmarch.preset("qwen3-next-80b-a3b")
    facts = model_facts(cfg)
    assert facts["parameters"] == 79_674_391_296
    embed_and_head = 2 * 151936 * 2048
    assert 3.0e9 < facts["active_parameters"] - embed_and_head < 3.5e9
    assert [cfg.layer_mixer(i) for i in range(4)] == ["gated_deltanet"] * 3 + ["attention"]
    assert facts["state_bytes_per_sequence"] == 36 * (32 * 128 * 128 * 4 + (2 * 16 * 128 + 32 * 128) * 3 * 2)
    assert facts["kv_cache_bytes_per_token"] == 12 * 2 * 2 * 256 * 2
    assert model_facts(cfg.replace(context_length=4096))["state_bytes_per_sequence"] == \
        facts["state_bytes_per_sequence"]


def test_gated_deltanet_tiny_learns_on_the_corpus(tmp_path):
    from llmarch.train import TrainConfig, train

    assert 7e6 < model_facts(llmarch.preset("gated-deltanet-tiny"))["parameters"] < 13e6
    tc = TrainConfig(steps=40, batch_size=8, eval_every=10, eval_tokens=2048, lr=3e-3, tokenizer="byte")
    cfg = llmarch.resolve("gated-deltanet-tiny", context_length=64, vocab_size=257, n_layers=2)
    vals = list(train(cfg, tc, tmp_path, verbose=False).val_losses.values())
    assert vals[-1] < vals[0] - 0.1, vals
    again = llmarch.load(tmp_path)
    assert len(llmarch.generate(again, [[10, 20, 30]], max_new_tokens=5)[0]) == 8


def test_synthetic_command_takes_any_registered_mixer(capsys):
    """`llmarch synthetic`'s --mixer is the config field, checked against the MIXERS registry (no list of its own)."""
    from llmarch.cli import main

    args = ["synthetic", "recall", "--model", "llama-tiny", "--n-layers", "1", "--d-model", "32", "--n-heads", "2",
            "--n-kv-heads", "2", "--steps", "2", "--eval-sequences", "8", "--json"]
    assert main(args + ["--mixer", "gated_deltanet"]) in (0, None)
    assert json.loads(capsys.readouterr().out)["mixer"] == "gated_deltanet"
    assert main(args + ["--mixer", "deltanet"]) != 0
    assert "gated_deltanet" in capsys.readouterr().err


def test_info_reports_the_delta_rule_state(capsys):
    from llmarch.cli import main

    assert main(["info", "qwen3-next-80b-a3b"]) in (0, None)
    out = capsys.readouterr().out
    assert "mixer gated_deltanet (attention in layers 3, 7, 11," in out
    assert "parameters:               79,674,391,296" in out and "active parameters:        3,874,929,408" in out
    assert "state bytes per sequence: 77,266,944 (constant in the context; delta-rule states in fp32)" in out


def test_benches_take_the_mixer():
    """`bench attention` finds it in the registry; `bench decode-context` runs it as gated-deltanet-tiny, whose
    state does not grow with the context."""
    from llmarch.bench.attention import AttentionBenchConfig, run_attention_bench
    from llmarch.bench.context import ContextBenchConfig, run_context_bench

    r = run_attention_bench(AttentionBenchConfig(lengths="64", kinds="gated_deltanet", d_model=32, n_heads=2,
                                                 repeats=1))
    assert r["kinds"]["gated_deltanet"]["rows"][0]["seconds"] > 0
    r = run_context_bench(ContextBenchConfig(lengths="32,64", kinds="gated_deltanet", d_model=32, n_layers=1,
                                             n_heads=2, new_tokens=2, rounds=1, chunk=16))
    data = r["kinds"]["gated_deltanet"]
    assert data["preset"] == "gated-deltanet-tiny" and data["rows"][0]["state_bytes"] == data["rows"][1]["state_bytes"]


def test_compiled_decode_of_a_hybrid_matches_eager():
    """The delta-rule step (conv and delta states updated in place) and gated attention compile as one graph."""
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                          context_length=48, layer_types=["linear", "full"], attn_output_gate=True,
                          layer_overrides={"linear": {"mixer": "gated_deltanet"}}).eval()
    ids = torch.randint(0, 64, (2, 10))
    eager = llmarch.generate(model, ids, max_new_tokens=12)
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=12, compile=True), eager)
