"""GPTBigCode (`model_type: gpt_bigcode`: StarCoder, StarCoderBase, SantaCoder, WizardCoder; Li et al. 2023,
"StarCoder: may the source be with you!"): GPT-2's blocks (pre-norm LayerNorms with biases, learned positions,
a tanh-GELU MLP, biases everywhere, a tied head) with plain nn.Linear weights (not GPT-2's Conv1D) and
multi-query attention (multi_query: one key/value head, `c_attn` rows [q (d) | k | v] as our qkv_proj); without
multi_query, `c_attn` holds q, k, v per head (layout `neox_qkv`). scale_attn_weights false: scores unscaled."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .gpt2 import RULES as GPT2_RULES, from_config as gpt2_hf, to_config as gpt2_config
from .hf import FAMILIES, Family
from .mapping import Rule


# GPT-2's rules with its Conv1D layouts as plain ones, c_attn apart (its layout depends on the config)
RULES = [Rule(r.hf, r.ours, "same") for r in GPT2_RULES if ".qkv_proj." not in r.ours]
_QKV = [r for r in GPT2_RULES if ".qkv_proj." in r.ours]


def qkv_rules(cfg: ModelConfig) -> list[Rule]:
    """c_attn: [q | k | v] rows with one key/value head; q, k, v per head (neox_qkv) with one per query head."""
    return [Rule(r.hf, r.ours, "same" if cfg.n_kv_heads == 1 else "neox_qkv") for r in _QKV]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("add_cross_attention"):
        raise LlmarchError("gpt_bigcode with add_cross_attention is not supported")
    cfg = gpt2_config({**hf, "activation_function": hf.get("activation_function", "gelu_pytorch_tanh")})
    return cfg.replace(name=hf.get("_name_or_path") or "gpt_bigcode", hf_model_type="gpt_bigcode",
                       n_kv_heads=1 if hf.get("multi_query", True) else None,
                       attn_scale=None if hf.get("scale_attn_weights", True) else 1.0)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_kv_heads not in (1, cfg.n_heads) or cfg.attn_scale not in (None, 1.0):
        raise LlmarchError("model_type gpt_bigcode has one key/value head (multi_query) or one per query head, and "
                           "scores scaled by 1/sqrt(head_dim) or not at all")
    out = {**gpt2_hf(cfg.replace(hf_model_type="gpt2")), "model_type": "gpt_bigcode",
           "architectures": ["GPTBigCodeForCausalLM"], "multi_query": cfg.n_kv_heads == 1,
           "scale_attn_weights": cfg.attn_scale is None}
    out["activation_function"] = {"gelu_new": "gelu_pytorch_tanh"}.get(out["activation_function"],
                                                                        out["activation_function"])
    return out


FAMILIES.register("gpt_bigcode")(Family(RULES, to_config, from_config, ignore=(r"\.attn\.(masked_)?bias$",),
                                        more_rules=qkv_rules))
