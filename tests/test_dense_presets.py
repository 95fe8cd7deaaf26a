"""Presets of issue 22's dense families: parameter counts as published (and equal to transformers' model of the
same config.json, built on the meta device), and the tiny CPU presets of their new parts (ALiBi, QK-norm over
whole projections with res-post norms, NoPE layers), about 10M parameters, train on the embedded corpus."""
import pytest
import torch

import llmarch
from llmarch.analysis import model_facts
from llmarch.train import TrainConfig, train

# the model cards' sizes (Qwen3-0.6B: 0.6B; Qwen3-8B: 8.2B; OLMo-2-0425-1B: 1.5B; Phi-3-mini: 3.8B;
# SmolLM3-3B: 3B; bloom-560m: 559M), exact as transformers counts the checkpoint's config
PUBLISHED = {"qwen3-0.6b": 596_049_920, "qwen3-8b": 8_190_735_360, "olmo2-1b": 1_484_916_736,
             "phi3-mini": 3_821_079_552, "smollm3-3b": 3_075_098_624, "bloom-560m": 559_214_592}
HF = {  # the published config.json shapes
    "qwen3-0.6b": ("Qwen3", dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                 tie_word_embeddings=True)),
    "qwen3-8b": ("Qwen3", dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                               num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                               tie_word_embeddings=False)),
    "olmo2-1b": ("Olmo2", dict(vocab_size=100352, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                               num_attention_heads=16, num_key_value_heads=16)),
    "phi3-mini": ("Phi3", dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                               num_attention_heads=32, pad_token_id=0)),
    "smollm3-3b": ("SmolLM3", dict(vocab_size=128256, hidden_size=2048, intermediate_size=11008,
                                   num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=4,
                                   tie_word_embeddings=True, pad_token_id=0)),
    "bloom-560m": ("Bloom", dict(vocab_size=250880, hidden_size=1024, n_layer=24, n_head=16)),
}
TINY = ["alibi-tiny", "qwen3-tiny", "olmo2-tiny", "smollm3-tiny"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    assert model_facts(llmarch.preset(name))["parameters"] == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(HF))
def test_presets_equal_transformers_models(name):
    transformers = pytest.importorskip("transformers")
    kind, kw = HF[name]
    with torch.device("meta"):
        hf = getattr(transformers, f"{kind}ForCausalLM")(getattr(transformers, f"{kind}Config")(**kw))
    assert sum(p.numel() for p in hf.parameters()) == PUBLISHED[name]


def test_smollm3_preset_has_nope_on_every_fourth_layer():
    cfg = llmarch.preset("smollm3-3b")
    assert [i for i in range(cfg.n_layers) if cfg.for_layer(i).positions == "none"] == list(range(3, 36, 4))


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_are_about_10m(name):
    assert 7e6 < model_facts(llmarch.preset(name))["parameters"] < 13e6


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_train_on_the_embedded_corpus(name, tmp_path, corpus):
    # corpus: 30 documents of the embedded corpus (conftest.py); each preset at width 64, so it runs in seconds
    tc = TrainConfig(steps=8, batch_size=4, lr=3e-3, warmup_steps=1, eval_every=8, eval_tokens=256, tokenizer="byte",
                     data=corpus, log_every=1)
    cfg = llmarch.resolve(name, vocab_size=257, d_model=64, n_heads=4, ffn_hidden=128, context_length=64)
    result = train(cfg, tc, tmp_path, verbose=False)
    losses = list(result.losses.values())
    assert losses[-1] < losses[0]
