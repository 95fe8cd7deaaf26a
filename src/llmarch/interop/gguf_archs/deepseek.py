"""DeepSeek-V2 and V3 (GGUF "deepseek2", convert_hf_to_gguf.py's DeepseekV2Model): multi-head latent attention
and DeepSeekMoE. llama.cpp runs the attention absorbed, as multi-query attention over the latent: the converter
writes attention.key_length as kv_lora_rank + the RoPE dims and value_length as kv_lora_rank (the cached entry),
the heads' own lengths as key_length_mla / value_length_mla, head_count_kv 1, and stores kv_b_proj split per
head as k_b (transposed, (H, r, nope)) and v_b ((H, v, r)). RoPE dims stay in DeepSeek's interleaved pairs,
which llama.cpp's deepseek2 rotates as such (its NORM rope), so no rows move.

Routing (llama.cpp's build_moe_ffn): expert_gating_func softmax (V2; llama.cpp's default where a file has none)
or sigmoid (V3), the bias exp_probs_b added for the choice only, the chosen weights renormalised where
expert_weights_norm and times expert_weights_scale; with expert_group_count > 1 a token chooses among the
expert_group_used_count groups whose best two experts score highest (V3's node-limited routing). What llmarch's
DeepSeek families cannot mean is refused: softmax with groups (V2 scores a group by its best expert, llama.cpp
by its best two), softmax with renormalised weights or a bias, sigmoid without the bias; and, on writing,
attention biases (llama.cpp's deepseek2 graph has none)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta
from .llama import _exaone4

SOFTMAX, SIGMOID = 1, 2  # expert_gating_func's values (gguf.ExpertGatingFuncType)


def _router(meta: Meta, first_moe: int) -> dict:
    """The config.json router fields of the file's gating, or a one-line refusal of what llmarch cannot mean."""
    gating = meta.get("expert_gating_func", SOFTMAX)
    biased = meta.has(f"blk.{first_moe}.exp_probs_b.bias")
    norm, groups = meta.get("expert_weights_norm", False), meta.get("expert_group_count", 1)
    if gating == SIGMOID and biased:
        return {"model_type": "deepseek_v3", "norm_topk_prob": bool(norm), "n_group": groups,
                "topk_group": meta.get("expert_group_used_count", 1)}
    if gating != SOFTMAX or biased or norm or groups > 1:
        raise LlmarchError(f"{meta.path}: deepseek2 routing (gating {gating}, exp_probs_b {biased}, weights norm "
                           f"{bool(norm)}, {groups} groups) is neither DeepSeek-V2's (softmax, no bias, no norm, "
                           "no groups) nor V3's (sigmoid with exp_probs_b)")
    return {"model_type": "deepseek_v2", "topk_method": "greedy"}


