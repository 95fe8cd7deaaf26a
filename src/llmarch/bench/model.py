"""`llmarch bench`: llmarch against `transformers` in one run, on the same shapes, weights, dtype and compile
setting: training tokens/s (with MFU and peak memory on CUDA), decoding tokens/s at several batch sizes (batch
1 also as a fraction of the memory-bandwidth roofline; against transformers' default `generate` and against it
with its static cache, which it compiles itself on CUDA), and prefill tokens/s. Every figure is the median of
`repeats` timed runs after a warm-up.

- MFU = tokens/s · (6N + 12·L·d_attn·T) / peak FLOP/s (analysis/accounting.py; PaLM appendix B), with the
  peak of the device: 989 TFLOP/s dense bf16 for H100/H200 SXM. None where the peak is unknown (CPU).
- Roofline of batch-1 decoding: each token reads every weight it uses once (a mixture of experts: its k
  chosen experts of each MoE layer) and the KV cache filled so far, so tokens/s ≤ copy bandwidth / bytes read
  per token; the copy bandwidth is measured in the same run.
- --vs-dense: a mixture-of-experts model's training tokens/s against its dense twin (each MoE FFN one FFN as
  wide as k experts: the same active parameters but the routers), same run.
transformers is a test/benchmark dependency: the comparison is skipped, with a note, where it is missing."""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..analysis import model_facts
from ..config import ModelConfig
from ..device import fused_adamw, parse_device, parse_dtype
from ..errors import LlmarchError

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16, SXM


