"""Gemma 4 (text; GGUF "gemma4"): sliding layers and full layers of their own head width and KV heads.

What the file holds (as llama.cpp's loader reads it, found by loading files into it): norm gains as they are
(Gemma 4's RMSNorm scales by g, not Gemma 1-3's 1 + g), the layer scalar as layer_output_scale;
attention.key_length/value_length the full layers' head width and *_swa the sliding ones', head_count_kv one
count per layer where the two kinds differ, attention.sliding_window_pattern one flag per layer,
rope.freq_base the full layers' base and rope.freq_base_swa the sliding ones'; p-RoPE (transformers'
'proportional': the first partial_rotary_factor of each full head's frequencies turn, over the whole head's
exponents) as rope.dimension_count the whole head and a rope_freqs tensor of per-frequency divisors: the
factor for the turning ones, 1e30 (no turn) for the rest (all ones for plain RoPE: llama.cpp requires the
tensor); embedding_length_per_layer_input always (llama.cpp
requires the key) the per-layer inputs' width, their tables per_layer_token_embd, per_layer_model_proj,
per_layer_proj_norm and blk.{i}.inp_gate, proj, post_norm. attention_k_eq_v: the full layers hold no attn_v;
num_kv_shared_layers: attention.shared_kv_layers, those layers without k and v; use_double_wide_mlp:
feed_forward_length per layer. enable_moe_block: expert_count, expert_used_count, expert_feed_forward_length;
the router as ffn_gate_inp with its input scale ffn_gate_inp.scale, the experts fused as ffn_gate_up_exps (E, 2I,
d), ffn_down_exps with the per-expert scale ffn_down_exps.scale, the norms pre_ffw_norm_2, post_ffw_norm_1/_2.
llama.cpp's gemma4 graph rounds the GeGLU's gate to F16 for ggml's GELU table: its logits are ~0.2% from
transformers' (measured), which changes no greedy token in the tests."""
from __future__ import annotations

import numpy as np

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta

DEFAULT_CAP = 30.0  # llama.cpp's gemma4 final soft-cap where the file has no final_logit_softcapping (measured)
STILL = 1e30  # rope_freqs' divisor for a frequency that does not turn (llama.cpp's theta / 1e30 ~ 0)


def _still(factors: list[float]) -> int:
    return sum(f >= STILL / 10 for f in factors)


