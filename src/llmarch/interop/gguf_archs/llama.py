"""LLaMA and the families written as it or as its close kin (Mixtral, Mistral, Qwen2/3, Qwen3-MoE, OLMo 1 and 2,
OLMoE, SmolLM3, GLM-4, ERNIE 4.5, Arcee, Seed-OSS, InternLM3,
Nemotron, EXAONE 4.0, Apertus, Ministral 3, ERNIE 4.5's mixtures)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta


def _llama(hf: dict, meta: Meta) -> dict:
    """llama with experts (ffn_gate_inp, ffn_*_exps, expert_count) is Mixtral: convert_hf_to_gguf.py writes
    MixtralForCausalLM as LlamaModel, and llama.cpp renormalises the top-k weights for it. MLP biases where the file
    has them (llama.cpp's llama loads them where present: InternLM3's `bias`)."""
    experts = meta.get("expert_count", 0)
    if not experts:
        return {**hf, "mlp_bias": meta.has("blk.0.ffn_down.bias")}
    return {**hf, "model_type": "mixtral", "num_local_experts": experts,
            "num_experts_per_tok": meta.get("expert_used_count")}


def _qwen3moe(hf: dict, meta: Meta) -> dict:
    """Qwen3-MoE: every layer a mixture (llama.cpp has no dense layers for it, so decoder_sparse_step 1) of
    experts of width expert_feed_forward_length, top-k weights renormalised (llama.cpp's qwen3moe graph always
    does, as the released models' norm_topk_prob)."""
    return {**hf, "num_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"), "decoder_sparse_step": 1,
            "norm_topk_prob": True}


def _smollm3(hf: dict, meta: Meta) -> dict:
    """SmolLM3: every fourth layer without RoPE (NoPE); llama.cpp fixes that step at 4 (n_no_rope_layer_step),
    and its converter stores no per-layer list."""
    return {**hf, "no_rope_layer_interval": 4}


def _olmo(hf: dict, meta: Meta) -> dict:
    """OLMo 1: norms without parameters (LayerNorm's epsilon, 1e-5) and the clamp of q, k, v where the file has
    one (attention.clamp_kqv, as OlmoModel's converter writes clip_qkv)."""
    return {**hf, "clip_qkv": meta.get("attention.clamp_kqv", None)}


def _olmo_out(w, hf: dict) -> dict:
    w.add_layer_norm_eps(1e-5)
    if hf.get("clip_qkv") is not None:
        w.add_clamp_kqv(hf["clip_qkv"])
    return {}


