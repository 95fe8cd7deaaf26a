"""The mixer benchmarks run end to end on tiny shapes: `bench attention` with mixer kinds, and `bench
decode-context`. Timings live in docs/benchmarks.md, not in assertions; what is asserted is the structure,
including the claim those figures rest on: a Mamba layer's generation state does not grow with the context."""
import json

import pytest

from llmarch import LlmarchError, resolve
from llmarch.bench.attention import AttentionBenchConfig, run_attention_bench
from llmarch.bench.context import ContextBenchConfig, run_context_bench
from llmarch.cli import main
from llmarch.models.transformer import TransformerLM

TINY = dict(d_model=32, n_layers=1, n_heads=2, window=16, new_tokens=2, rounds=2, chunk=16)


def test_attention_bench_times_mixer_layers_with_slopes():
    r = run_attention_bench(AttentionBenchConfig(lengths="64,128", kinds="sliding_window,mamba,mamba2,hyena",
                                                 d_model=32, n_heads=2, window=16, block=16, repeats=1))
    assert set(r["kinds"]) == {"sliding_window", "mamba", "mamba2", "hyena"}
    for data in r["kinds"].values():
        assert [row["length"] for row in data["rows"]] == [64, 128]
        assert data["time_slope"] is not None and all(row["seconds"] > 0 for row in data["rows"])


def test_decode_context_bench_reports_every_kind_and_context():
    r = run_context_bench(ContextBenchConfig(lengths="32,64", **TINY))
    assert list(r["kinds"]) == ["full", "sliding_window", "mamba", "mamba2", "hyena"]
    for kind, data in r["kinds"].items():
        assert [row["context"] for row in data["rows"]] == [32, 64]
        assert all(row["tokens_per_s"] > 0 and row["state_bytes"] > 0 and len(row["rounds_seconds"]) == 2
                   for row in data["rows"])
        assert data["growth"] > 0
        # attention's KV caches are filled directly; a recurrent state is reached by running the tokens through
        assert data["fill"] == ("random keys and values" if data["preset"] == "llama-tiny" else "prefill")


def test_bench_cli_runs_mixers_and_decode_context(tmp_path, capsys):
    out, png = tmp_path / "ctx.json", tmp_path / "ctx.png"
    assert main(["bench", "decode-context", "--ctx-lengths", "32,64", "--ctx-kinds", "full,mamba",
                 "--ctx-d-model", "32", "--ctx-n-layers", "1", "--ctx-n-heads", "2", "--ctx-new-tokens", "2",
                 "--ctx-chunk", "16", "--ctx-rounds", "1", "--out", str(out), "--plot", str(png)]) == 0
    assert set(json.loads(out.read_text())["kinds"]) == {"full", "mamba"} and png.stat().st_size > 0
    assert "| mamba |" in capsys.readouterr().out
    assert main(["bench", "attention", "--attn-lengths", "64", "--attn-kinds", "mamba2", "--attn-d-model", "32",
                 "--attn-n-heads", "2", "--attn-repeats", "1"]) == 0
    assert "| mamba2 |" in capsys.readouterr().out


@pytest.mark.parametrize("what,flag", [("decode-context", "--ctx-kinds"), ("attention", "--attn-kinds")])
def test_unknown_kind_is_one_line_naming_both_sets(what, flag, capsys):
    assert main(["bench", what, flag, "full,mamba3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'mamba3'" in err and "sliding_window" in err and "hyena" in err
    with pytest.raises(LlmarchError, match="causal only"):
        run_attention_bench(AttentionBenchConfig(kinds="mamba", causal=False))


def test_mamba_state_is_independent_of_max_len_while_a_kv_cache_grows():
    """Why Mamba's per-token decode cost cannot grow with the context: the state it reads and writes each step
    is the same size whatever max_len the cache is set up for; an attention KV cache has a slot per token."""
    def state_after_setup(model, max_len):
        model.setup_cache(1, max_len)
        return [cache.nbytes for cache in model.caches()]

    for preset in ("mamba-tiny", "mamba2-tiny"):
        model = TransformerLM(resolve(preset, d_model=32, n_layers=2, ssm_head_dim=16, context_length=4096))
        short = state_after_setup(model, 64)
        assert min(short) > 0 and state_after_setup(model, 4096) == short
    llama = TransformerLM(resolve("llama-tiny", d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, context_length=4096))
    assert state_after_setup(llama, 4096) == [64 * n for n in state_after_setup(llama, 64)]


def test_default_attention_kinds_are_those_that_run_as_one_layer(capsys):
    """The default list ('all') leaves out kinds that read what a model's stack builds (DeBERTa's relative
    embeddings, LongT5's global blocks) and, bidirectional, the causal-only kinds (lightning, Doge's dynamic mask,
    Inkling's relative logits); asked for by name, each is a one-line error before any timing."""
    from llmarch.bench.attention import standalone_kinds

    causal, both = standalone_kinds(AttentionBenchConfig()), standalone_kinds(AttentionBenchConfig(causal=False))
    assert {"full", "sliding_window", "local", "differential", "lightning"} <= set(causal)
    assert not {"disentangled", "transient_global"} & set(causal) and set(causal) - set(both) == {"lightning", "dynamic_mask",
                                                                                        "relative_logits"}
    assert main(["bench", "attention", "--attn-kinds", "full,disentangled", "--attn-lengths", "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disentangled" in err
