"""The mixture-of-experts layer and router (layers/moe.py, layers/router.py), the PaLM block, and training
with router losses: dispatch equals a per-token reference, capacity drops exactly the assignments over it
in order, identical experts equal the dense FFN, the CUDA grouped-GEMM path's forward equals the per-expert
loop (checked on CPU, where torch's grouped_mm has a forward), the losses' values, and mixtral-tiny and
palm-tiny learning on real text."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

import llmarch
from llmarch.layers.ffn import FFNS
from llmarch.layers.moe import MoE
from llmarch.layers.router import Routing, load_balancing_loss, router_z_loss, within_capacity
from llmarch.train import TrainConfig, train
from llmarch.train.objectives import output_z_loss

SMALL = dict(d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=50, context_length=32)


def moe(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = llmarch.resolve("mixtral-tiny", **{**SMALL, "n_experts": 4, "ffn_hidden": 24, **kw})
    layer = MoE(cfg)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return layer.eval(), cfg


def reference(layer, cfg, x):
    """Per token, per chosen expert, in Python: what the sorted dispatch must equal."""
    weights, routing = layer.router(x)
    ex = layer.experts
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for j in range(cfg.experts_per_token):
                e = routing.experts[b, t, j]
                if routing.kept is not None and not routing.kept[b, t, j]:
                    continue
                w = weights[b, t, j]
                x_in, w_out = (x[b, t] * w, 1.0) if ex.input_weighted else (x[b, t], w)  # Llama 4: E(w x)
                h = ex._hidden(F.linear(x_in, ex.w_in[e], None if ex.in_bias is None else ex.in_bias[e]))
                out[b, t] += w_out * F.linear(h, ex.down[e], None if ex.down_bias is None else ex.down_bias[e])
    return out


@pytest.mark.parametrize("kw", [dict(), dict(experts_per_token=1, router_renormalize=False, ffn="relu"),
                                dict(experts_per_token=3, bias=True, ffn="gelu"),
                                dict(experts_per_token=2, expert_capacity=2),
                                dict(experts_per_token=1, router_scoring="sigmoid", router_renormalize=False,
                                     expert_input_weighted=True)])
def test_dispatch_equals_per_token_reference(kw):
    layer, cfg = moe(**kw)
    x = torch.randn(3, 7, cfg.d_model)
    with torch.no_grad():
        assert (layer(x) - reference(layer, cfg, x)).abs().max() < 1e-5


def test_capacity_drops_exactly_the_assignments_over_it_in_order():
    experts = torch.tensor([[[0], [1], [0], [0], [1], [0], [2]]])  # (1, 7, 1), top-1
    kept = within_capacity(experts, 3, capacity=2)[0, :, 0].tolist()
    assert kept == [True, True, True, False, True, False, True]  # expert 0's 3rd and 4th tokens go
    # top-2: all first choices in position order come before any second choice
    experts = torch.tensor([[[0, 1], [0, 2], [1, 0]]])
    assert within_capacity(experts, 3, capacity=2)[0].tolist() == [[True, True], [True, True], [True, False]]
    # a whole layer: with capacity 1, each expert serves the first token that picked it; the rest get 0
    layer, cfg = moe(experts_per_token=1, router_renormalize=False, capacity_factor=0.3)
    assert layer.router.capacity(12) == 1  # ceil(0.3 * 12 tokens * top-1 / 4 experts)
    x = torch.randn(1, 12, cfg.d_model)
    with torch.no_grad():
        y = layer(x)
    chosen = layer.routing.experts[0, :, 0].tolist()
    first = {e: chosen.index(e) for e in set(chosen)}
    for t, e in enumerate(chosen):
        assert bool(layer.routing.kept[0, t, 0]) == (first[e] == t)
        assert (y[0, t].abs().sum() > 0) == (first[e] == t)
    assert layer.routing.dropped() == pytest.approx(1 - len(first) / 12)


def test_capacity_factor_sets_capacity_per_sequence():
    layer, _ = moe(experts_per_token=2, capacity_factor=1.25)
    assert layer.router.capacity(16) == math.ceil(1.25 * 16 * 2 / 4) == 10


@pytest.mark.parametrize("ffn", ["swiglu", "gelu"])
def test_identical_experts_equal_the_dense_ffn(ffn):
    layer, cfg = moe(ffn=ffn, bias=True, experts_per_token=2)
    dense = FFNS[ffn](cfg.d_model, cfg.expert_hidden, bias=True)
    with torch.no_grad():
        w_in = dense.gate_up if ffn == "swiglu" else dense.up
        layer.experts.w_in.copy_(w_in.weight.expand_as(layer.experts.w_in))
        layer.experts.in_bias.copy_(w_in.bias.expand_as(layer.experts.in_bias))
        layer.experts.down.copy_(dense.down.weight.expand_as(layer.experts.down))
        layer.experts.down_bias.copy_(dense.down.bias.expand_as(layer.experts.down_bias))
        x = torch.randn(2, 9, cfg.d_model)
        assert (layer(x) - dense(x)).abs().max() < 1e-5


def test_shared_experts_add_an_unweighted_ffn():
    layer, cfg = moe(n_shared_experts=2)
    assert layer.shared.down.in_features == 2 * cfg.expert_hidden
    x = torch.randn(2, 5, cfg.d_model)
    with torch.no_grad():
        routed = reference(layer, cfg, x)
        assert (layer(x) - routed - layer.shared(x)).abs().max() < 1e-5


@pytest.mark.parametrize("capacity", [None, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_grouped_gemm_path_equals_per_expert_loop(capacity, bias):
    """The CUDA path (torch grouped_mm) computed on CPU, forward only: same rows as the loop, dropped rows 0."""
    layer, cfg = moe(expert_capacity=capacity, bias=bias)
    x = torch.randn(2, 8, cfg.d_model)
    with torch.no_grad():
        weights, routing = layer.router(x)
        experts = routing.experts if routing.kept is None else routing.experts.masked_fill(~routing.kept, 4)
        flat = experts.reshape(-1)
        order = flat.argsort(stable=True)
        xs = x.reshape(-1, cfg.d_model)[order // cfg.experts_per_token]
        counts = torch.bincount(flat, minlength=5)[:4]
        looped = layer.experts.looped(xs, counts)
        grouped = layer.experts.grouped(xs, counts, flat[order])
    assert (looped - grouped).abs().max() < 1e-5
    if capacity:
        assert counts.sum() < xs.shape[0] and grouped[counts.sum():].abs().max() == 0


@pytest.mark.parametrize("kw", [dict(), dict(expert_capacity=2, bias=True), dict(ffn="gelu", experts_per_token=1),
                                dict(expert_capacity=2, bias=True, expert_input_weighted=True)])
def test_static_shape_paths_equal_sorted_dispatch(kw):
    """The paths torch.compile takes for few tokens (each token against its experts' gathered weights;
    every expert on every token) equal eager dispatch."""
    layer, cfg = moe(**kw)
    x = torch.randn(2, 6, cfg.d_model)
    with torch.no_grad():
        weights, routing = layer.router(x)
        experts = routing.experts if routing.kept is None else routing.experts.masked_fill(~routing.kept, 4)
        flat_x, w, e = x.reshape(-1, cfg.d_model), weights.reshape(12, -1), experts.reshape(12, -1)
        eager = layer.experts(flat_x, w, e)
        assert (layer.experts.gathered(flat_x, w, e) - eager).abs().max() < 1e-5
        assert (layer.experts.all_experts(flat_x, w, e) - eager).abs().max() < 1e-5


def test_router_losses():
    E = 4
    # perfectly balanced choices and uniform probabilities: the load-balancing loss is its minimum, 1
    uniform = Routing(torch.zeros(2, 8, E), torch.arange(16).remainder(E).view(2, 8, 1), None)
    assert load_balancing_loss([uniform]).item() == pytest.approx(1.0)
    assert router_z_loss([uniform]).item() == pytest.approx(math.log(E) ** 2)
    # everything on expert 0 with all probability there: the loss is E
    logits = torch.full((2, 8, E), -1e4)
    logits[..., 0] = 0
    collapsed = Routing(logits, torch.zeros(2, 8, 1, dtype=torch.long), None)
    assert load_balancing_loss([collapsed]).item() == pytest.approx(E)
    assert load_balancing_loss([collapsed], scope="sequence").item() == pytest.approx(E)
    # scopes differ when sequences differ: sequence 0 all on expert 0, sequence 1 all on expert 1
    logits = torch.zeros(2, 8, E)
    logits[0, :, 0], logits[1, :, 1] = 10.0, 10.0
    split = Routing(logits, logits.argmax(-1, keepdim=True), None)
    assert load_balancing_loss([split], "sequence").item() > load_balancing_loss([split], "batch").item()


def test_router_jitter_only_in_training():
    layer, cfg = moe(router_jitter=0.5)
    x = torch.randn(2, 6, cfg.d_model)
    with torch.no_grad():
        a, b = layer(x), layer(x)
        assert torch.equal(a, b)
        layer.train()
        torch.manual_seed(1)
        c = layer(x)
        assert not torch.allclose(a, c)


def test_output_z_loss():
    logits = torch.randn(2, 3, 7)
    targets = torch.tensor([[1, 2, -100], [0, -100, 3]])
    z = logits.logsumexp(-1)[targets != -100]
    assert output_z_loss(logits, targets).item() == pytest.approx(z.square().mean().item())


def test_palm_block_is_one_norm_feeding_attention_and_ffn():
    model = llmarch.build("palm-tiny", n_layers=1, context_length=32).eval()
    block = model.blocks[0]
    assert block.ln2 is None and block.attn.n_kv_heads == 1 and block.ln1.bias is None
    assert not any(n.endswith("bias") for n, _ in model.named_parameters())
    assert model.lm_head.weight is model.embed.weight
    ids = torch.randint(0, 8192, (2, 10))
    seen = {}
    for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_post"):
        getattr(block, name).register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, o))
    with torch.no_grad():
        model(ids)
        x = seen["hook_resid_pre"]
        expected = x + seen["hook_attn_out"] + block.mlp(block.ln1(x))
    assert (seen["hook_resid_post"] - expected).abs().max() < 1e-5


def test_active_parameters_and_flops():
    from llmarch.analysis import model_facts

    facts = model_facts(llmarch.resolve("mixtral-8x7b"))
    assert facts["parameters"] == 46_702_792_704
    assert facts["active_parameters"] == 12_879_925_248  # the published 12.9B
    dense = model_facts(llmarch.resolve("mixtral-8x7b", n_experts=0))
    # 2 of 8 experts per token: the FLOPs are the dense model's with a second FFN and the routers
    routers = 32 * 8 * 4096
    ffn = 32 * 3 * 4096 * 14336
    assert facts["flops_per_token"] == dense["flops_per_token"] + 6 * (ffn + routers)
    assert model_facts(llmarch.resolve("palm-8b"))["parameters"] == 8_632_012_800  # PaLM Table 1: 8.63B


@pytest.mark.parametrize("preset,extra", [("mixtral-tiny", {}), ("palm-tiny", {"z_loss": 1e-4})])
def test_tiny_presets_learn_on_the_corpus(preset, extra, tmp_path):
    """A shortened run on the embedded corpus: validation loss falls; the MoE run logs its router losses and
    per-layer expert load; PaLM's output z-loss is logged when set."""
    tc = TrainConfig(steps=40, batch_size=8, eval_every=10, eval_tokens=2048, lr=3e-3, tokenizer="byte", **extra)
    result = train(llmarch.resolve(preset, n_layers=2, context_length=64, vocab_size=257), tc, tmp_path, verbose=False)
    vals = list(result.val_losses.values())
    assert vals[-1] < vals[0] - 0.1  # over steps 10 -> 40 (llama-tiny of the same shape: 3.95 -> 3.74)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    if preset == "mixtral-tiny":
        assert float(rows[-1]["aux_loss"]) >= 1.0 and float(rows[-1]["load.1"]) >= 1.0
        loads = [json.loads(line) for line in (tmp_path / "expert_load.jsonl").read_text().splitlines()]
        assert len(loads) == 40 and sum(loads[-1]["load"]["0"]) == pytest.approx(1.0, abs=1e-3)
    else:
        assert float(rows[-1]["z_loss"]) > 0 and "aux_loss" not in rows[-1]


