"""inclusionAI's GroveMoE (`model_type: grove_moe`, remote code GroveMoeForCausalLM; Wu et al. 2025, "GroveMoE: Towards
Efficient and Superior MoE LLMs with Adjugate Experts"): Qwen3-MoE (per-head q/k RMSNorm, SwiGLU experts of
moe_intermediate_size, the top-k chosen by score and weighted by their softmax probabilities renormalised) whose
experts come in groups of two sharing an adjugate expert (`mlp.chunk_experts.{g}`, a SwiGLU of width 128): every
choice also runs its group's adjugate expert with the same weight, their sum times 0.05 added to the routed experts'
(moe_adjugate_group 2, moe_adjugate_hidden 128, moe_adjugate_scale 0.05, as the remote code fixes them). The
router's `expert_bias` buffer is zero and unread. Refused: dense layers (mlp_only_layers, decoder_sparse_step > 1),
norm_topk_prob false."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE as LLAMA_IGNORE, causal_only
from .mapping import Rule
from .qwen3_moe import RULES as QWEN3_MOE_RULES, from_config as qwen3_moe_hf, to_config as qwen3_moe_config

_M = "model.layers.{i}.mlp."
RULES = QWEN3_MOE_RULES + [
    Rule.of((_M + "chunk_experts.{g}.gate_proj.weight", _M + "chunk_experts.{g}.up_proj.weight"),
            "blocks.{i}.mlp.adjugate.gate_up"),
    Rule.of(_M + "chunk_experts.{g}.down_proj.weight", "blocks.{i}.mlp.adjugate.down"),
]
IGNORE = (*LLAMA_IGNORE, r"mlp\.expert_bias$")
GROUP, HIDDEN, SCALE = 2, 128, 0.05  # the remote code's num_experts_per_group, parallel_expert_intermediate_size


def to_config(hf: dict) -> ModelConfig:
    if hf.get("mlp_only_layers") or int(hf.get("decoder_sparse_step", 1)) != 1 or not hf.get("norm_topk_prob", True):
        raise LlmarchError("grove_moe: dense layers (mlp_only_layers, decoder_sparse_step) and norm_topk_prob false "
                           "are not supported")
    cfg = qwen3_moe_config({**hf, "model_type": "grove_moe", "norm_topk_prob": True})
    return cfg.replace(moe_adjugate_group=GROUP, moe_adjugate_hidden=HIDDEN, moe_adjugate_scale=SCALE)


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    if (cfg.moe_adjugate_group, cfg.moe_adjugate_hidden, cfg.moe_adjugate_scale) != (GROUP, HIDDEN, SCALE):
        raise LlmarchError(f"model_type grove_moe fixes its adjugate experts: groups of {GROUP}, width {HIDDEN}, "
                           f"scale {SCALE}")
    hf = qwen3_moe_hf(cfg.replace(moe_adjugate_group=0))
    hf.update(model_type="grove_moe", architectures=["GroveMoeForCausalLM"], num_experts=hf.pop("num_local_experts"))
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("grove_moe")(Family(RULES, to_config, from_config, IGNORE))
