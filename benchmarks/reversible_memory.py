"""Peak memory of a Reformer training step against depth, with the reversible backward (reversible_backward, the
inputs of each block recomputed from its outputs: RevNet, Reformer §3) and without (plain autograd through stored
activations), as a markdown table.

The model: Reformer's layout (llmarch.interop.reformer.to_config of a transformers-style config): width 256, 4
heads of 64, FFN 1024, vocabulary 320, axial positions 32 x 32, layers alternating local and LSH attention
(chunks of 64, one chunk before, 2 hash rounds over 16 buckets), causal, dropout 0.05; random weights. One row of
--length tokens, next-token cross-entropy, forward and backward (no optimizer step).

What is measured: live tensor bytes (llmarch.analysis.memory.peak_bytes: on CPU a TorchDispatchMode counts each
storage an operator returns until it is freed, the parameters and their gradients counted throughout; on CUDA the
allocator's peak) over a step that starts without gradients (zero_grad(set_to_none=True), as the training
loop), and that peak less the parameters and their gradients (the activations and the backward's temporaries);
seconds per step: the fastest of --repeats further steps without the counting mode.

    .venv/bin/python benchmarks/reversible_memory.py --layers 2,4,8
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F

import llmarch
from llmarch.analysis.memory import peak_bytes
from llmarch.interop.reformer import to_config

HF = dict(vocab_size=320, hidden_size=256, num_attention_heads=4, attention_head_size=64, feed_forward_size=1024,
          axial_pos_shape=[32, 32], axial_pos_embds_dim=[64, 192], max_position_embeddings=1024, num_buckets=16,
          num_hashes=2, hash_seed=0, lsh_attn_chunk_length=64, local_attn_chunk_length=64, is_decoder=True,
          hidden_dropout_prob=0.05)


def step(model, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)  # as the training loop does: the backward's gradients become .grad
    logits = model(ids).logits
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()


def measure(layers: int, reversible: bool, length: int, repeats: int, device: torch.device) -> dict:
    cfg = to_config({**HF, "attn_layers": ["local", "lsh"] * (layers // 2)})
    torch.manual_seed(0)
    model = llmarch.build(dataclasses.replace(cfg, reversible_backward=reversible), device=device).train()
    ids = torch.randint(1, cfg.vocab_size, (1, length), device=device)
    step(model, ids)  # warm-up
    model.zero_grad(set_to_none=True)
    held = list(model.parameters())
    peak = peak_bytes(lambda: step(model, ids), held, device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(model, ids)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    state = 2 * sum(t.numel() * t.element_size() for t in held)  # the parameters and their gradients
    return dict(layers=layers, reversible=reversible, peak_mib=peak / 2**20, activations_mib=(peak - state) / 2**20,
                seconds=min(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="2,4,8", help="depths to measure, comma-separated (even)")
    parser.add_argument("--length", type=int, default=1024, help="tokens in the row (a multiple of 64, <= 1024)")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per configuration")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print("| layers | backward | peak MiB | activations MiB | s/step |\n|---|---|---|---|---|")
    for layers in (int(n) for n in args.layers.split(",")):
        for reversible in (False, True):
            r = measure(layers, reversible, args.length, args.repeats, device)
            print(f"| {layers} | {'reversible' if reversible else 'stored'} | {r['peak_mib']:.1f} | "
                  f"{r['activations_mib']:.1f} | {r['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