def _gemma4(hf: dict, meta: Meta) -> dict:
    """The Gemma4TextConfig fields of a gemma4 file: layer types from the flags, each kind's geometry and RoPE."""
    n = hf["num_hidden_layers"]
    types = meta.window_types(n, 6) or [FULL] * n
    shared = meta.get("attention.shared_kv_layers", 0)
    kv = hf["num_key_value_heads"]
    kv = list(kv) if isinstance(kv, list) else [kv] * n
    full_dim = hf["head_dim"]
    local_dim = meta.get("attention.key_length_swa", full_dim)
    if meta.get("attention.value_length", full_dim) != full_dim or \
            meta.get("attention.value_length_swa", local_dim) != local_dim:
        raise LlmarchError(f"{meta.path}: a gemma4 file whose value heads are not as wide as its key heads")
    ffn = hf["intermediate_size"]
    ffn = list(ffn) if isinstance(ffn, list) else [ffn] * n
    wide = [i for i in range(n) if ffn[i] != ffn[0]]
    if wide and (wide != list(range(n - shared, n)) or {ffn[i] for i in wide} != {2 * ffn[0]}):
        raise LlmarchError(f"{meta.path}: gemma4 feed_forward_length {ffn} is not a width doubled on the KV-shared "
                           "layers (use_double_wide_mlp)")
    ple = meta.get("embedding_length_per_layer_input", 0)
    ple_vocab = int(meta.tensors["per_layer_token_embd.weight"].shape[-1]) if ple else hf["vocab_size"]
    experts = meta.get("expert_count", 0)
    moe = {"enable_moe_block": bool(experts)}
    if experts:
        moe.update(num_experts=experts, top_k_experts=meta.get("expert_used_count"),
                   moe_intermediate_size=meta.get("expert_feed_forward_length"))
    full_kv = {kv[i] for i, t in enumerate(types) if t == FULL}
    local_kv = {kv[i] for i, t in enumerate(types) if t == SLIDING}
    if len(full_kv) > 1 or len(local_kv) > 1:
        raise LlmarchError(f"{meta.path}: gemma4 layers of one kind with different head_count_kv are not supported")
    factors = meta.tensor("rope_freqs.weight")
    full_rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta")}
    if factors is not None and any(f != 1.0 for f in factors):  # all ones: plain RoPE over the whole head
        turning = len(factors) - _still(factors)
        full_rope.update(rope_type="proportional", partial_rotary_factor=2 * turning / full_dim,
                         factor=factors[0] if turning else 1.0)
    # attention_k_eq_v: the full layers hold no attn_v (their keys are the values); the KV-shared last layers
    # hold no keys or values at all
    k_eq_v = any(t == FULL and i < n - shared and not meta.has(f"blk.{i}.attn_v.weight") for i, t in enumerate(types))
    per_layer = {str(i): {"head_dim": full_dim, "num_key_value_heads": kv[i]} for i, t in enumerate(types) if t == FULL}
    return {**hf, "model_type": "gemma4_text", "hidden_activation": "gelu_pytorch_tanh", "layer_types": types,
            "head_dim": local_dim, "num_key_value_heads": next(iter(local_kv or full_kv)),
            "per_layer_config": per_layer, "sliding_window": meta.get("attention.sliding_window", 512),
            "final_logit_softcapping": meta.get("final_logit_softcapping", DEFAULT_CAP) or None,
            "rope_parameters": {FULL: full_rope, SLIDING: {"rope_type": "default",
                                                           "rope_theta": meta.get("rope.freq_base_swa", 10000.0)}},
            "hidden_size_per_layer_input": ple, "vocab_size_per_layer_input": ple_vocab, "attention_k_eq_v": k_eq_v,
            "num_kv_shared_layers": shared,
            **moe, "use_double_wide_mlp": bool(wide), "intermediate_size": ffn[0]}


def _full_dim(hf: dict) -> int:
    dims = {c["head_dim"] for c in hf["per_layer_config"].values()}
    return dims.pop() if dims else hf["head_dim"]


def _gemma4_common(hf: dict) -> dict:
    """As the converter reads config.json: head_count_kv per layer where the full layers' differ, and
    feed_forward_length per layer where the KV-shared layers' FFNs are double-wide."""
    types, local = hf["layer_types"], hf["num_key_value_heads"]
    kv = [hf["per_layer_config"][str(i)]["num_key_value_heads"] if t == FULL else local for i, t in enumerate(types)]
    ffn = hf["intermediate_size"]
    if hf.get("use_double_wide_mlp") and hf.get("num_kv_shared_layers"):  # feed_forward_length per layer
        first = len(types) - hf["num_kv_shared_layers"]
        ffn = [ffn * (2 if i >= first else 1) for i in range(len(types))]
    return {**hf, "num_key_value_heads": kv if len(set(kv)) > 1 else local, "intermediate_size": ffn}


