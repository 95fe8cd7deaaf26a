"""PLM-1.8B (`model_type: plm`, remote code PLMForCausalLM; PLM-Team 2025, "PLM: Efficient Peripheral Language
Models Hardware-Co-Designed for Ubiquitous Computing"): DeepSeek-V2's multi-head latent attention (mixer 'mla',
layers/mla.py: one query projection, no q_lora, the keys and values from a normed latent of kv_lora_rank, a shared
RoPE key; RoPE dims in DeepSeek's interleaved pairs, `rope_interleave`, permuted on import as deepseek_v2.py does)
with an ungated squared-ReLU MLP (`hidden_act: relu2`, `mlp.up_proj`, `mlp.down_proj`: ffn 'relu2') and no experts.
Refused: another activation, rope_interleave false, experts."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, deepseek_config, deepseek_hf, rules
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import causal_only
from .mapping import Rule

_M = "model.layers.{i}.mlp."
RULES = [r for r in rules(interleaved=True) if ".mlp." not in r.ours] + [
    Rule.of(_M + "up_proj.weight", "blocks.{i}.mlp.up.weight"),
    Rule.of(_M + "down_proj.weight", "blocks.{i}.mlp.down.weight"),
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "relu2") != "relu2" or hf.get("rope_interleave") is False or hf.get("n_routed_experts"):
        raise LlmarchError(f"plm: hidden_act {hf.get('hidden_act')!r}, rope_interleave false or experts are not "
                           "supported (relu2, interleaved RoPE, dense MLPs)")
    return deepseek_config({**hf, "hidden_act": "silu"}).replace(ffn="relu2")


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    if cfg.ffn != "relu2" or cfg.n_experts:
        raise LlmarchError("model_type plm needs an ungated relu2 MLP in every layer and no experts")
    hf = deepseek_hf(cfg.replace(ffn="swiglu"), architectures=["PLMForCausalLM"], hidden_act="relu2",
                     rope_interleave=True)
    for key in ("n_routed_experts", "first_k_dense_replace"):
        del hf[key]
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("plm")(Family(RULES, to_config, from_config, IGNORE))