@dataclass
class BenchConfig:
    batch_size: int = 8  # training batch
    context: int | None = None  # training sequence length; None: the model's context (at most 1024)
    prompt_tokens: int = 32  # prompt length of the decode benchmark
    new_tokens: int = 64  # tokens decoded per timed run
    decode_batches: str = "1"  # comma-separated batch sizes for decoding
    prefill_tokens: int | None = None  # prompt length of the prefill figure; None: no prefill figure
    dtype: str | None = None  # float32, bfloat16 or float16; None: bfloat16 on CUDA, float32 on CPU
    compile: bool = False  # torch.compile both models' training forward the same way, and llmarch's decode step
    repeats: int = 3  # timed runs per figure (the median is reported)
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu
    transformers: bool = True  # compare against transformers (needs it installed)
    vs_dense: bool = False  # a mixture-of-experts model: training speed against its dense twin instead
    quantize: str | None = None  # also decode and prefill a copy quantized by this method (quant.METHODS)
    group_size: int = 64  # int4 group size of that copy
    train: bool = True  # also time a training step (a random model's; never a checkpoint's)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def round_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each fn, timed in turns: `repeats` rounds, each calling every fn once, so a
    neighbour's load on a shared machine slows every contender alike rather than whichever ran then.
    {name: [seconds in round 1, round 2, ...]}: the same round's figures were measured moments apart."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                 warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each fn over round_times' rounds."""
    return {name: statistics.median(t) for name, t in round_times(fns, repeats, device, warmup).items()}


def median_time(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> float:
    return median_times({"fn": fn}, repeats, device, warmup)["fn"]


def copy_bandwidth(device: torch.device, nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Bytes per second of a device-to-device tensor copy (each byte read once and written once)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * nbytes / median_time(lambda: dst.copy_(src), repeats, device)


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def _train_step(model, logits_of, x, y, compile_: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused_adamw(x.device))
    forward = torch.compile(logits_of) if compile_ else logits_of

    def step():
        loss = F.cross_entropy(forward(x).flatten(0, 1).float(), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def run_bench(cfg: ModelConfig, bc: BenchConfig, model=None) -> dict:
    """Build the model, copy its weights into transformers' model of the same shape, time both. model: a loaded
    one (`bench --checkpoint`) instead, timed decoding and prefilling as it is (quantized, or cast to bc.dtype),
    against transformers where it is float; no training row (which would change its weights)."""
    from ..models.build import build_model
    from ..generate import generate
    from ..layers.split_linear import SplitLinear
    from ..transforms import for_cpu_decoding

    if cfg.is_encoder_decoder or not cfg.causal:
        raise LlmarchError("llmarch bench measures decoder-only language models")
    batches = _check(bc)
    if bc.vs_dense:
        return moe_vs_dense(cfg, bc)
    scheme = None if model is None else getattr(model, "quantization", None)
    # a quantized model runs where it was loaded (a GGUF file's int4 tiles: the CPU), whatever CUDA there is
    device = next(model.buffers()).device if scheme is not None else parse_device(bc.device)
    dtype = parse_dtype(bc.dtype, device)
    context = min(bc.context or cfg.context_length, cfg.context_length, 1024)
    torch.manual_seed(0)
    if scheme is not None and bc.quantize:
        raise LlmarchError(f"the checkpoint is quantized already ({scheme.method}); --quantize is for a "
                           "full-precision model")
    if model is None:
        ours = build_model(cfg, device).to(dtype)
    else:  # a quantized model stays as loaded (its kernels' devices); a float one takes the device and dtype
        ours = model if scheme is not None else model.to(device=device, dtype=dtype)
    ref = _transformers_twin(ours, device, dtype) if bc.transformers and scheme is None else None
    facts = model_facts(cfg.replace(context_length=context), "bf16" if dtype == torch.bfloat16 else "fp32")
    out = {"model": cfg.name, "parameters": facts["parameters"], "device": _device_name(device),
           "dtype": scheme.method if scheme is not None else str(dtype).removeprefix("torch."),
           "compile": bc.compile, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "transformers": None if ref is None else _hf_version()}

    # decoding: greedy, new_tokens after prompt_tokens, per batch size
    ours.eval()
    if ref is not None:
        ref.eval()
    for_cpu_decoding(ours)
    # whether one-row products run split over two cores (for_cpu_decoding's probe): it moves decode speed
    out["split_one_row_products"] = any(isinstance(m, SplitLinear) for m in ours.modules())
    quant = _quantized_copy(ours, bc) if bc.quantize else None
    qname = f"llmarch_{bc.quantize}"
    out["weights"] = {name: _weights(m, facts["parameters"]) for name, m in (("llmarch", ours), (qname, quant))
                      if m is not None}
    # a token reads the weights it uses: all of a dense model's, k of each mixture's E experts
    weight_bytes = out["weights"]["llmarch"]["bytes"] * facts["active_parameters"] / facts["parameters"]
    bandwidth = copy_bandwidth(device)
    out["copy_bandwidth_gb_s"] = bandwidth / 1e9
    decode = {}
    n = bc.new_tokens
    for batch in batches:
        prompt = torch.randint(0, cfg.vocab_size, (batch, bc.prompt_tokens), device=device)
        fns = {"llmarch": lambda: generate(ours, prompt, n, compile=bc.compile)}
        row = {}
        if quant is not None:  # the quantized copy's greedy tokens beside the full-precision model's
            fns[qname] = lambda: generate(quant, prompt, n, compile=bc.compile)
            row[f"{qname}_same_tokens"] = bool(torch.equal(fns["llmarch"](), fns[qname]()))
        if ref is not None:
            fns["transformers"] = lambda: _hf_generate(ref, prompt, n)
            row["same_tokens"] = bool(torch.equal(fns["llmarch"](), fns["transformers"]()))
            try:  # where this model or version can
                _hf_generate(ref, prompt, n, static_cache=True)
                fns["transformers_static_cache"] = lambda: _hf_generate(ref, prompt, n, static_cache=True)
                row["transformers_static_cache_compiled"] = device.type == "cuda"
            except Exception as e:  # a reference that cannot: say so in the results instead of failing
                row["transformers_static_cache"] = None
                row["transformers_static_cache_error"] = f"{type(e).__name__}: {e}"
        row.update({name: n * batch / t for name, t in median_times(fns, bc.repeats, device).items()})
        if batch == 1:  # bytes read per token: every weight, and the KV cache at its mean fill
            mean_len = bc.prompt_tokens + n / 2
            read = weight_bytes + facts["kv_cache_bytes_per_token"] * mean_len
            row["roofline_fraction"] = row["llmarch"] * read / bandwidth
        decode[f"batch_{batch}"] = _with_speedup(row, None)
    out["decode_tokens_per_s"] = decode

    if bc.prefill_tokens:
        if bc.prefill_tokens > cfg.context_length:
            raise LlmarchError(f"prefill of {bc.prefill_tokens} tokens exceeds context_length {cfg.context_length}")
        ids = torch.randint(0, cfg.vocab_size, (1, bc.prefill_tokens), device=device)
        models = dict(_contenders(ours, ref))
        if quant is not None:
            models[qname] = quant
        with torch.no_grad():
            t = median_times({name: lambda m=m: m(ids).logits for name, m in models.items()}, bc.repeats, device)
        out["prefill_tokens_per_s"] = _with_speedup({name: bc.prefill_tokens / s for name, s in t.items()}, None)

    if model is not None or not bc.train:  # a checkpoint's weights stay as they are
        return out
    # training last, as it changes the weights: forward, loss, backward, AdamW
    x = torch.randint(0, cfg.vocab_size, (bc.batch_size, context), device=device)
    y = torch.roll(x, -1, dims=1)
    tokens = bc.batch_size * context
    peak = _peak_flops(device)
    steps, memory = {}, {}
    for name, model in _contenders(ours, ref):
        model.train()
        steps[name] = _train_step(model, lambda ids, m=model: m(ids).logits, x, y, bc.compile)
        steps[name]()  # warm-up: compiles, and creates the optimizer state
        if device.type == "cuda":  # a step's peak, each model alone
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            steps[name]()
            memory[name] = torch.cuda.max_memory_allocated(device) / 2**30
    t = median_times(steps, bc.repeats, device, warmup=0)
    train = {name: {"tokens_per_s": tokens / t[name], "mfu": None if peak is None else
                    tokens / t[name] * facts["flops_per_token"] / peak, "peak_memory_gib": memory.get(name)}
             for name in steps}
    out["train"] = _with_speedup(train, "tokens_per_s")
    out["flops_per_token"] = facts["flops_per_token"]

    return out


def _quantized_copy(model, bc: BenchConfig):
    """A quantized copy of the model (its own weights, the original untouched), laid out for CPU decoding."""
    import copy

    from ..quant import Scheme, quantize
    from ..quant.apply import QUANTIZED_MODULES
    from ..transforms import for_cpu_decoding

    calibration = None
    if Scheme(bc.quantize, bc.group_size).calibrated:
        # bench's models are random and so are its prompts: a calibrated method fits them to random ids too (its
        # layers have the format and kernel of the uncalibrated method; what bench measures is their speed)
        generator = torch.Generator().manual_seed(0)
        calibration = torch.randint(0, model.config.vocab_size, (4, min(model.config.context_length, 256)),
                                    generator=generator, device=next(model.parameters()).device)
    quant = quantize(copy.deepcopy(model).float(), bc.quantize, group_size=bc.group_size, calibration=calibration)
    # quantized from fp32 weights; what stays float (norms, embeddings, the KV cache) then takes the model's
    # dtype, so that a bf16 model's quantized copy is compared with it layer for layer (on CUDA: no fp32 casts
    # around each quantized layer). Not the quantized layers: their scales' dtype is the scheme's compute dtype
    dtype = next(model.parameters()).dtype
    for module in quant.modules():
        if not isinstance(module, QUANTIZED_MODULES):
            for p in module.parameters(recurse=False):
                p.data = p.data.to(dtype)
            for name, b in module._buffers.items():
                if b is not None and b.is_floating_point():
                    module._buffers[name] = b.to(dtype)
    for_cpu_decoding(quant)
    return quant.eval()


def _weights(model, parameters: int) -> dict:
    """Resident weight memory of the model as it sits in memory, and bytes per parameter of the original."""
    from ..quant import weight_bytes

    nbytes = weight_bytes(model)
    return {"bytes": nbytes, "bytes_per_parameter": nbytes / parameters}


def _check(bc: BenchConfig) -> list[int]:
    """The decoding batch sizes, once every count the benchmark runs with is at least 1."""
    for name in ("repeats", "batch_size", "prompt_tokens", "new_tokens"):
        if getattr(bc, name) < 1:
            raise LlmarchError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(bc, name)}")
    try:
        batches = [int(b) for b in bc.decode_batches.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise LlmarchError(f"--decode-batches must be positive integers separated by commas, got "
                           f"{bc.decode_batches!r}")
    return batches


def _contenders(ours, ref) -> list[tuple[str, torch.nn.Module]]:
    return [(name, m) for name, m in (("llmarch", ours), ("transformers", ref)) if m is not None]


def _hf_generate(ref, prompt: torch.Tensor, n: int, static_cache: bool = False):
    """transformers' greedy generate of exactly n tokens; static_cache: with its static cache, which it compiles
    itself on CUDA (reduce-overhead, as its docs advise for fast decoding), the static cache alone on CPU."""
    extra = {"cache_implementation": "static"} if static_cache else {}
    with torch.no_grad():
        return ref.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                            do_sample=False, pad_token_id=0, **extra)


def dense_twin(cfg: ModelConfig) -> ModelConfig:
    """The dense model with the active parameters of mixture-of-experts `cfg` (but the routers): each MoE FFN
    becomes one FFN as wide as the k experts a token runs through."""
    if not cfg.n_experts:
        raise LlmarchError(f"{cfg.name} has no experts (n_experts 0): --vs-dense compares a mixture of experts "
                           "against its dense twin")
    if cfg.moe_period != 1:
        raise LlmarchError("--vs-dense needs every FFN a mixture (moe_period 1)")
    hidden = cfg.experts_per_token * cfg.expert_hidden + (cfg.shared_hidden if cfg.n_shared_experts else 0)
    return cfg.replace(name=f"{cfg.name} dense twin", n_experts=0, n_shared_experts=0, ffn_hidden=hidden)


def moe_vs_dense(cfg: ModelConfig, bc: BenchConfig) -> dict:
    """Training tokens/s (forward, loss, backward, AdamW) of an MoE model and its dense twin, same run, same
    batch; the ratio MoE / dense is what expert dispatch costs over the same arithmetic."""
    from ..models.build import build_model

    device = parse_device(bc.device)
    dtype = parse_dtype(bc.dtype, device)
    context = min(bc.context or cfg.context_length, cfg.context_length, 1024)
    x = torch.randint(0, cfg.vocab_size, (bc.batch_size, context), device=device)
    y = torch.roll(x, -1, dims=1)
    out = {"model": cfg.name, "device": _device_name(device), "dtype": str(dtype).removeprefix("torch."),
           "compile": bc.compile, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "batch": bc.batch_size, "context": context}
    for name, c in (("moe", cfg), ("dense", dense_twin(cfg))):
        torch.manual_seed(0)
        model = build_model(c, device).to(dtype).train()
        facts = model_facts(c)
        t = median_time(_train_step(model, lambda ids, m=model: m(ids).logits, x, y, bc.compile), bc.repeats, device)
        out[name] = {"parameters": facts["parameters"], "active_parameters": facts["active_parameters"],
                     "tokens_per_s": bc.batch_size * context / t}
    out["ratio"] = out["moe"]["tokens_per_s"] / out["dense"]["tokens_per_s"]
    return out


def _with_speedup(row: dict, key: str | None) -> dict:
    if "transformers" in row:
        ours, theirs = row["llmarch"], row["transformers"]
        if key is not None:
            ours, theirs = ours[key], theirs[key]
        row["speedup"] = ours / theirs
    return row


def _transformers_twin(model, device: torch.device, dtype: torch.dtype):
    """transformers' model of the same architecture and weights, through llmarch's own HF export."""
    try:
        import transformers
    except ImportError:
        return None
    from ..interop import to_hf

    with tempfile.TemporaryDirectory() as tmp:
        to_hf(model, tmp)
        # its SDPA attention where the model has attention; pure state-space models have no attention to choose
        impl = {"attn_implementation": "sdpa"} if model.config.attention_layers else {}
        twin = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype, **impl)
    return twin.to(device)


def _hf_version() -> str:
    import transformers

    return transformers.__version__


def _device_name(device: torch.device) -> str:
    from ..device import machine_name

    return machine_name(device)


def to_markdown(r: dict) -> str:
    """The results as a markdown table (llmarch, transformers, speed-up per row)."""
    if "ratio" in r:
        return "\n".join([
            f"{r['model']} against its dense twin on {r['device']}, {r['dtype']}, compile={r['compile']}, torch "
            f"{r['torch']}, {r['threads']} threads, batch {r['batch']} x {r['context']}", "",
            "| model | parameters | active | training tokens/s |", "|---|---|---|---|",
            *[f"| {k} | {r[k]['parameters']:,} | {r[k]['active_parameters']:,} | {r[k]['tokens_per_s']:,.0f} |"
              for k in ("moe", "dense")], "", f"MoE / dense training throughput: {r['ratio']:.2f}x"])
    lines = [f"{r['model']} ({r['parameters']:,} parameters) on {r['device']}, {r['dtype']}, compile={r['compile']}, "
             f"torch {r['torch']}, transformers {r['transformers']}, {r['threads']} threads", "",
             "| benchmark | llmarch | transformers | speed-up |", "|---|---|---|---|"]

    def add(label, row, key=None):
        ours = row["llmarch"][key] if key else row["llmarch"]
        theirs = (row["transformers"][key] if key else row["transformers"]) if "transformers" in row else None
        speed = f"{row['speedup']:.2f}x" if "speedup" in row else ""
        lines.append(f"| {label} | {ours:,.0f} | {'' if theirs is None else f'{theirs:,.0f}'} | {speed} |")

    if "train" in r:
        add("training tokens/s", r["train"], "tokens_per_s")
    for name, row in r["decode_tokens_per_s"].items():
        add(f"decode tokens/s, {name.replace('_', ' ')}", row)
        if row.get("transformers_static_cache"):  # the same llmarch figure against transformers' static cache
            static = row["transformers_static_cache"]
            add(f"decode tokens/s, {name.replace('_', ' ')}, transformers with static cache"
                + (" (compiled)" if row["transformers_static_cache_compiled"] else ""),
                {"llmarch": row["llmarch"], "transformers": static, "speedup": row["llmarch"] / static})
    if "prefill_tokens_per_s" in r:
        add("prefill tokens/s", r["prefill_tokens_per_s"])
    for qname in [k for k in r.get("weights", {}) if k != "llmarch"]:  # the quantized copy against llmarch's own
        method = qname.removeprefix("llmarch_")
        rows = [(f"decode tokens/s, {name.replace('_', ' ')}", row) for name, row in r["decode_tokens_per_s"].items()]
        rows += [("prefill tokens/s", r["prefill_tokens_per_s"])] if "prefill_tokens_per_s" in r else []
        for label, row in rows:
            lines.append(f"| {label}, llmarch {method} (vs llmarch) | {row[qname]:,.0f} | {row['llmarch']:,.0f} | "
                         f"{row[qname] / row['llmarch']:.2f}x |")
    mfu = r["train"]["llmarch"]["mfu"] if "train" in r else None
    roofline = r["decode_tokens_per_s"].get("batch_1", {}).get("roofline_fraction")
    weights = r.get("weights", {})
    if weights:
        lines += [""] + [f"weights of {name.replace('_', ' ')}: {w['bytes'] / 2**20:,.1f} MiB resident, "
                         f"{w['bytes_per_parameter']:.3g} bytes per parameter" for name, w in weights.items()]
        for name, row in r["decode_tokens_per_s"].items():
            same = {k: v for k, v in row.items() if k.endswith("_same_tokens") and k != "same_tokens"}
            for k, v in same.items():
                lines.append(f"{k.removesuffix('_same_tokens').replace('_', ' ')} greedy tokens equal to the "
                             f"full-precision model's, {name.replace('_', ' ')}: {'yes' if v else 'no'}")
    lines.append("")
    if "train" in r:
        lines.append("MFU of llmarch training: " + ("n/a (no known peak for this device)" if mfu is None else
                                                    f"{mfu:.1%}"))
    lines += ["batch-1 decode: " + ("n/a" if roofline is None else f"{roofline:.1%}")
              + f" of the memory-bandwidth roofline (copy bandwidth {r['copy_bandwidth_gb_s']:.1f} GB/s)"]
    return "\n".join(lines)