def _olmoe(hf: dict, meta: Meta) -> dict:
    """OLMoE: every layer a mixture of experts of width feed_forward_length, top-k weights not renormalised
    (llama.cpp's olmoe graph never does, as OLMoE-1B-7B's norm_topk_prob)."""
    return {**hf, "num_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "norm_topk_prob": False}


def _olmoe_out(w, hf: dict) -> dict:
    """OlmoeModel's converter: the expert counts (its FFN width is feed_forward_length); llama.cpp's graph has
    neither the clamp nor renormalised weights, and sizes the key norm for as many key heads as query heads
    (OLMoE-1B-7B's), so a model with any of these otherwise is refused."""
    from ...errors import LlmarchError

    if hf.get("clip_qkv") is not None or hf.get("norm_topk_prob"):
        raise LlmarchError("GGUF olmoe holds neither clip_qkv nor renormalised top-k weights (norm_topk_prob), "
                           "which llama.cpp's olmoe graph does not compute")
    if hf["num_key_value_heads"] != hf["num_attention_heads"]:
        raise LlmarchError("GGUF olmoe needs as many key/value heads as query heads (llama.cpp sizes the key "
                           f"norm so), not {hf['num_key_value_heads']} of {hf['num_attention_heads']}")
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    return {}


def _glm4(hf: dict, meta: Meta) -> dict:
    """GLM-4: the rotated share of each head from rope.dimension_count; q and k as Hugging Face holds them
    (llama.cpp turns adjacent dims, as GLM does, so its converter does not permute them)."""
    head_dim = hf["head_dim"]
    return {**hf, "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}


def _nemotron(hf: dict, meta: Meta) -> dict:
    """Nemotron: LayerNorm1P's epsilon, the rotated share of each head; mlp_bias where the file has FFN biases."""
    head_dim = hf["head_dim"]
    return {**hf, "norm_eps": meta.get("attention.layer_norm_epsilon"), "mlp_bias": meta.has("blk.0.ffn_up.bias"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}


def _nemotron_out(w, hf: dict) -> dict:
    w.add_layer_norm_eps(hf["norm_eps"])
    return {}


def _jais2(hf: dict, meta: Meta) -> dict:
    """Jais-2: LayerNorm's epsilon; q, k, v, o biases where the file has attn_q.bias, MLP biases where ffn_up.bias."""
    return {**hf, "layer_norm_eps": meta.get("attention.layer_norm_epsilon"),
            "mlp_bias": meta.has("blk.0.ffn_up.bias")}


def _jais2_out(w, hf: dict) -> dict:
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    return {}


def _exaone4(hf: dict, meta: Meta) -> dict:
    """EXAONE 4.0: with attention.sliding_window, the layers sliding_window_pattern flags (or a period, every
    that-many-th full) slide, with RoPE, and the others attend to everything without positions."""
    n = hf["num_hidden_layers"]
    types = meta.window_types(n, 4)
    if types is None:
        return {**hf, "sliding_window": None, "layer_types": [FULL] * n}
    return {**hf, "sliding_window": meta.get("attention.sliding_window"), "layer_types": types}


def _exaone4_out(w, hf: dict) -> dict:
    """Exaone4Model's converter. Only a model without a window (EXAONE-4.0-1.2B's layout): with one, llama.cpp
    0.3.36 decoded a tiny windowed EXAONE 4.0 0.25 logits apart from llmarch, whose logits equal transformers'
    (measured; without a window, 4e-4 apart and the same tokens), so such a model is refused."""
    if hf.get("sliding_window") is not None:
        from ...errors import LlmarchError

        raise LlmarchError("GGUF exaone4 out holds a model without a sliding window only (llama.cpp computes the "
                           "windowed layers otherwise)")
    return {}


def _olmo2(hf: dict, meta: Meta) -> dict:
    """OLMo 2, or OLMo 3 where the file has a window: the layers sliding_window_pattern flags (or a period) slide,
    every layer with the file's RoPE."""
    types = meta.window_types(hf["num_hidden_layers"], 4)
    if types is None:
        return hf
    rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta")}
    if hf.get("rope_scaling"):
        raise LlmarchError(f"{meta.path}: an olmo2 file with a window and RoPE scaling is not supported")
    return {**hf, "model_type": "olmo3", "sliding_window": meta.get("attention.sliding_window"), "layer_types": types,
            "rope_parameters": {FULL: rope, SLIDING: dict(rope)}}


def _olmo2_out(w, hf: dict) -> dict:
    """OLMo 3 as llama.cpp's olmo2 with a window: the window and, per layer, whether it slides. RoPE the same on
    every layer (OLMo 3's YaRN on its full layers only is refused: llama.cpp's handling is unverified here)."""
    if hf["model_type"] != "olmo3":
        return {}
    rope = hf["rope_parameters"]
    if rope[FULL] != rope[SLIDING] or rope[FULL].get("rope_type", "default") != "default":
        raise LlmarchError("GGUF olmo2 holds OLMo 3 with one plain RoPE on every layer (no YaRN on the full ones)")
    if SLIDING in hf["layer_types"]:
        w.add_sliding_window(hf["sliding_window"])
        w.add_sliding_window_pattern([t == SLIDING for t in hf["layer_types"]])
    return {}


def _hunyuan_moe_out(w, hf: dict) -> dict:
    """HunYuanMoEModel's converter: the expert counts, the experts' and the shared MLP's width (the same)."""
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["moe_topk"])
    w.add_expert_feed_forward_length(hf["intermediate_size"])
    w.add_expert_shared_feed_forward_length(hf["intermediate_size"])
    return {}


def _mistral3(hf: dict, meta: Meta) -> dict:
    """Ministral 3 (convert_hf_to_gguf.py's Ministral3Model, a LlamaModel: q and k permuted): YaRN from the
    rope.scaling keys, with yarn_log_multiplier as mscale_all_dim beside an mscale of 1 (llama.cpp scales cos and
    sin by mscale(s, 1) / mscale(s, m), as transformers does for those two), and Llama 4's query scaling, beta as
    attention.temperature_scale, its unit YaRN's original context (llama.cpp's n_attn_temp_floor_scale)."""
    rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta")}
    if meta.get("rope.scaling.type", "none") == "yarn":
        for knob in ("attn_factor", "yarn_attn_factor", "yarn_ext_factor"):
            if meta.get(f"rope.scaling.{knob}", None) is not None:
                raise LlmarchError(f"{meta.path}: mistral3 YaRN with rope.scaling.{knob} is not supported")
        rope.update(rope_type="yarn", factor=meta.get("rope.scaling.factor"),
                    original_max_position_embeddings=meta.get("rope.scaling.original_context_length",
                                                              hf["max_position_embeddings"]),
                    beta_fast=meta.get("rope.scaling.yarn_beta_fast", 32.0),
                    beta_slow=meta.get("rope.scaling.yarn_beta_slow", 1.0), truncate=True)
        if log_mul := meta.get("rope.scaling.yarn_log_multiplier", 0.0):
            rope.update(mscale=1.0, mscale_all_dim=float(log_mul))
    if beta := meta.get("attention.temperature_scale", 0.0):
        unit = meta.get("attention.temperature_length", None)
        if rope["rope_type"] != "yarn" or unit not in (None, rope["original_max_position_embeddings"]):
            raise LlmarchError(f"{meta.path}: mistral3's query scaling is read with YaRN, its unit YaRN's original "
                               "context")
        rope["llama_4_scaling_beta"] = float(beta)
    hf.pop("rope_scaling", None)
    return {**hf, "rope_parameters": rope}


def _mistral3_out(w, hf: dict) -> dict:
    """Ministral3Model's keys beyond TextModel's YaRN ones (_metadata): yarn_log_multiplier (mscale_all_dim, with
    an mscale of 1) and attention.temperature_scale (llama_4_scaling_beta) with its unit as temperature_length; what
    llama.cpp would read otherwise the written file's reading back refuses (an attention factor, another mscale)."""
    rope = hf["rope_parameters"]
    if rope.get("rope_type") == "yarn" and rope.get("mscale") and rope.get("mscale_all_dim"):
        w.add_rope_scaling_yarn_log_mul(rope["mscale_all_dim"])
    if rope.get("llama_4_scaling_beta"):
        w.add_attn_temperature_scale(rope["llama_4_scaling_beta"])
        w.add_attn_temperature_length(rope["original_max_position_embeddings"])
    return {}


def _ernie4_5_moe(hf: dict, meta: Meta) -> dict:
    """ERNIE 4.5's mixtures (convert_hf_to_gguf.py's Ernie4_5MoeModel): leading_dense_block_count dense layers, then
    every layer (interleave_moe_layer_step 1) experts of expert_feed_forward_length chosen by softmax score plus
    the expert bias (exp_probs_b), renormalised (llama.cpp's graph always does), and expert_shared_count shared
    experts of the experts' width."""
    if meta.get("interleave_moe_layer_step", 1) != 1:
        raise LlmarchError(f"{meta.path}: ernie4_5-moe with mixtures on every n-th layer is not supported")
    n = hf["num_hidden_layers"]
    return {**hf, "use_bias": hf["attention_bias"], "moe_num_experts": meta.get("expert_count"),
            "moe_k": meta.get("expert_used_count"), "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "moe_num_shared_experts": meta.get("expert_shared_count", 0),
            "moe_layer_start_index": meta.get("leading_dense_block_count", 0), "moe_layer_end_index": n - 1,
            "moe_layer_interval": 1}


def _ernie4_5_moe_out(w, hf: dict) -> dict:
    """Ernie4_5MoeModel's keys; the shared experts' width as llama.cpp reads it (n_ff_shexp: all of them together;
    the converter derives it as intermediate_size / num_key_value_heads, which the released models make equal)."""
    _no_bias("ernie4_5-moe")(w, hf)
    w.add_expert_count(hf["moe_num_experts"])
    w.add_expert_used_count(hf["moe_k"])
    w.add_interleave_moe_layer_step(1)
    w.add_leading_dense_block_count(hf["moe_layer_start_index"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_shared_count(hf["moe_num_shared_experts"])
    if hf["moe_num_shared_experts"]:
        w.add_expert_shared_feed_forward_length(hf["moe_num_shared_experts"] * hf["moe_intermediate_size"])
    return {}


def _no_bias(arch: str):
    """A writer refusing biases, which llama.cpp's `arch` graph has no place for (it refuses such a file)."""
    def write(w, hf: dict) -> dict:
        if hf.get("use_bias"):
            from ...errors import LlmarchError

            raise LlmarchError(f"GGUF {arch} holds no biases (use_bias): llama.cpp refuses such a file")
        return {}

    return write


def _experts_out(w, hf: dict) -> dict:
    """The MoE keys convert_hf_to_gguf.py writes (TextModel: expert_count, expert_used_count; Qwen3MoeModel
    also expert_feed_forward_length), where the model has experts."""
    if hf.get("num_local_experts"):
        w.add_expert_count(hf["num_local_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
    if hf.get("moe_intermediate_size"):
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    return {}


ARCHS = {
    # InternLM3 is LLaMA exactly (the converter's InternLM3Model writes it as llama), read back as llama
    "llama": Arch("llama", permuted_qk=True, fields=_llama, write=_experts_out,
                  also=("mixtral", "mistral", "internlm3")),
    "qwen3moe": Arch("qwen3_moe", fields=_qwen3moe, write=_experts_out),
    "olmo2": Arch("olmo2", fields=_olmo2, write=_olmo2_out, also=("olmo3",)),
    "olmo": Arch("olmo", permuted_qk=True, fields=_olmo, write=_olmo_out, layer_norm=True),
    "olmoe": Arch("olmoe", fields=_olmoe, write=_olmoe_out),
    "glm4": Arch("glm4", fields=_glm4),
    "arcee": Arch("arcee", permuted_qk=True),  # LLaMA's tensors but ffn_gate
    "seed_oss": Arch("seed_oss"),  # Qwen2's q, k, v biases; q and k unpermuted
    "exaone4": Arch("exaone4", fields=_exaone4, write=_exaone4_out),
    "hunyuan-dense": Arch("hunyuan_v1_dense"),  # the q/k norms after RoPE; a stretched base as rope.freq_base
    "hunyuan-moe": Arch("hunyuan_v1_moe", fields=lambda hf, meta: {**hf, "num_experts": meta.get("expert_count"),
                                                                   "moe_topk": meta.get("expert_used_count")},
                        write=_hunyuan_moe_out),
    # LayerNorm1P's gains stored as 1 + g (the converter adds the 1, as for Gemma's norms)
    "nemotron": Arch("nemotron", fields=_nemotron, write=_nemotron_out, layer_norm=True,
                     tensors=((r"norm\.weight$", lambda t, hf: t + 1.0, lambda t, hf: t - 1.0),)),
    # Jais-2 (convert_hf_to_gguf.py's Jais2Model): LayerNorms with biases, an ungated squared-ReLU MLP
    "jais2": Arch("jais2", fields=_jais2, write=_jais2_out, layer_norm=True),
    # q and k as Hugging Face holds them: llama.cpp turns adjacent dims, as ERNIE does
    "ernie4_5": Arch("ernie4_5", fields=lambda hf, meta: {**hf, "use_bias": hf["attention_bias"]},
                     write=_no_bias("ernie4_5")),
    "smollm3": Arch("smollm3", permuted_qk=True, fields=_smollm3),
    "qwen2": Arch("qwen2"),
    # the expert bias (1, E) in Hugging Face, (E,) as llama.cpp reads exp_probs_b
    "ernie4_5-moe": Arch("ernie4_5_moe", fields=_ernie4_5_moe, write=_ernie4_5_moe_out,
                         tensors=((r"moe_statics\.e_score_correction_bias$", lambda t, hf: t.reshape(-1),
                                   lambda t, hf: t.reshape(1, -1)),),
                         renamed=((".e_score_correction_bias", ".e_score_correction.bias"),)),
    "mistral3": Arch("ministral3", permuted_qk=True, fields=_mistral3, write=_mistral3_out, rope_scalings=("yarn",)),
    # Apertus (convert_hf_to_gguf.py's ApertusModel: q and k unpermuted, per-head q/k norms): the xIELU MLP as
    # ffn_up, ffn_down, its per-layer scalars as it holds them (softplus^-1 of alpha_p and of alpha_n - beta; ggml_xielu
    # applies the softplus) in the arrays xielu.alpha_p, xielu.alpha_n, xielu.beta, xielu.eps, one value a layer
    "apertus": Arch("apertus", keyed=tuple((rf"\.layers\.(?P<layer>\d+)\.mlp\.act_fn\.{p}$", f"xielu.{p}", shape)
                                           for p, shape in (("alpha_p", (1,)), ("alpha_n", (1,)), ("beta", ()),
                                                            ("eps", ())))),
    "qwen3": Arch("qwen3"),
}
