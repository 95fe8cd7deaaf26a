"""The analysis hooks (TransformerLens's names) and `llmarch info` on every 2024-2026 part's tiny preset: the
residual-stream hooks of every block, the attention pattern where a layer has one, the logit lens landing on
the logits, and the decode state of each cache kind in bytes per token."""
import pytest
import torch

import llmarch
from llmarch.analysis import logit_lens, run_with_cache
from llmarch.cli import main

PRESETS = ["alibi-tiny", "qwen3-tiny", "olmo2-tiny", "smollm3-tiny", "gemma3-tiny", "gpt-oss-tiny", "mla-tiny",
           "deepseek-tiny", "gated-deltanet-tiny"]


def small(name):
    torch.manual_seed(0)
    return llmarch.build(name, vocab_size=96, context_length=64).eval()


@pytest.mark.parametrize("name", PRESETS)
def test_hooks_see_every_block_of_the_new_parts(name):
    model = small(name)
    ids = torch.randint(0, 96, (1, 10))
    logits, cache = run_with_cache(model, ids)
    n = model.config.n_layers
    for i in range(n):
        for hook in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out"):
            assert cache[f"blocks.{i}.{hook}"].shape == (1, 10, model.config.d_model), (i, hook)
    assert cache["hook_embed"].shape == (1, 10, model.config.d_model)
    assert cache["ln_final.hook_normalized"].shape == (1, 10, model.config.d_model)
    patterns = [k for k in cache if k.endswith("hook_pattern")]
    if model.config.mixer in ("attention", "mla"):
        assert patterns and all(cache[k].shape[-2:] == (10, 10) for k in patterns)
        rows = cache[patterns[0]].sum(-1)
        assert torch.all(rows <= 1 + 1e-5)  # a distribution (less than 1 where sinks take their share)
    assert (logit_lens(model, ids)[-1] - logits).abs().max() < 1e-4


@pytest.mark.parametrize("name", PRESETS)
def test_info_reports_each_cache(name, capsys):
    assert main(["info", name]) == 0
    out = capsys.readouterr().out
    assert "per token" in out or "per sequence" in out, out