def _deepseek2(hf: dict, meta: Meta, router=_router) -> dict:
    """The latent attention's ranks and head lengths (key/value_length themselves in a file from before the
    split k_b/v_b tensors), the dense first layers, the experts and their router (`router`: its config.json
    fields, the model type among them)."""
    rope = meta.get("rope.dimension_count")
    key, value = meta.get("attention.key_length_mla", None), meta.get("attention.value_length_mla", None)
    if key is None:
        key, value = meta.get("attention.key_length"), meta.get("attention.value_length")
    experts, dense = meta.get("expert_count", 0), meta.get("leading_dense_block_count", 0)
    q_rank = meta.get("attention.q_lora_rank", 0) or None  # 0 or none: one q projection (V2-Lite)
    out = {**hf, "num_key_value_heads": hf["num_attention_heads"], "q_lora_rank": q_rank,
           "kv_lora_rank": meta.get("attention.kv_lora_rank"), "qk_rope_head_dim": rope, "qk_nope_head_dim": key - rope,
           "v_head_dim": value, "attention_bias": False, "n_routed_experts": experts,
           "first_k_dense_replace": dense if experts else hf["num_hidden_layers"]}
    out.pop("head_dim")
    out.pop("rope_scaling", None)
    out["rope_parameters"] = _rope(meta, out.pop("rope_theta"))
    if not experts:
        return {**out, "model_type": "deepseek_v2"}
    return {**out, **router(meta, dense), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "n_shared_experts": meta.get("expert_shared_count", 0),
            "routed_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0}


def _rope(meta: Meta, theta: float) -> dict:
    """RoPE unscaled, or DeepSeek's YaRN: llama.cpp's deepseek2 scales q.k by (0.1 m ln s + 1)^2 with m the
    stored yarn_log_multiplier / 0.1 (mscale_all_dim), and cos and sin by mscale(s, m) / mscale(s, m), 1: it takes
    mscale = mscale_all_dim, as every DeepSeek checkpoint has them. Linear scaling, YaRN without the multiplier
    or with an attention factor of its own mean other scales there than in transformers (measured), so are
    refused."""
    kind = meta.get("rope.scaling.type", "none")
    if kind == "none":
        return {"rope_type": "default", "rope_theta": theta}
    log_mul = meta.get("rope.scaling.yarn_log_multiplier", None)
    if kind != "yarn" or log_mul is None or meta.get("rope.scaling.yarn_attn_factor", None) is not None \
            or meta.get("rope.scaling.yarn_ext_factor", None) is not None:
        raise LlmarchError(f"{meta.path}: deepseek2 RoPE scaling {kind!r} is supported only as DeepSeek's YaRN "
                           "(yarn_log_multiplier given, no yarn_attn_factor or yarn_ext_factor)")
    m = log_mul / 0.1
    return {"rope_type": "yarn", "rope_theta": theta, "factor": meta.get("rope.scaling.factor"),
            "original_max_position_embeddings": meta.get("rope.scaling.original_context_length"),
            "beta_fast": meta.get("rope.scaling.yarn_beta_fast", 32.0),
            "beta_slow": meta.get("rope.scaling.yarn_beta_slow", 1.0), "mscale": m, "mscale_all_dim": m}


def _deepseek2_common(hf: dict) -> dict:
    """As DeepseekV2Model.set_gguf_parameters: one KV head (the latent, shared by every head)."""
    return {**hf, "num_key_value_heads": 1}


def _deepseek2_out(w, hf: dict) -> dict:
    """DeepseekV2Model.set_gguf_parameters' keys, and the router's that TextModel writes from config.json
    (n_group, topk_group, scoring_func: written here always, as llama.cpp otherwise takes softmax). q_lora_rank
    is written as 0 where queries are not compressed: llama.cpp requires the key of every deepseek2 file but
    those of DeepSeek-V2-Lite's layer count (27), and reads 0 as the single query projection."""
    if hf.get("attention_bias"):
        raise LlmarchError("GGUF deepseek2 (llama.cpp) has no attention biases; this model has attention_bias")
    if hf["model_type"] == "deepseek_v2" and (hf.get("n_group") or 1) > 1:
        raise LlmarchError("GGUF deepseek2 cannot express DeepSeek-V2's group-limited routing (llama.cpp scores a "
                           "group by its best two experts, V2 by its best one)")
    _check_rope(hf["rope_parameters"])
    rope, rank = hf["qk_rope_head_dim"], hf["kv_lora_rank"]
    w.add_leading_dense_block_count(hf["first_k_dense_replace"])
    w.add_q_lora_rank(hf["q_lora_rank"] or 0)
    w.add_kv_lora_rank(rank)
    w.add_key_length(rank + rope)
    w.add_value_length(rank)
    w.add_key_length_mla(hf["qk_nope_head_dim"] + rope)
    w.add_value_length_mla(hf["v_head_dim"])
    w.add_rope_dimension_count(rope)
    _yarn_out(w, hf["rope_parameters"])
    w.add_expert_feed_forward_length(hf.get("moe_intermediate_size") or hf["intermediate_size"])
    w.add_expert_shared_count(hf.get("n_shared_experts") or 0)
    if not hf["n_routed_experts"]:
        return {}
    w.add_expert_count(hf["n_routed_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_group_count(hf.get("n_group") or 1)
    w.add_expert_group_used_count(hf.get("topk_group") or 1)
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID if hf["model_type"] == "deepseek_v3" else SOFTMAX)
    w.add_expert_weights_scale(hf["routed_scaling_factor"])
    if hf.get("norm_topk_prob"):
        w.add_expert_weights_norm(True)
    return {}


def _check_rope(rope: dict) -> None:
    """What _rope reads back as itself: no scaling, or YaRN with mscale = mscale_all_dim (given), no attention
    factor of its own and the ramp's ends rounded to whole dims (ggml's yarn_corr_dims floors and ceils them)."""
    kind = rope.get("rope_type", "default")
    if kind == "default" or kind == "yarn" and rope.get("mscale_all_dim") and \
            rope.get("mscale") == rope["mscale_all_dim"] and rope.get("attention_factor") is None and \
            rope.get("truncate", True):
        return
    raise LlmarchError(f"GGUF deepseek2 (llama.cpp) takes RoPE unscaled or DeepSeek's YaRN with mscale = "
                       f"mscale_all_dim; this model has {_describe(rope)}")


def _describe(rope: dict) -> str:
    keys = ("rope_type", "mscale", "mscale_all_dim", "attention_factor", "truncate")
    return ", ".join(f"{k} {rope[k]}" for k in keys if rope.get(k) is not None)


def _yarn_out(w, rope: dict) -> None:
    """TextModel's YaRN keys (beta_fast and beta_slow written always: llama.cpp's defaults are transformers'),
    and DeepseekV2Model's yarn_log_multiplier, 0.1 mscale_all_dim (the loader divides it by 0.1 again)."""
    import gguf

    if rope.get("rope_type") != "yarn":
        return
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(rope["factor"])
    w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    w.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
    w.add_rope_scaling_yarn_beta_slow(rope["beta_slow"])
    w.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])


