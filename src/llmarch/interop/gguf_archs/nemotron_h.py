"""NVIDIA Nemotron-H as llama.cpp's `nemotron_h`, and with experts (Nemotron 3 Nano) `nemotron_h_moe`
(convert_hf_to_gguf.py's NemotronHModel, a GraniteHybridModel: Mamba2Model's SSM tensors and keys, ssm.inner_size the
heads times their width, ssm.time_step_rank the head count). llama.cpp (src/models/nemotron-h.cpp) gives every layer
its one norm (attn_norm) and tells its part by two per-layer keys: attention.head_count_kv, 0 but on attention
layers, and feed_forward_length, the MLP's width on MLP layers (the experts' on MoE layers), 0 elsewhere; a layer with
both 0 is Mamba-2. In a nemotron_h_moe file every FFN layer is a mixture: sigmoid scores, exp_probs_b for the choice,
the chosen weights renormalised where expert_weights_norm, times expert_weights_scale, beside the ungated shared MLP
(ffn_{up,down}_shexp); llama.cpp reads no groups there, so a grouped router is refused. The experts are stored stacked
as ffn_{up,down}_exps (the converter's merged names, which the gguf package knows as Mixtral's)."""
from __future__ import annotations

from ...errors import LlmarchError
from ...layers.mamba2 import inner_width
from .arch import Arch, Meta
from .mamba import mamba2_tensors

_FFN_TYPES = ("mlp", "moe")


def _common(hf: dict) -> dict:
    """NemotronHModel.set_gguf_parameters' per-layer keys, and RMSNorm's epsilon under the name _metadata reads."""
    types = hf["layers_block_type"]
    width = hf["moe_intermediate_size"] if hf.get("n_routed_experts") else hf["intermediate_size"]
    return {**hf, "num_hidden_layers": len(types), "rms_norm_eps": hf["layer_norm_epsilon"],
            "num_key_value_heads": [hf["num_key_value_heads"] if t == "full_attention" else 0 for t in types],
            "intermediate_size": [width if t in _FFN_TYPES else 0 for t in types]}


def _write(w, hf: dict) -> dict:
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])  # llama.cpp requires it beside the RMS epsilon (same value)
    w.add_ssm_conv_kernel(hf["conv_kernel"])
    w.add_ssm_state_size(hf["ssm_state_size"])
    w.add_ssm_group_count(hf["n_groups"])
    w.add_ssm_inner_size(hf["mamba_num_heads"] * hf["mamba_head_dim"])
    w.add_ssm_time_step_rank(hf["mamba_num_heads"])
    if hf.get("n_routed_experts"):
        w.add_expert_count(hf["n_routed_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
        w.add_expert_shared_feed_forward_length(hf["moe_shared_expert_intermediate_size"])
        w.add_expert_shared_count(hf["n_shared_experts"])
        w.add_expert_weights_norm(hf["norm_topk_prob"])
        w.add_expert_weights_scale(hf["routed_scaling_factor"])
        w.add_expert_group_count(hf["n_group"])
    return {}


def _fields(hf: dict, meta: Meta) -> dict:
    """NemotronHConfig's fields: each layer's type from its KV-head count and FFN width, the SSM keys, the experts."""
    n = hf["num_hidden_layers"]
    kv, ff = ([v] * n if not isinstance(v, list) else v for v in (hf["num_key_value_heads"], hf["intermediate_size"]))
    experts = meta.get("expert_count", 0)
    types = ["full_attention" if k else ("moe" if experts else "mlp") if f else "linear_attention"
             for k, f in zip(kv, ff)]
    first = {t: types.index(t) for t in reversed(types)}  # each type's first layer
    heads, inner = meta.get("ssm.time_step_rank"), meta.get("ssm.inner_size")
    out = {**hf, "layers_block_type": types, "num_key_value_heads": max(kv) or hf["num_attention_heads"],
           "intermediate_size": max(ff), "layer_norm_epsilon": hf["rms_norm_eps"],
           "ssm_state_size": meta.get("ssm.state_size"), "conv_kernel": meta.get("ssm.conv_kernel"),
           "mamba_num_heads": heads, "mamba_head_dim": inner // heads, "n_groups": meta.get("ssm.group_count"),
           "use_conv_bias": "linear_attention" not in first
           or meta.has(f"blk.{first['linear_attention']}.ssm_conv1d.bias"),
           "mlp_bias": "mlp" in first and meta.has(f"blk.{first['mlp']}.ffn_up.bias"), "use_bias": False}
    if experts:
        out.update(n_routed_experts=experts, num_experts_per_tok=meta.get("expert_used_count"),
                   moe_intermediate_size=meta.get("expert_feed_forward_length"),
                   moe_shared_expert_intermediate_size=meta.get("expert_shared_feed_forward_length"),
                   norm_topk_prob=bool(meta.get("expert_weights_norm")),
                   routed_scaling_factor=meta.get("expert_weights_scale"), n_group=meta.get("expert_group_count", 1))
    return out


def _model_out(w, cfg):
    """What llama.cpp's graph would compute otherwise is refused; the returned config is what the file holds: the
    fields no key stores (Mamba-2's unused expand, a MoE model's unused MLP width, ...) as reading gives them."""
    kinds = [cfg.layer_mixer(i) if cfg.layer_mixer(i) != "none" else "moe" if cfg.is_moe_layer(i) else "mlp"
             for i in range(cfg.n_layers)]
    needs = [("no Mamba-2 in_proj/out_proj biases (ssm_bias=False)", not cfg.ssm_bias),
             ("MLP or MoE layers", "mlp" in kinds or "moe" in kinds),
             ("no MLP layers beside MoE layers (llama.cpp's nemotron_h_moe makes every FFN layer a mixture)",
              not ("mlp" in kinds and "moe" in kinds)),
             ("a router without groups (router_groups=1: llama.cpp's nemotron_h_moe reads none)",
              cfg.router_groups == 1)]
    problem = next((need for need, ok in needs if not ok), None)
    if problem:
        raise LlmarchError(f"GGUF nemotron_h needs {problem}")
    kept = dict(ssm_expand=2, ssm_inner=inner_width(cfg))
    if "moe" in kinds:
        kept.update(ffn_hidden=cfg.expert_hidden)
    if "mamba2" not in kinds:
        kept.update(ssm_conv_bias=True)
    if "attention" not in kinds:
        kept.update(n_kv_heads=cfg.n_heads)
    return cfg.replace(**kept)


# the converter's merged expert names; the gguf package knows them as Mixtral's under `layers.{i}.feed_forward.`
_RENAMED = ((".dt_bias", ".dt_proj.bias"), (".e_score_correction_bias", ".e_score_correction.bias"),
            (".mixer.experts.up_proj.weight", ".feed_forward.experts.w3.weight"),
            (".mixer.experts.down_proj.weight", ".feed_forward.experts.w2.weight"))
_ARCH = dict(fields=_fields, common=_common, write=_write, model_out=_model_out, rope=False,
             tensors=mamba2_tensors("mixer", "n_groups"), renamed=_RENAMED, stripped=("backbone.",))
ARCHS = {
    "nemotron_h": Arch("nemotron_h", experts_arch="nemotron_h_moe", **_ARCH),
    "nemotron_h_moe": Arch("nemotron_h", **_ARCH),
}
