"""gpt-oss's parts and presets: the published parameter counts, the clamped SwiGLU as a dense FFN and as
experts, the router's bias, the alternating sliding/full layers of the presets, the config's errors, and the
tiny preset training on the embedded corpus."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.analysis import model_facts
from llmarch.layers.ffn import FFNS, clamped_swiglu
from llmarch.train import TrainConfig, train

# transformers' GptOssForCausalLM with the published configs has exactly these (checked in the test below)
TOTAL = {"gpt-oss-20b": 20_914_757_184, "gpt-oss-120b": 116_829_156_672}
# the model card's "active parameters" (Table 1): 3.61B and 5.13B, which count the unembedding, not the embedding
CARD_ACTIVE = {"gpt-oss-20b": 3.61e9, "gpt-oss-120b": 5.13e9}


def layers(n: int) -> dict:
    """n layers of gpt-oss-tiny (its layer_types list one type per layer, so a new depth needs a new list)."""
    types = ["sliding_attention", "full_attention"] * (n // 2) + ["sliding_attention"] * (n % 2)
    return dict(n_layers=n, layer_types=types)


@pytest.mark.parametrize("name", sorted(TOTAL))
def test_published_parameter_counts(name):
    cfg = llmarch.preset(name)
    facts = model_facts(cfg)
    assert facts["parameters"] == TOTAL[name]
    assert round(facts["active_parameters"] - cfg.vocab_size * cfg.d_model, -7) == CARD_ACTIVE[name]
    assert [cfg.for_layer(i).attention for i in range(4)] == ["sliding_window", "full"] * 2
    assert cfg.for_layer(0).sliding_window == 128 and cfg.for_layer(1).sliding_window is None


def test_counts_equal_transformers():
    transformers = pytest.importorskip("transformers")
    for name, (layers, experts) in {"gpt-oss-20b": (24, 32), "gpt-oss-120b": (36, 128)}.items():
        with torch.device("meta"):
            hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(num_hidden_layers=layers,
                                                                          num_local_experts=experts))
        assert sum(p.numel() for p in hf.parameters()) == TOTAL[name]


def test_clamped_swiglu_as_a_dense_ffn_and_as_experts():
    gate, up = torch.tensor([-9.0, 0.5, 9.0]), torch.tensor([-9.0, 0.5, 9.0])
    g = torch.tensor([-9.0, 0.5, 7.0])
    expected = (torch.tensor([-7.0, 0.5, 7.0]) + 1) * g * torch.sigmoid(1.702 * g)
    assert torch.allclose(clamped_swiglu(gate, up, 1.702, 7.0), expected)
    ffn = FFNS["swiglu_clamped"](8, 16, bias=True, swiglu_limit=0.5)
    x = torch.randn(3, 8)
    h = ffn.gate_up(x)
    assert torch.allclose(ffn(x), ffn.down(clamped_swiglu(h[:, :16], h[:, 16:], 1.702, 0.5)))
    # a dense model of it builds and runs; a mixture's experts apply the same gate to their own projections
    dense = llmarch.build("llama-tiny", n_layers=1, d_model=32, n_heads=2, n_kv_heads=2, ffn="swiglu_clamped",
                          swiglu_limit=0.5)
    assert dense.blocks[0].mlp.gate.keywords == {"alpha": 1.702, "limit": 0.5}
    moe = llmarch.build("gpt-oss-tiny", **layers(1), swiglu_limit=0.5, swiglu_alpha=1.5)
    assert moe.blocks[0].mlp.experts.act.keywords == {"alpha": 1.5, "limit": 0.5}


def test_router_bias_shifts_the_logits():
    model = llmarch.build("gpt-oss-tiny", **layers(1)).eval()
    router = model.blocks[0].mlp.router
    assert router.bias.shape == (4,) and llmarch.build("mixtral-tiny", n_layers=1).blocks[0].mlp.router.bias is None
    x = torch.randn(1, 3, 256)
    with torch.no_grad():
        before = router(x)[1].logits
        router.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
        assert torch.allclose(router(x)[1].logits, before + router.bias)


def test_tiny_preset_decodes_as_it_runs_a_sequence():
    torch.manual_seed(0)
    model = llmarch.build("gpt-oss-tiny", **layers(2), vocab_size=97, d_model=64, head_dim=16, layer_overrides={
        "sliding_attention": {"sliding_window": 8}}).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.sinks.normal_(0, 2)
    ids = torch.randint(0, 97, (2, 30))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_cache(2, 30)
        steps = [model(ids[:, :10], input_pos=torch.arange(10), kv_len=10).logits]
        steps += [model(ids[:, t:t + 1], input_pos=torch.tensor([t]), kv_len=t + 1).logits for t in range(10, 30)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


@pytest.mark.parametrize("bad, message", [
    (dict(attention="linear", attn_sinks=True), "attn_sinks=True and attention='linear'"),
    (dict(router_bias=True), "router_bias=True and n_experts=0"),
    (dict(swiglu_limit=0.0), "swiglu_limit and swiglu_alpha must be positive"),
    (dict(positions="rope", rope_scaling="yarn", rope_beta_fast=0.0), "rope_scaling='yarn' needs positive"),
    (dict(rope_scaling="yarn2"), "unknown rope_scaling 'yarn2'"),
])
def test_config_errors(bad, message):
    with pytest.raises(LlmarchError, match=message) as e:
        llmarch.ModelConfig(**bad)
    assert "\n" not in str(e.value)


def test_tiny_preset_trains_on_the_embedded_corpus(tmp_path):
    """gpt-oss-tiny's parts, narrowed, on the stdlib corpus with bytes: 30 steps take the loss from ln 257 (5.55)
    more than a nat down."""
    tc = TrainConfig(steps=30, batch_size=4, eval_every=30, eval_tokens=1024, lr=3e-3, tokenizer="byte")
    cfg = llmarch.resolve("gpt-oss-tiny", vocab_size=257, d_model=64, n_heads=4, n_kv_heads=2, head_dim=16,
                          ffn_hidden=96, context_length=64, **layers(2))
    result = train(cfg, tc, tmp_path, verbose=False)
    assert result.val_losses[30] < result.losses[1] - 1.0