def _kv_b_split(t: torch.Tensor, hf: dict) -> list[torch.Tensor]:
    """kv_b_proj (H (nope + v), r) as the converter splits it: k_b (H, r, nope), v_b (H, v, r)."""
    nope = hf["qk_nope_head_dim"]
    k_b, v_b = t.reshape(hf["num_attention_heads"], nope + hf["v_head_dim"], -1).split(
        [nope, hf["v_head_dim"]], dim=1)
    return [k_b.transpose(1, 2), v_b]


def _kv_b_join(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    k_b, v_b = parts
    return torch.cat((k_b.transpose(1, 2), v_b), dim=1).reshape(-1, v_b.shape[-1])


ARCHS = {
    "deepseek2": Arch("deepseek_v2", fields=_deepseek2, common=_deepseek2_common, write=_deepseek2_out,
                      also=("deepseek_v3",), head_lengths=False, rope_scalings=("yarn",),
                      renamed=((".e_score_correction_bias", ".e_score_correction.bias"),),
                      split=((r"\.kv_b_proj\.weight$", (".k_b_proj.weight", ".v_b_proj.weight"), _kv_b_split,
                              _kv_b_join),)),
}


def _v3_mixture(meta: Meta) -> dict:
    """DeepSeek-V3's mixture as GLM-4.5's and dots.llm1's converters write it: the experts, the router (sigmoid,
    exp_probs_b, groups, weights norm and scale) after leading_dense_block_count dense layers."""
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID:
        raise LlmarchError(f"{meta.path}: {meta.arch} routing other than sigmoid is not supported")
    return {"n_routed_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "n_shared_experts": meta.get("expert_shared_count", 0),
            "first_k_dense_replace": meta.get("leading_dense_block_count", 0),
            "routed_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0,
            "norm_topk_prob": bool(meta.get("expert_weights_norm", False)),
            "n_group": meta.get("expert_group_count", 1), "topk_group": meta.get("expert_group_used_count", 1)}


def _v3_mixture_out(w, hf: dict) -> dict:
    """_v3_mixture, written."""
    w.add_leading_dense_block_count(hf["first_k_dense_replace"])
    w.add_expert_count(hf["n_routed_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_shared_count(hf["n_shared_experts"])
    w.add_expert_group_count(hf["n_group"])
    w.add_expert_group_used_count(hf["topk_group"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
    w.add_expert_weights_scale(hf["routed_scaling_factor"])
    w.add_expert_weights_norm(bool(hf["norm_topk_prob"]))
    return {}


def _glm4moe(hf: dict, meta: Meta) -> dict:
    """GLM-4.5/4.6 (glm4moe, Glm4MoeModel's converter): LLaMA's attention with q, k, v biases where the file has
    them, per-head q/k norms where it has those, half of each head rotated (rope.dimension_count); DeepSeek-V3's
    mixture. The multi-token-prediction layers (nextn_predict_layers, counted in block_count) are not read."""
    n = hf["num_hidden_layers"] - meta.get("nextn_predict_layers", 0)
    return {**hf, "num_hidden_layers": n, **_v3_mixture(meta), "use_qk_norm": meta.has("blk.0.attn_q_norm.weight"),
            "partial_rotary_factor": meta.get("rope.dimension_count", hf["head_dim"]) / hf["head_dim"]}


def _dots1_out(w, hf: dict) -> dict:
    """Dots1Model's converter; llama.cpp's dots1 graph has no sliding layers, and sizes k and v for as many heads
    as q (dots.llm1's)."""
    if "sliding_attention" in (hf.get("layer_types") or []):
        raise LlmarchError("GGUF dots1 has no sliding layers (llama.cpp's dots1 graph attends to every key)")
    if hf["num_key_value_heads"] != hf["num_attention_heads"]:
        raise LlmarchError("GGUF dots1 needs as many key/value heads as query heads (llama.cpp sizes k and v so), "
                           f"not {hf['num_key_value_heads']} of {hf['num_attention_heads']}")
    return _v3_mixture_out(w, hf)


_BIAS = ((".e_score_correction_bias", ".e_score_correction.bias"),)
ARCHS["glm4moe"] = Arch("glm4_moe", fields=_glm4moe, write=_v3_mixture_out, mtp=True, renamed=_BIAS)
# Qwen3's attention (per-head q/k norms, q and k as Hugging Face holds them)
ARCHS["dots1"] = Arch("dots1", fields=lambda hf, meta: {**hf, **_v3_mixture(meta)}, write=_dots1_out, renamed=_BIAS)


def _minimax_m2(hf: dict, meta: Meta) -> dict:
    """MiniMax-M2 (minimax-m2, MiniMaxM2Model's converter): q/k norms over whole projections, rope.dimension_count of
    each head rotated (its rotary_dim), every layer a mixture routed by sigmoid scores with exp_probs_b,
    renormalised (llama.cpp's graph does so whatever the file says)."""
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID:
        raise LlmarchError(f"{meta.path}: minimax-m2 routing other than sigmoid is not supported")
    return {**hf, "num_local_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "rotary_dim": meta.get("rope.dimension_count", hf["head_dim"])}


def _minimax_m2_out(w, hf: dict) -> dict:
    w.add_expert_count(hf["num_local_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["intermediate_size"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
    return {}


def _exaone_moe(hf: dict, meta: Meta) -> dict:
    """EXAONE MoE (exaone-moe, ExaoneMoEModel's converter): EXAONE 4.0's attention (exaone4's keys) with
    DeepSeek-V3's mixture after leading_dense_block_count dense layers; the multi-token-prediction layers
    (nextn_predict_layers, counted in block_count) are not read."""
    n = hf["num_hidden_layers"] - meta.get("nextn_predict_layers", 0)
    mix = _v3_mixture(meta)
    k = mix.pop("first_k_dense_replace")
    return {**_exaone4({**hf, "num_hidden_layers": n}, meta), **mix, "num_experts": mix.pop("n_routed_experts"),
            "num_shared_experts": mix.pop("n_shared_experts"), "mlp_layer_types": ["dense"] * k + ["sparse"] * (n - k)}


def _exaone_moe_out(w, hf: dict) -> dict:
    """ExaoneMoEModel's keys: exaone4's, _v3_mixture's, the shared experts' width (all together) and no NextN
    layers; llama.cpp's graph adds a shared expert on every mixture layer, so a model without one is refused."""
    if not hf["num_shared_experts"]:
        raise LlmarchError("GGUF exaone-moe needs a shared expert (llama.cpp's graph adds one to every mixture); "
                           "this model has num_shared_experts 0")
    if hf.get("sliding_window") is not None:
        w.add_sliding_window(hf["sliding_window"])
        w.add_sliding_window_pattern([t == "sliding_attention" for t in hf["layer_types"]])
    _v3_mixture_out(w, {**hf, "n_routed_experts": hf["num_experts"], "n_shared_experts": hf["num_shared_experts"]})
    w.add_expert_shared_feed_forward_length(hf["num_shared_experts"] * hf["moe_intermediate_size"])
    w.add_nextn_predict_layers(0)
    return {}


ARCHS["exaone-moe"] = Arch("exaone_moe", fields=_exaone_moe, write=_exaone_moe_out, mtp=True, renamed=_BIAS)
ARCHS["minimax-m2"] = Arch("minimax_m2", fields=_minimax_m2, write=_minimax_m2_out, renamed=_BIAS)
