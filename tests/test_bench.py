"""`llmarch bench` runs end to end on CPU with small shapes and reports every section; the speed figures
themselves live in docs/benchmarks.md, not in assertions. (MFU needs a known GPU peak: None on CPU.)"""
import json

import pytest
import torch

from llmarch import LlmarchError
from llmarch.cli import main

pytest.importorskip("transformers")


def test_bench_reports_train_decode_prefill_against_transformers(tmp_path, capsys):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    main(["bench", "--model", "llama-tiny", "--n-layers", "1", "--context-length", "32", "--batch-size", "2",
          "--prompt-tokens", "4", "--new-tokens", "4", "--decode-batches", "1,2", "--prefill-tokens", "32",
          "--repeats", "1", "--out", str(out), "--markdown", str(table)])
    r = json.loads(out.read_text())
    assert r["train"]["llmarch"]["tokens_per_s"] > 0 and r["train"]["speedup"] > 0
    assert r["train"]["llmarch"]["mfu"] is None  # no peak FLOP/s known for a CPU
    for batch in ("batch_1", "batch_2"):
        assert r["decode_tokens_per_s"][batch]["same_tokens"] is True
    assert r["decode_tokens_per_s"]["batch_1"]["roofline_fraction"] > 0
    static = r["decode_tokens_per_s"]["batch_1"]
    assert static["transformers_static_cache"] > 0, static.get("transformers_static_cache_error")
    assert "| decode tokens/s, batch 1, transformers with static cache |" in table.read_text()
    assert r["prefill_tokens_per_s"]["llmarch"] > 0 and r["copy_bandwidth_gb_s"] > 0
    assert "| decode tokens/s, batch 2 |" in table.read_text() and "speed-up" in capsys.readouterr().out


# int8 or int4 linears (the head included) and the fp32 embedding table, 2.1M of this model's 5.3M parameters;
# a calibrated method (GPTQ) fits the random model to random ids, as bench's prompts are
@pytest.mark.parametrize("method, per_parameter", [("int8", (2.0, 2.5)), ("int4-gptq", (1.8, 2.1))])
def test_bench_reports_quantized_rows_and_weight_memory(tmp_path, capsys, method, per_parameter):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    main(["bench", "--model", "llama-tiny", "--n-layers", "1", "--context-length", "32", "--batch-size", "2",
          "--prompt-tokens", "4", "--new-tokens", "4", "--prefill-tokens", "16", "--repeats", "1",
          "--transformers", "false", "--quantize", method, "--out", str(out), "--markdown", str(table)])
    r = json.loads(out.read_text())
    fp, q = r["weights"]["llmarch"], r["weights"][f"llmarch_{method}"]
    assert fp["bytes_per_parameter"] == 4 and per_parameter[0] < q["bytes_per_parameter"] < per_parameter[1]
    assert r["decode_tokens_per_s"]["batch_1"][f"llmarch_{method}"] > 0
    assert isinstance(r["decode_tokens_per_s"]["batch_1"][f"llmarch_{method}_same_tokens"], bool)
    assert r["prefill_tokens_per_s"][f"llmarch_{method}"] > 0
    md = table.read_text()
    assert f"| decode tokens/s, batch 1, llmarch {method} (vs llmarch) |" in md
    assert f"weights of llmarch {method}: " in md and "bytes per parameter" in md


