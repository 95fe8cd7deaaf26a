"""Masked-diffusion language models (GGUF `dream`, `llada`, `llada-moe`, `rnd1`: convert_hf_to_gguf.py's
DreamModel, LLaDAModel, LLaDAMoEModel, RND1Model), read only as the families whose tensors they hold, with every
token seeing every other (causal False): Dream 7B as Qwen2 (q, k, v biases, q and k unpermuted: llama.cpp's dream
turns halves), LLaDA 8B as LLaMA (q and k permuted as LLaMA's), LLaDA-MoE and RND1 as Qwen3-MoE (per-head q/k
norms, experts of expert_feed_forward_length in every layer, top-k by softmax; llama.cpp's llada-moe never
renormalises the top-k weights and its rnd1, from Qwen3-30B-A3B, always does, whatever expert_weights_norm says:
measured both ways).

llama.cpp runs them bidirectionally whatever attention.causal says (measured: a file saying true gives the
bidirectional logits), as the denoiser their samplers call on a whole sequence (llama.cpp's diffusion example),
and so they are read. The forward's logits are each position's; the sampler's diffusion.shift_logits (Dream reads
a token's logits at the position before it) is not the model's, so not read."""
from __future__ import annotations

from .arch import Arch, Meta
from .llama import _qwen3moe


def _bidirectional(meta: Meta) -> dict:
    return {"causal": False}


def _llama(hf: dict, meta: Meta) -> dict:
    return {**hf, "mlp_bias": False}


ARCHS = {
    "dream": Arch("qwen2", read_only=True, model_in=_bidirectional),
    "llada": Arch("llama", permuted_qk=True, fields=_llama, read_only=True, model_in=_bidirectional),
    "llada-moe": Arch("qwen3_moe", fields=lambda hf, meta: {**_qwen3moe(hf, meta), "norm_topk_prob": False},
                      read_only=True, model_in=_bidirectional),
    "rnd1": Arch("qwen3_moe", fields=_qwen3moe, read_only=True, model_in=_bidirectional),
}
