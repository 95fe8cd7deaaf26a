"""How fast each entry runs and what it holds, every figure timed in turns across the entries (bench/model.py
round_times: each round runs every contender once, so a busy spell of a shared machine slows all of them
alike) and reported as the median over rounds. Weights are random (speed does not depend on them), fp32.

- training: tokens/s of a step (forward, loss, backward, AdamW) at the training shape, and its peak tensor
  memory (analysis/memory.py: the CUDA allocator's peak, or live tensor bytes on CPU);
- prefill: tokens/s of one forward over one `prefill` -token sequence (causal models and encoders);
- decoding, causal models: batch-1 seconds per token and the decode state's bytes with L tokens already in
  the sequence, for each L (bench/context.py: a KV cache is filled with random keys and values, other states by
  a real chunked prefill), and the state's growth per token of context between the shortest and longest L.
A failure in one entry is recorded in its row (the error's first line) and the others go on."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..analysis.memory import peak_bytes, training_state
from ..bench.context import ContextBenchConfig, at_context
from ..bench.model import round_times
from ..config import ModelConfig
from ..models.build import build_model
from .entries import Entry


@dataclass(frozen=True)
class SpeedConfig:
    lengths: tuple = (1024, 4096, 16384)  # contexts of the decode figures
    prefill: int = 1024  # prompt of the prefill figure
    new_tokens: int = 16  # timed one-token steps per context (their median)
    repeats: int = 3  # rounds of every timed figure


def failure(e: Exception) -> str:
    """An error in one line for a row: its type and its message's first line."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _step(model, cfg: ModelConfig, batch: int, context: int, device: torch.device):
    """A training step on random tokens: an encoder-decoder reads a source of `context` and writes a target of a
    quarter of it (span corruption's targets are shorter than its inputs)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, cfg.vocab_size, (batch, context), device=device)
    target = x[:, : max(1, context // 4)] if cfg.is_encoder_decoder else x
    kwargs = {"decoder_input_ids": target} if cfg.is_encoder_decoder else {}

    def step():
        logits = model(x, **kwargs).logits
        F.cross_entropy(logits.flatten(0, 1).float(), target.flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, opt


def training(configs: dict[str, ModelConfig], batch: int, context: int, sc: SpeedConfig,
             device: torch.device) -> dict[str, dict]:
    out, fns = {}, {}
    for key, cfg in configs.items():
        try:
            torch.manual_seed(0)
            model = build_model(cfg, device).train()
            step, opt = _step(model, cfg, batch, context, device)
            step()  # the optimizer's state exists from here on
            peak = peak_bytes(step, training_state(model, opt), device)
            fns[key] = step
            out[key] = {"train_peak_bytes": peak}
        except Exception as e:  # noqa: BLE001 - one entry's failure is its row's, not the run's
            out[key] = {"error": f"training step: {failure(e)}"}
    times = round_times(fns, sc.repeats, device, warmup=0)
    for key, t in times.items():
        out[key]["train_tokens_per_s"] = batch * context / statistics.median(t)
    return out


@torch.inference_mode()
def prefill(configs: dict[str, ModelConfig], sc: SpeedConfig, device: torch.device) -> dict[str, dict]:
    out, fns = {}, {}
    for key, cfg in configs.items():
        if cfg.is_encoder_decoder:
            continue
        try:
            torch.manual_seed(0)
            model = build_model(cfg.replace(context_length=max(cfg.context_length, sc.prefill)), device).eval()
            ids = torch.randint(0, cfg.vocab_size, (1, sc.prefill), device=device)
            model(ids)
            fns[key] = lambda m=model, ids=ids: m(ids)
        except Exception as e:  # noqa: BLE001
            out[key] = {"error": f"prefill: {failure(e)}"}
    for key, t in round_times(fns, sc.repeats, device, warmup=0).items():
        out[key] = {"prefill_tokens_per_s": sc.prefill / statistics.median(t)}
    return out


@torch.inference_mode()
def decoding(configs: dict[str, ModelConfig], sc: SpeedConfig, device: torch.device) -> dict[str, dict]:
    cc = ContextBenchConfig(new_tokens=sc.new_tokens)
    longest = max(sc.lengths) + sc.new_tokens + 1
    models, out = {}, {}
    for key, cfg in configs.items():
        if not cfg.causal or cfg.is_encoder_decoder:
            continue
        torch.manual_seed(0)
        models[key] = build_model(cfg.replace(context_length=max(cfg.context_length, longest)), device).eval()
    seconds: dict[str, dict[int, list[float]]] = {k: {L: [] for L in sc.lengths} for k in models}
    state: dict[str, dict[int, int]] = {k: {} for k in models}
    failed: dict[str, str] = {}
    for _ in range(sc.repeats):  # rounds: every entry at every length, then again
        for key, model in models.items():
            if key in failed:
                continue
            try:
                for L in sc.lengths:
                    s, nbytes, _ = at_context(model, L, cc, device)
                    seconds[key][L].append(s)
                    state[key][L] = nbytes
            except Exception as e:  # noqa: BLE001
                model.clear_cache()
                failed[key] = f"decoding: {failure(e)}"
    for key in models:
        if key in failed:
            out[key] = {"error": failed[key]}
            continue
        rows = [{"context": L, "tokens_per_s": 1 / statistics.median(seconds[key][L]),
                 "state_bytes": state[key][L]} for L in sc.lengths]
        first, last = rows[0], rows[-1]
        out[key] = {"decode": rows,
                    "state_bytes_per_context_token": (last["state_bytes"] - first["state_bytes"])
                    / (last["context"] - first["context"]) if len(rows) > 1 else 0.0,
                    "decode_slowdown": first["tokens_per_s"] / last["tokens_per_s"],
                    # the slope of the time per token in context length: ms more per token per 1k tokens of context
                    "decode_ms_per_1k_context": (1 / last["tokens_per_s"] - 1 / first["tokens_per_s"]) * 1e6
                    / (last["context"] - first["context"]) if len(rows) > 1 else 0.0}
    return out


def measure(entries: list[Entry], configs: dict[str, ModelConfig], batch: int, context: int, sc: SpeedConfig,
            device: torch.device, log=print) -> dict[str, dict]:
    """Every speed figure of every entry (keyed by entry key), each phase in turns across the entries."""
    result: dict[str, dict] = {e.key: {} for e in entries}
    for name, phase in (("training", lambda: training(configs, batch, context, sc, device)),
                        ("prefill", lambda: prefill(configs, sc, device)),
                        ("decoding", lambda: decoding(configs, sc, device))):
        log(f"speed: {name}, {len(configs)} models in turns")
        for key, row in phase().items():
            errors = [e for e in (result[key].get("error"), row.pop("error", None)) if e]
            result[key].update(row)
            if errors:
                result[key]["error"] = "; ".join(errors)
    return result