def test_training_loss_adds_router_losses_at_the_config_weights():
    from llmarch.models.routing import router_losses
    from llmarch.train.objectives import training_loss

    model = llmarch.build("mixtral-tiny", **{**SMALL, "n_layers": 2, "router_aux_loss_weight": 0.3,
                                             "router_z_loss_weight": 0.01})
    ids = torch.randint(0, 50, (2, 9))
    logits = model(ids).logits
    loss, total, parts = training_loss(model, logits, ids, z_loss=1e-3)
    router = router_losses(model)
    expected = loss + 0.3 * router["aux"] + 0.01 * router["z"] + 1e-3 * output_z_loss(logits, ids)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"aux_loss", "router_z_loss", "z_loss"}
    total.backward()  # the router learns from the losses too
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0


def test_switch_tiny_trains_with_span_corruption(tmp_path):
    """An encoder-decoder MoE: router losses of both stacks in the loss, loads per stack in the metrics."""
    tc = TrainConfig(steps=4, batch_size=4, eval_every=2, eval_tokens=1024, objective="span", tokenizer="byte")
    cfg = llmarch.resolve("switch-tiny", n_layers=2, n_decoder_layers=2, context_length=64, vocab_size=512)
    result = train(cfg, tc, tmp_path, verbose=False)
    assert all(math.isfinite(v) for v in result.val_losses.values())
    row = list(csv.DictReader((tmp_path / "metrics.csv").open()))[-1]
    assert {"aux_loss", "router_z_loss", "load.encoder.1", "dropped.encoder.1", "load.decoder.1"} <= set(row)


@pytest.mark.parametrize("kw,message", [
    (dict(n_experts=4, experts_per_token=5), "experts_per_token must be in"),
    (dict(n_experts=4, capacity_factor=1.0, expert_capacity=3), "not both"),
    (dict(n_experts=4, moe_period=2, moe_offset=2), "moe_offset"),
    (dict(n_experts=4, router_aux_scope="layer"), "unknown router_aux_scope"),
    (dict(shared_norm=True), "shared_norm needs block='parallel'"),
    (dict(qk_norm="full"), "unknown qk_norm"),
])
def test_bad_moe_and_block_configs_are_one_line_errors(kw, message):
    with pytest.raises(llmarch.LlmarchError, match=message):
        llmarch.resolve("llama-tiny", **kw)
