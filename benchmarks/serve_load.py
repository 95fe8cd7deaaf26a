"""A load test of `llmarch serve` on loopback: a tiny model (llama-tiny's shape, random weights, the byte
tokenizer) served by `llmarch serve` in its own process; first every request one at a time (one client), then
--clients concurrent clients with --requests requests each (streamed through the official `openai` client).
Reports completion tokens per second of both, the speed-up, time to first token at p50/p99 under load, errors,
and whether every greedy answer under load equals its one-at-a-time answer.

    python benchmarks/serve_load.py --clients 32 --requests 4 --out serve.json"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import torch


def tiny_checkpoint(directory: Path, context: int) -> None:
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.models import TransformerLM
    from llmarch.presets import resolve

    torch.manual_seed(0)
    model = TransformerLM(resolve("llama-tiny", vocab_size=257, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2,
                                  ffn_hidden=384, context_length=context))
    save_model(model, directory)
    ByteTokenizer().save(directory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, max_batch: int, queue: int, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    """`llmarch serve` of checkpoint (with `extra` flags) in its own process -> it and its URL, once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llmarch", "serve", "--checkpoint", str(checkpoint), "--port",
                             str(port), "--max-batch", str(max_batch), "--max-queue", str(queue),
                             "--model-name", "tiny", *extra], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"llmarch serve exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def ask(client: openai.OpenAI, prompt: str, max_tokens: int) -> dict:
    """One streamed greedy completion -> its text, tokens, time to first token and total seconds."""
    t0 = time.perf_counter()
    first, parts, tokens = None, [], 0
    for chunk in client.completions.create(model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                           stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].text and first is None:
            first = time.perf_counter() - t0
        parts.extend(c.text for c in chunk.choices)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"text": "".join(parts), "tokens": tokens, "ttft": first, "seconds": time.perf_counter() - t0}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    total = args.clients * args.requests
    prompts = [f"request {i}: " + "def f(x):\n    return x" * (i % 5) for i in range(total)]
    with tempfile.TemporaryDirectory() as tmp:
        tiny_checkpoint(Path(tmp), args.context)
        proc, url = start_server(Path(tmp), args.max_batch, queue=total)
        try:
            client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
            ask(client, "warm up", 4)
            t0 = time.perf_counter()
            alone = [ask(client, q, args.max_tokens) for q in prompts]
            sequential_s = time.perf_counter() - t0

            def one_client(c: int) -> list[tuple[int, dict]]:
                own = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
                out = []
                for r in range(args.requests):
                    i = c * args.requests + r
                    try:
                        out.append((i, ask(own, prompts[i], args.max_tokens)))
                    except openai.OpenAIError as e:
                        out.append((i, {"error": str(e)}))
                return out

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                loaded = dict(item for items in pool.map(one_client, range(args.clients)) for item in items)
            concurrent_s = time.perf_counter() - t0
            metrics = httpx.get(url + "/metrics").text
        finally:
            proc.terminate()
            proc.wait()
    errors = [r["error"] for r in loaded.values() if "error" in r]
    ok = [loaded[i] for i in range(total) if "error" not in loaded[i]]
    tokens = sum(r["tokens"] for r in alone)
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    results = {
        "requests": total, "clients": args.clients, "max_batch": args.max_batch, "max_tokens": args.max_tokens,
        "errors": len(errors), "first_error": errors[0] if errors else None,
        "same_answers": not errors and all(loaded[i]["text"] == alone[i]["text"] for i in range(total)),
        "one_at_a_time_tokens_per_s": round(tokens / sequential_s, 1),
        "concurrent_tokens_per_s": round(sum(r["tokens"] for r in ok) / concurrent_s, 1),
        "speedup": round(sequential_s / concurrent_s, 2),
        "ttft_alone_p50_ms": round(1000 * percentile([r["ttft"] for r in alone if r["ttft"]], 50), 1),
        "ttft_p50_ms": round(1000 * percentile(ttfts, 50), 1) if ttfts else None,
        "ttft_p99_ms": round(1000 * percentile(ttfts, 99), 1) if ttfts else None,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "server_generation_tokens": next((line.split()[-1] for line in metrics.splitlines()
                                          if line.startswith("llmarch_generation_tokens_total")), None),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if errors or not results["same_answers"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
