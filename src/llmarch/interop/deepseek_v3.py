"""DeepSeek-V3 (`model_type: deepseek_v3`; DeepSeek-AI 2024, arXiv 2412.19437): DeepSeek-V2's latent attention
and DeepSeekMoE (deepseek_v2.py) with V3's router (§2.1.2): sigmoid scores, an expert bias for the choice
(e_score_correction_bias, auxiliary-loss-free balancing), node-limited choice among the topk_group best of
n_group groups (a group scored by its two best experts), the chosen scores renormalised (norm_topk_prob) and
times routed_scaling_factor. RoPE dims interleaved (rope_interleave, true in every published checkpoint).
The multi-token-prediction module a checkpoint may hold (model.layers.61 in DeepSeek-V3's) is not loaded, as
transformers does not load it."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, deepseek_config, deepseek_hf, rules, v3_router_fields
from .hf import FAMILIES, Family

def to_config(hf: dict) -> ModelConfig:
    if hf.get("rope_interleave") is False:  # every published checkpoint interleaves (the config's default)
        raise LlmarchError("deepseek_v3 with rope_interleave false is not supported")
    return deepseek_config(hf, **v3_router_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias):
        raise LlmarchError("model_type deepseek_v3 routes by sigmoid scores with an expert bias "
                           "(router_scoring 'sigmoid', expert_bias True)")
    return deepseek_hf(cfg, architectures=["DeepseekV3ForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                       rope_interleave=True, num_nextn_predict_layers=0)


FAMILIES.register("deepseek_v3")(Family(rules(interleaved=True), to_config, from_config, IGNORE,
                                                     mtp=True))