def test_bench_refuses_encoder_decoders():
    from llmarch import resolve
    from llmarch.bench.model import BenchConfig, run_bench

    with pytest.raises(LlmarchError, match="decoder-only"):
        run_bench(resolve("t5-tiny"), BenchConfig())


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--new-tokens", "0"], "--new-tokens must be at least 1, got 0"),
    (["--decode-batches", "1,x"], "--decode-batches must be positive integers separated by commas, got '1,x'"),
    (["--decode-batches", "0"], "--decode-batches must be positive integers"),
    # output paths are checked before the benchmark, whose results a bad one lost after the run
    (["--out", "."], "--out . is a directory; it names a file"),
    (["--markdown", f"{__file__}/t.md"], "is a file, not a directory"),
])
def test_bench_bad_counts_are_one_line_exit_2(args, message, capsys):
    code = main(["bench", "--model", "gpt-tiny", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("llmarch bench: error: ") and message in lines[0]


def test_bench_vs_dense_compares_a_mixture_with_its_dense_twin(tmp_path, capsys):
    from llmarch import resolve
    from llmarch.bench.model import dense_twin

    cfg = resolve("mixtral-tiny")
    twin = dense_twin(cfg)
    assert twin.n_experts == 0 and twin.ffn_hidden == 2 * cfg.expert_hidden
    out = tmp_path / "moe.json"
    main(["bench", "--model", "mixtral-tiny", "--vs-dense", "true", "--n-layers", "1", "--context-length", "32",
          "--batch-size", "2", "--repeats", "1", "--out", str(out)])
    r = json.loads(out.read_text())
    # the same active parameters but the router (E x d per MoE layer)
    assert r["moe"]["active_parameters"] - r["dense"]["active_parameters"] == cfg.n_experts * cfg.d_model
    assert r["ratio"] == r["moe"]["tokens_per_s"] / r["dense"]["tokens_per_s"]
    assert "MoE / dense training throughput" in capsys.readouterr().out
    with pytest.raises(LlmarchError, match="no experts"):
        dense_twin(resolve("llama-tiny"))


def test_bench_attention_reports_each_kind_with_fitted_slopes(tmp_path, capsys):
    out, png = tmp_path / "attention.json", tmp_path / "attention.png"
    main(["bench", "attention", "--attn-lengths", "128,256", "--attn-kinds", "full,sliding_window,linear",
          "--attn-window", "32", "--attn-block", "32", "--attn-repeats", "1", "--out", str(out), "--plot", str(png)])
    r = json.loads(out.read_text())
    assert set(r["kinds"]) == {"full", "full (eager)", "sliding_window", "linear"}
    for data in r["kinds"].values():
        assert [row["length"] for row in data["rows"]] == [128, 256]
        assert data["time_slope"] is not None and all(row["seconds"] > 0 for row in data["rows"])
    assert png.stat().st_size > 0 and "| sliding_window |" in capsys.readouterr().out
    from llmarch.bench.attention import slope

    assert slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert main(["bench", "attention", "--attn-kinds", "lsh9"]) != 0
    assert "unknown attention kind 'lsh9'" in capsys.readouterr().err


def test_bench_measures_a_checkpoint_as_the_decoding_commands_load_it(tmp_path, capsys):
    """`bench --checkpoint`: a GGUF file on the int4 kernels (its resident bytes those of the loaded model, no
    transformers twin and no training row: its weights stay as they are), a float llmarch checkpoint against
    transformers with the same greedy tokens, and --quantize on a quantized file refused in one line."""
    import torch

    import llmarch
    from llmarch.checkpoint import save_model
    from llmarch.interop.gguf_writer import to_gguf
    from llmarch.quant import weight_bytes

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", n_layers=1, context_length=32).eval()
    to_gguf(model, tmp_path / "m.q4_0.gguf", "q4_0")
    save_model(model, tmp_path / "ckpt")
    small = ["--prompt-tokens", "4", "--new-tokens", "4", "--prefill-tokens", "16", "--repeats", "1"]
    for name in ("m.q4_0.gguf", "ckpt"):
        out = tmp_path / f"{name}.json"
        assert main(["bench", "--checkpoint", str(tmp_path / name), *small, "--out", str(out)]) == 0
        r = json.loads(out.read_text())
        assert "train" not in r and r["decode_tokens_per_s"]["batch_1"]["llmarch"] > 0
        assert r["prefill_tokens_per_s"]["llmarch"] > 0
        if name == "ckpt":
            assert r["dtype"] == "float32" and r["decode_tokens_per_s"]["batch_1"]["same_tokens"] is True
        else:
            loaded = llmarch.from_gguf(tmp_path / name, kernels=True)
            assert r["dtype"] == "int4" and r["transformers"] is None
            assert r["weights"]["llmarch"]["bytes"] == weight_bytes(loaded)
    capsys.readouterr()
    code = main(["bench", "--checkpoint", str(tmp_path / "m.q4_0.gguf"), "--quantize", "int8", *small])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "quantized already (int4)" in err[0]


def test_the_quantized_copy_keeps_the_schemes_compute_dtype_and_takes_the_models_for_the_rest():
    """bench --quantize: the copy's norms and embeddings take the model's dtype (a bf16 model against its int4 copy
    layer for layer), its quantized layers keep bf16 scales (in fp32 the CPU kernels run 10-200x slower)."""
    import llmarch
    from llmarch.bench.model import BenchConfig, _quantized_copy
    from llmarch.quant.linear import Int4Linear

    for dtype in (torch.float32, torch.bfloat16):
        quant = _quantized_copy(llmarch.build("llama-tiny").to(dtype), BenchConfig(quantize="int4", group_size=32))
        layers = [m for m in quant.modules() if isinstance(m, Int4Linear)]
        assert layers and all(m.scale_zeros.dtype == torch.bfloat16 for m in layers)
        assert quant.blocks[0].ln1.weight.dtype == quant.embed.weight.dtype == dtype
