"""Gemma 3n (text; GGUF "gemma3n"): Gemma 4's block (plain RMSNorm gains stored as they are, QK-norm, the value
norm, unscaled scores) with AltUp, LAuReL and per-layer inputs. The files hold AltUp's stream projections stacked,
altup_proj and altup_unembd_proj (K - 1, d, d) (Arch.indexed), per layer altup_router, altup_router_norm,
altup_predict_coef, altup_correct_coef, altup_correct_scale, laurel_l, laurel_r, laurel_post_norm, and the per-layer
inputs' tables as Gemma 4's (per_layer_token_embd, per_layer_model_proj, per_layer_proj_norm, blk.{i}.inp_gate,
proj, post_norm). The converter writes altup.active_idx, altup.num_inputs, activation_sparsity_scale and
embedding_length_per_layer_input; llama.cpp's gemma3n fixes what the published E2B and E4B have: four streams with
stream 0 active, the first 10 layers' FFNs sparse at 0.95, four sliding layers to one full, the sliding layers' RoPE
base 10k (its graph's constants and set_swa_pattern(5), as llama.cpp's source has them), per-layer inputs 256 wide
and LAuReL of rank 64 (its loader's expected shapes, found by loading files into it). So a file reads as those, and
`to_gguf` refuses a model that differs, as it refuses KV sharing (which llama.cpp's gemma3n places by the published
layer counts, not verified here) and a per-layer table shorter than the vocabulary. llama.cpp decodes such a file
to llmarch's greedy tokens; its logits differ as its Gaussian top-k divides the variance by n - 1 where transformers
divides by n (measured: 0.065 apart over FFNs 96 wide, 0.00009 once llmarch's std is so and its GELU rounds to F16
as ggml's does; over the published 8192 and 16384 the two cutoffs are within 0.01%)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta

# what llama.cpp's gemma3n fixes (found by loading files into it): its loader expects per-layer inputs 256 wide and
# LAuReL of rank 64 whatever the keys say
STREAMS, SPARSE_LAYERS, SPARSITY, PERIOD, PLE, LAUREL = 4, 10, 0.95, 5, 256, 64


def _types(n: int) -> list[str]:
    return [FULL if (i + 1) % PERIOD == 0 else SLIDING for i in range(n)]


def _sparsity(n: int) -> list[float]:
    return [SPARSITY if i < SPARSE_LAYERS else 0.0 for i in range(n)]


def _gemma3n(hf: dict, meta: Meta) -> dict:
    """The Gemma3nTextConfig fields of a gemma3n file, llama.cpp's fixed ones as llama.cpp fixes them."""
    n = hf["num_hidden_layers"]
    ple = meta.get("embedding_length_per_layer_input")
    full = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"), **(hf.pop("rope_scaling", None) or {})}
    return {**hf, "model_type": "gemma3n_text", "hidden_activation": "gelu_pytorch_tanh", "layer_types": _types(n),
            "sliding_window": meta.get("attention.sliding_window"),
            "final_logit_softcapping": meta.get("final_logit_softcapping", 30.0) or None,
            "rope_parameters": {FULL: full, SLIDING: {"rope_type": "default", "rope_theta": 10000.0}},
            "hidden_size_per_layer_input": ple,
            "vocab_size_per_layer_input": int(meta.tensors["per_layer_token_embd.weight"].shape[-1]),
            "altup_num_inputs": STREAMS, "altup_active_idx": 0, "altup_correct_scale": True,
            "laurel_rank": meta.rows("blk.0.laurel_l.weight"), "num_kv_shared_layers": 0,
            "activation_sparsity_pattern": _sparsity(n)}


def _gemma3n_out(w, hf: dict) -> dict:
    """Gemma3NModel.set_gguf_parameters' keys; what llama.cpp's graph would compute otherwise refused first."""
    n = hf["num_hidden_layers"]
    rope = hf["rope_parameters"]
    fixed = {"hidden_size_per_layer_input": PLE, "laurel_rank": LAUREL, "altup_num_inputs": STREAMS,
             "altup_active_idx": 0, "altup_correct_scale": True, "activation_sparsity_pattern": _sparsity(n),
             "layer_types": _types(n), "num_kv_shared_layers": 0, "vocab_size_per_layer_input": hf["vocab_size"]}
    for key, want in fixed.items():
        if hf.get(key) != want:
            raise LlmarchError(f"GGUF gemma3n (llama.cpp) fixes {key} at {want!r}, not {hf.get(key)!r}")
    if rope[SLIDING] != {"rope_type": "default", "rope_theta": 10000.0}:
        raise LlmarchError(f"GGUF gemma3n (llama.cpp) fixes the sliding layers' RoPE at base 10000, not "
                           f"{rope[SLIDING]!r}")
    w.add_sliding_window(hf["sliding_window"])
    w.add_final_logit_softcapping(hf.get("final_logit_softcapping") or 0.0)
    w.add_embedding_length_per_layer_input(hf["hidden_size_per_layer_input"])
    w.add_altup_active_idx(0)
    w.add_altup_num_inputs(STREAMS)
    w.add_activation_sparsity_scale(hf["activation_sparsity_pattern"])
    return {}


def _gemma3n_common(hf: dict) -> dict:
    """intermediate_size as one width where every layer has it (feed_forward_length per layer otherwise)."""
    ffn = hf["intermediate_size"]
    return {**hf, "intermediate_size": ffn[0] if isinstance(ffn, list) and len(set(ffn)) == 1 else ffn}


ARCHS = {
    "gemma3n": Arch("gemma3n_text", fields=_gemma3n, common=_gemma3n_common, write=_gemma3n_out,
                    # llama.cpp loads the corrected stream's scale with `.weight`: blk.{i}.altup_correct_scale.weight
                    renamed=((".altup.correct_output_scale", ".altup.correct_output_scale.weight"),),
                    indexed=((r"\.altup_projections\.(?P<row>\d+)\.", ".altup_projections."),
                             (r"\.altup_unembed_projections\.(?P<row>\d+)\.", ".altup_unembed_projections."))),
}
