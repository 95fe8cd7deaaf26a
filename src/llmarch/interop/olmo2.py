"""OLMo 2 (`model_type: olmo2`; OLMo et al. 2024, "2 OLMo 2 Furious", §3.2): LLaMA's layout with two changes
for training stability: RMSNorm on each sublayer's output before the residual add and none on its input
(norm_placement 'res_post': x + n(attn(x)), x + n(mlp(x)); HF names the norms post_attention_layernorm and
post_feedforward_layernorm), and QK-norm over the whole query and key projections before they split into heads
(qk_norm 'proj')."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_L = "model.layers.{i}."
RULES = [r for r in LLAMA_RULES if "layernorm" not in r.hf[0]] + [
    Rule.of(_L + "post_attention_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "post_feedforward_layernorm.weight", "blocks.{i}.ln2.weight"),
    *[Rule.of(_L + f"self_attn.{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight") for n in "qk"],
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias", False):  # biased q, k, v, o with an unbiased MLP: llmarch ties o's bias to the MLP's
        raise LlmarchError("olmo2: attention_bias=true is not supported")
    return llama_like_config({**hf, "mlp_bias": False}, qk_norm="proj",
                             norm_placement="res_post", norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "proj" or cfg.norm_placement != "res_post" or not cfg.final_norm:
        raise LlmarchError("model_type olmo2 needs qk_norm='proj', norm_placement='res_post' and a final norm")
    if cfg.sliding_window is not None or cfg.layer_types is not None or cfg.bias or cfg.qkv_bias:
        raise LlmarchError("model_type olmo2 has no biases, sliding windows or layer types")
    out = llama_like_hf(cfg, architectures=["Olmo2ForCausalLM"])
    for key in ("mlp_bias", "head_dim"):  # OLMo 2 has no MLP biases and derives head_dim
        out.pop(key)
    return out


FAMILIES.register("olmo2")(Family(RULES, to_config, from_config, IGNORE))
