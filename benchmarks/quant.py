"""Weight-only quantization on CPU (llmarch.quant): perplexity on held-out text of the embedded corpus (the
validation split llmarch eval uses) of a model and of its int8 (round-to-nearest and GPTQ), int4 round-to-nearest,
int4 HQQ and int4 GPTQ versions (GPTQ calibrated on --calibration-tokens of the training split);
and batch-1 greedy decoding speed of the same, contenders in turns (llmarch.bench.model.round_times), speed-ups
as medians of per-round ratios against fp32.

With --llama-cpp (needs `llama-cpp-python`; `make llama-cpp` builds it), llama.cpp decodes in the same rounds:
the checkpoint's own GGUF file (e.g. SmolLM2's Q4_1), and F32 and Q8_0 files that `llmarch convert --to-gguf`
writes of the same model, each paired with the llmarch variant of the same precision (fp32 with F32, int8 with
Q8_0, and the file with `gguf-kernels`: llmarch.from_gguf(path, kernels=True), the file's Q4_0/Q4_1/Q8_0 blocks
on llmarch's kernels, as its decoding commands run it); the ratio is the median over rounds of llama.cpp's time /
llmarch's. Both decode the same prompt ids greedily; the JSON says whether their tokens agree. Every contender
runs twice a round, for the prompt and one token, then for the prompt and --new-tokens: "decode" figures are of
the difference (the other new tokens alone), "end_to_end" of the whole call; llama.cpp is reset before each call,
so both process the prompt every time.

    .venv/bin/python benchmarks/quant.py --checkpoint RUN_OR_GGUF --group-size 64 --perplexity --speed
    .venv/bin/python benchmarks/quant.py --checkpoint model.Q4_1.gguf --group-size 32 --speed --llama-cpp --threads 2
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
from pathlib import Path

import torch

import llmarch
from llmarch.bench.model import round_times
from llmarch.data.dataset import load_data
from llmarch.interop.gguf import is_gguf, open_gguf
from llmarch.interop.gguf_kernels import file_scheme
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.quant import quantize, weight_bytes
from llmarch.rundir import resolve_checkpoint
from llmarch.train.evaluate import evaluate

METHODS = ("int8", "int8-gptq", "int4", "int4-hqq", "int4-gptq")
CALIBRATED = ("int8-gptq", "int4-gptq")
GGUF_KERNELS = "gguf-kernels"  # llmarch.from_gguf(path, kernels=True): a GGUF file's blocks as decoding runs them


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def variants(model, group_size: int, head: bool, methods=METHODS, compute_dtype: str = "bfloat16",
             calibration=None) -> dict:
    """name -> model; `calibration` (token ids) for the GPTQ methods; the seconds each took to quantize."""
    import time

    out, seconds = {"fp32": model}, {}
    for method in methods:
        start = time.perf_counter()
        out[method] = quantize(copy.deepcopy(model), method, group_size, head=head, compute_dtype=compute_dtype,
                               calibration=calibration if method in CALIBRATED else None)
        seconds[method] = round(time.perf_counter() - start, 1)
    return out, seconds


def perplexities(models: dict, tok, max_tokens: int, context: int | None) -> dict:
    """Perplexity on the validation split of the embedded corpus, in windows of `context` tokens (default the
    model's context length)."""
    data = load_data(None, tok)
    out = {}
    for name, m in models.items():
        if context:
            m.config = m.config.replace(context_length=context)
        out[name] = evaluate(m, data, 4, max_tokens)["perplexity"]
    return out


def decode_speed(models: dict, tok, prompt_tokens: int, new_tokens: int, repeats: int, llama_cpp=None,
                 compile: bool = False) -> dict:
    """Greedy decoding after a prompt of real text (the start of the embedded corpus's first long document).
    llama_cpp: the checkpoint's path, to time llama.cpp in the same rounds (llama_cpp_contenders). compile:
    llmarch's variants decode with their compiled step (generate(compile=True); compiled in the warm-up round)."""
    import tempfile

    from llmarch.data import read_documents

    text = next(d.text for d in read_documents() if len(d.text) > 8 * prompt_tokens)
    prompt = torch.tensor([tok.encode(text)[:prompt_tokens]])
    outputs = {}

    def run(name, model, n):
        def fn():
            out = llmarch.generate(model, prompt, max_new_tokens=n, temperature=0, compile=compile)
            if n == new_tokens:
                outputs[name] = out
        return fn

    # each contender twice a round: the prompt and one token ("|prompt"), then the prompt and new_tokens; the
    # difference is what decoding the other new_tokens - 1 took, the same round, the same machine state
    fns, pairs, theirs = {}, {}, {}
    for name, m in models.items():
        fns[name], fns[f"{name}|prompt"] = run(name, m, new_tokens), run(name, m, 1)
    with tempfile.TemporaryDirectory() as folder:
        if llama_cpp is not None:
            contenders, theirs = llama_cpp_contenders(llama_cpp, models["fp32"], tok, prompt, new_tokens, folder)
            for name, (make, pair) in contenders.items():
                fns[name], fns[f"{name}|prompt"], pairs[name] = make(new_tokens), make(1), pair
        times = round_times(fns, repeats, torch.device("cpu"))
    decode = {name: [full - first for full, first in zip(times[name], times[f"{name}|prompt"])]
              for name in [*models, *pairs]}

    def rates(name: str) -> dict:
        return {"decode_tokens_per_s": (new_tokens - 1) / statistics.median(decode[name]),
                "prompt_seconds": round(statistics.median(times[f"{name}|prompt"]), 4),
                "end_to_end_tokens_per_s": new_tokens / statistics.median(times[name])}

    def ratio(ours: str, other: str) -> dict:  # medians of per-round ratios, other's time over ours
        return {"decode": statistics.median(t / o for o, t in zip(decode[ours], decode[other])),
                "end_to_end": statistics.median(t / o for o, t in zip(times[ours], times[other]))}

    result = {name: {**rates(name), "speedup_vs_fp32": ratio(name, "fp32"),
                     "greedy_tokens_equal_fp32": bool(torch.equal(outputs[name], outputs["fp32"]))}
              for name in models}
    agreement = teacher_forced_agreement(models, {n: outputs[n] for n in models}, prompt.shape[1])
    result["fp32"]["smallest_top2_margin"] = agreement.pop("fp32_smallest_top2_margin")
    for name in models:
        result[name].update(agreement[name])
    for name, pair in pairs.items():
        row = rates(name)
        if pair in times:  # llmarch's speed-up over llama.cpp
            row[f"llmarch_{pair}_speedup"] = ratio(pair, name)
            row[f"greedy_tokens_equal_llmarch_{pair}"] = theirs[name] == outputs[pair][0, prompt.shape[1]:].tolist()
        result[name] = row
    f32 = next((name for name, pair in pairs.items() if pair == "fp32"), None)
    for name in pairs:  # llama.cpp's quantized files against its own F32: how far its quantization moves greedy
        if f32 is not None and name != f32:
            result[name][f"greedy_tokens_equal_{f32}"] = theirs[name] == theirs[f32]
    return result


@torch.no_grad()
def teacher_forced_agreement(models: dict, outputs: dict, prompt_len: int) -> dict:
    """On fp32's greedy continuation, fed to every variant at once: the fraction of positions where the variant's
    top token is fp32's, the largest fp32 top-2 logit margin among the positions where it is not (a
    disagreement at a near-tie flips a free-running greedy decode from there on without meaning much), the
    relative error of the variant's logits (||l - l_fp32|| / ||l_fp32||), and where the variant's own greedy
    tokens (`outputs`) first part from fp32's: the new token's index, both tokens, fp32's logit margin of its token
    over the variant's and the variant's of its own over fp32's (the prefixes are equal up to there)."""
    sequence = outputs["fp32"]
    ref = models["fp32"](sequence).logits[0, prompt_len - 1:-1].float()
    top2 = ref.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    # fp32's own nearest tie on its continuation: a variant whose logits move by more than this may part from
    # fp32 there, whatever its precision (llama.cpp's Q8_0 parts from its own F32 at SmolLM2's, docs/quantization.md)
    out = {"fp32_smallest_top2_margin": {"new_token": margin.argmin().item(), "margin": round(margin.min().item(), 4)}}
    for name, model in models.items():
        logits = model(sequence).logits[0, prompt_len - 1:-1].float()
        differ = logits.argmax(-1) != ref.argmax(-1)
        out[name] = {"top1_agreement_teacher_forced": 1 - differ.float().mean().item(),
                     "largest_fp32_margin_where_differing": round(margin[differ].max().item(), 4)
                     if differ.any() else None,
                     "relative_logit_error": round(((logits - ref).norm() / ref.norm()).item(), 5)}
        theirs, ours = outputs[name][0, prompt_len:], sequence[0, prompt_len:]
        parted = (theirs != ours).nonzero()
        if len(parted):
            i = parted[0].item()
            a, b = ours[i].item(), theirs[i].item()
            out[name]["first_difference"] = {"new_token": i, "fp32_token": a, "variant_token": b,
                                             "fp32_margin": round((ref[i, a] - ref[i, b]).item(), 4),
                                             "variant_margin": round((logits[i, b] - logits[i, a]).item(), 4)}
    return out


def llama_cpp_contenders(path, model, tok, prompt: torch.Tensor, new_tokens: int, folder) -> dict:
    """name -> (a function of n returning llama.cpp's decode of n new tokens, the llmarch variant it is paired
    with), and the tokens each produces."""
    import llama_cpp

    from llmarch.interop.gguf_writer import to_gguf

    files = {}
    if is_gguf(path):  # the file itself, paired with what llmarch's decoding commands run it on (gguf_kernels)
        files[f"llama.cpp {Path(path).name}"] = (str(path), GGUF_KERNELS)
    for dtype, pair in (("f32", "fp32"), ("q8_0", "int8")):
        out = f"{folder}/model.{dtype}.gguf"
        to_gguf(model, out, dtype, tok)
        files[f"llama.cpp {dtype.upper()} (llmarch convert)"] = (out, pair)
    ids = prompt[0].tolist()
    contenders, outputs = {}, {}
    threads = torch.get_num_threads()
    for name, (file, pair) in files.items():
        llm = llama_cpp.Llama(model_path=file, n_ctx=len(ids) + new_tokens + 8, n_threads=threads,
                              n_threads_batch=threads, n_batch=len(ids), verbose=False)

        def make(n, llm=llm, name=name):
            def fn():
                # llama-cpp-python's generate keeps the last call's KV cache and evaluates only what differs
                # from it: without the reset every round after the first would skip the prompt llmarch prefills
                llm.reset()
                out = []
                for t in llm.generate(ids, top_k=1, temp=0.0, reset=True):
                    out.append(t)
                    if len(out) == n:
                        break
                if n == new_tokens:
                    outputs[name] = out
            return fn
        contenders[name] = (make, pair)
    return contenders, outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="llmarch checkpoint or run directory, HF directory or .gguf")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, compared with fp32")
    ap.add_argument("--keep-head", action="store_true", help="leave the LM head in full precision")
    ap.add_argument("--compute-dtype", default="bfloat16", choices=("bfloat16", "float32"),
                    help="the quantized kernels' activation dtype")
    ap.add_argument("--calibration-tokens", type=int, default=128 * 512,
                    help="int4-gptq and int8-gptq: training-split tokens to calibrate on")
    ap.add_argument("--perplexity", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=16384, help="validation tokens for perplexity")
    ap.add_argument("--eval-context", type=int, default=None, help="perplexity window (default: the model's)")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--llama-cpp", action="store_true", help="llama.cpp contenders in the speed rounds")
    ap.add_argument("--compile", action="store_true", help="llmarch decodes with its compiled step")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_checkpoint(args.checkpoint)
    model, tok = llmarch.load(path).eval(), checkpoint_tokenizer(path)
    methods = args.methods.split(",")
    calibration = None
    if any(m in CALIBRATED for m in methods):
        from llmarch.quant.gptq import calibration_ids

        calibration = calibration_ids(tok, args.calibration_tokens, model.config.context_length)
    models, seconds = variants(model, args.group_size, not args.keep_head, methods, args.compute_dtype,
                               calibration)
    if args.llama_cpp and is_gguf(path) and file_scheme(open_gguf(path)) is not None:
        models[GGUF_KERNELS] = llmarch.from_gguf(path, kernels=True)  # the file's own blocks on the kernels
    result = {"checkpoint": str(args.checkpoint), "group_size": args.group_size, "machine": cpu_name(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "compile": args.compile,
              "quantize_seconds": seconds,
              "calibration_tokens": None if calibration is None else calibration.numel(),
              "weight_MiB": {n: round(weight_bytes(m) / 2**20, 1) for n, m in models.items()}}
    if args.perplexity:
        result["perplexity"] = perplexities(models, tok, args.max_tokens, args.eval_context)
    if args.speed:
        result["decode"] = decode_speed(models, tok, args.prompt_tokens, args.new_tokens, args.repeats,
                                        path if args.llama_cpp else None, args.compile)
        # how much of the process the kernel gave huge pages (llmarch's weights ask for them: huge_pages.py);
        # where it could not, decoding streams 4 KiB pages, and its fp32 speed shows it
        result["anon_huge_pages_MiB"] = anon_huge_pages() / 2**20
    print(json.dumps(result, indent=2))


def anon_huge_pages() -> int:
    """Bytes of this process's anonymous memory in transparent huge pages (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("AnonHugePages:")), 0)
    except OSError:
        return 0


if __name__ == "__main__":
    main()