def _gemma4_out(w, hf: dict) -> dict:
    """The keys and the rope_freqs tensor; what llama.cpp's gemma4 reads otherwise refused first."""
    types = hf["layer_types"]
    rope = hf["rope_parameters"]
    ple = hf.get("hidden_size_per_layer_input") or 0
    if ple and hf.get("vocab_size_per_layer_input", hf["vocab_size"]) != hf["vocab_size"]:
        # the published models' tables are as long as the vocabulary; another length is unverified in llama.cpp
        raise LlmarchError(f"GGUF gemma4 out writes per-layer embeddings for the whole vocabulary ({hf['vocab_size']}"
                           f"), not vocab_size_per_layer_input {hf['vocab_size_per_layer_input']}")
    local, full = rope.get(SLIDING, {}), rope.get(FULL, {})
    if local.get("rope_type", "default") != "default":
        raise LlmarchError(f"GGUF gemma4 has plain RoPE on the sliding layers, not rope_type {local['rope_type']!r}")
    full_dim, local_dim = _full_dim(hf), hf["head_dim"]
    w.add_key_length(full_dim)
    w.add_value_length(full_dim)
    w.add_key_length_swa(local_dim)
    w.add_value_length_swa(local_dim)
    w.add_rope_dimension_count(full_dim)
    w.add_rope_dimension_count_swa(local_dim)
    w.add_rope_freq_base_swa(local.get("rope_theta", 10000.0))
    w.add_sliding_window(hf["sliding_window"])
    if hf.get("enable_moe_block"):
        w.add_expert_count(hf["num_experts"])
        w.add_expert_used_count(hf["top_k_experts"])
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    shared = hf.get("num_kv_shared_layers") or 0
    if shared:
        # llama.cpp's KV-shared layers read the cache of layer n - shared - 1 (full ones) or n - shared - 2 (sliding
        # ones), and abort the process (GGML_ASSERT in llama-kv-cache.cpp) where that layer is of the other kind:
        # the same layers as transformers' (the last earlier one of each kind) only where those two are full, sliding
        ns = len(types) - shared
        kinds = set(types[ns:])
        if ns < 1 or types[ns - 1] != FULL or (SLIDING in kinds and (ns < 2 or types[ns - 2] != SLIDING)):
            raise LlmarchError(f"GGUF gemma4 (llama.cpp) shares the KV of the last layers before num_kv_shared_layers "
                               f"{shared} only where they end sliding, full; not layer_types {types}")
        w.add_shared_kv_layers(shared)
    w.add_embedding_length_per_layer_input(ple)  # llama.cpp requires the key, 0 without per-layer inputs
    w.add_sliding_window_pattern([t == SLIDING for t in types])
    # always: llama.cpp's gemma4 caps at its default without the key (measured: 9.5 logits apart); 0 caps nothing
    w.add_final_logit_softcapping(hf.get("final_logit_softcapping") or 0.0)
    extra = {}
    if full.get("rope_type") == "proportional":
        turning = int(full.get("partial_rotary_factor", 1.0) * full_dim // 2)
        factors = np.full(full_dim // 2, STILL, np.float32)
        factors[:turning] = full.get("factor") or 1.0
        extra["rope_freqs.weight"] = factors
    elif full.get("rope_type", "default") == "default":  # llama.cpp's gemma4 requires rope_freqs: all ones
        extra["rope_freqs.weight"] = np.ones(full_dim // 2, np.float32)
    else:
        raise LlmarchError(f"GGUF gemma4 out writes plain or proportional RoPE on the full layers, not rope_type "
                           f"{full['rope_type']!r}")
    return extra


ARCHS = {
    "gemma4": Arch("gemma4_text", fields=_gemma4, common=_gemma4_common, write=_gemma4_out, head_lengths=False,
                   consumed=frozenset({"rope_freqs.weight"}),
                   # the names llama.cpp loads: the scalar and the experts' matrices with `.weight`
                   # (blk.{i}.layer_output_scale.weight, ffn_gate_up_exps.weight, ffn_down_exps.weight), the
                   # router's input scale as ffn_gate_inp.scale and its per-expert scale as ffn_down_exps.scale
                   renamed=((".layer_scalar", ".layer_scalar.weight"), (".router.scale", ".router.proj.scale"),
                            (".router.per_expert_scale", ".experts.down_proj.scale"),
                            (".experts.gate_up_proj", ".experts.gate_up_proj.weight"),
                            (".experts.down_proj", ".experts.down_proj.weight"))),
}
