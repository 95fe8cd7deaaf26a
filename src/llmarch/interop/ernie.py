"""ERNIE 4.5 dense models (`model_type: ernie4_5`: ERNIE-4.5-0.3B; Baidu 2025, "ERNIE 4.5 Technical Report"):
LLaMA's layout with RoPE turning adjacent dims (2j, 2j + 1) together, as GLM does (their q and k rows reordered
to our halves: mapping layout "rope_pairs"), `use_bias` on q, k, v, o and the MLP alike, and a tied head by
default.

ERNIE 4.5's mixtures (`ernie4_5_moe`: ERNIE-4.5-21B-A3B, 300B-A47B): after moe_layer_start_index dense
layers, every layer a mixture of SwiGLU experts of moe_intermediate_size chosen by softmax scores plus an expert
bias (`moe_statics.e_score_correction_bias`, for the choice only), the chosen scores renormalised, and
moe_num_shared_experts shared experts; the multi-token-prediction blocks (`mtp*`) are not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import first_dense, moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import with_rope_pairs
from .mixtral import STACKED

RULES = with_rope_pairs(LLAMA_RULES)


def to_config(hf: dict) -> ModelConfig:
    bias = bool(hf.get("use_bias", False))
    return llama_like_config({**hf, "attention_bias": bias, "mlp_bias": bias, "head_dim": hf.get("head_dim", 128),
                              "tie_word_embeddings": hf.get("tie_word_embeddings", True)},
                             norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or not cfg.final_norm or cfg.bias != cfg.qkv_bias:
        raise LlmarchError("model_type ernie4_5 needs pre-norm RMSNorm and one use_bias for q, k, v, o and the MLP")
    if cfg.ffn != "swiglu" or cfg.qk_norm != "none" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type ernie4_5 has a SwiGLU MLP, no QK-norm, windows or layer types")
    out = llama_like_hf(cfg, architectures=["Ernie4_5ForCausalLM"], use_bias=cfg.bias)
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("ernie4_5")(Family(RULES, to_config, from_config, IGNORE))


MOE_RULES = RULES + moe_rules("moe_statics.e_score_correction_bias", "row")  # its bias stored (1, E)


def moe_config(hf: dict) -> ModelConfig:
    n, start = hf["num_hidden_layers"], int(hf.get("moe_layer_start_index", 1))
    end = int(hf.get("moe_layer_end_index", -1))
    if hf.get("use_bias"):  # biases on q, k, v, o, the dense and shared MLPs and the head, none on the experts
        raise LlmarchError("ernie4_5_moe: use_bias=true is not supported")
    if int(hf.get("moe_layer_interval", 1)) != 1 or end not in (-1, n - 1):
        raise LlmarchError("ernie4_5_moe: mixtures on other layers than moe_layer_start_index to the last "
                           "(moe_layer_interval 1) are not supported")
    return to_config(hf).replace(
        hf_model_type="ernie4_5_moe", n_experts=int(hf["moe_num_experts"]), experts_per_token=int(hf["moe_k"]),
        expert_hidden=int(hf["moe_intermediate_size"]), n_shared_experts=int(hf.get("moe_num_shared_experts", 0)),
        moe_dense_first=start, expert_bias=True, router_renormalize=True,
        router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)))


def moe_hf(cfg: ModelConfig) -> dict:
    if not cfg.n_experts or cfg.router_scoring != "softmax" or not cfg.expert_bias or not cfg.router_renormalize \
            or cfg.moe_period != 1 or cfg.router_groups != 1 or cfg.router_scale != 1.0 or cfg.shared_expert_gate \
            or cfg.capacity_factor is not None or cfg.expert_capacity is not None \
            or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden:
        raise LlmarchError("model_type ernie4_5_moe routes by softmax with an expert bias and renormalised top-k "
                           "to uncapped experts on every layer after the first dense ones, ungated shared "
                           "experts of the experts' width")
    out = {**from_config(cfg.replace(hf_model_type="ernie4_5", n_experts=0)), "model_type": "ernie4_5_moe",
           "architectures": ["Ernie4_5_MoeForCausalLM"], "moe_num_experts": cfg.n_experts,
           "moe_k": cfg.experts_per_token, "moe_intermediate_size": cfg.expert_hidden,
           "moe_num_shared_experts": cfg.n_shared_experts, "moe_layer_start_index": first_dense(cfg),
           "moe_layer_end_index": cfg.n_layers - 1, "moe_layer_interval": 1,
           "router_aux_loss_coef": cfg.router_aux_loss_weight}
    return out


FAMILIES.register("ernie4_5_moe")(Family(MOE_RULES, moe_config, moe_hf, IGNORE + (r"^mtp",),
                                         stacked_experts=STACKED))
