"""HyperCLOVA X SEED (`model_type: hyperclovax`; NAVER Cloud 2025, HyperCLOVAX-SEED-Think-14B; transformers'
HyperCLOVAXForCausalLM): Granite's LLaMA layout and muP-style scalars (granite.py) with Peri-LN (Kim et al. 2025,
"Peri-LN: Revisiting Layer Normalization in the Transformer Architecture", §3): with `use_post_norm` (the default)
each sublayer's output passes an RMSNorm of its own (`post_norm1`, `post_norm2`) before the residual multiplier
and the add, x += m * norm(f(norm(x))): norm_placement 'sandwich', Gemma 2's placement. Two scalars read
differently from Granite's: `logits_scaling` multiplies the logits (logit_divisor = 1 / logits_scaling; the
division costs at most an ulp against transformers' product), and `attention_multiplier` null or absent is
1/sqrt(head_dim) (attn_scale None), not 1."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .granite import NEEDS, scalars, scalars_hf, unexpressible
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

RULES = LLAMA_RULES + [Rule.of("model.layers.{i}.post_norm1.weight", "blocks.{i}.post_ln1.weight"),
                       Rule.of("model.layers.{i}.post_norm2.weight", "blocks.{i}.post_ln2.weight")]


def to_config(hf: dict) -> ModelConfig:
    if not hf.get("logits_scaling", 1.0):
        raise LlmarchError("hyperclovax: logits_scaling 0 is not supported")
    fields = scalars({**hf, "logits_scaling": 1.0 / float(hf.get("logits_scaling", 1.0))})
    if hf.get("attention_multiplier") is None:
        fields["attn_scale"] = None  # transformers resolves a null to head_dim ** -0.5, llmarch's default
    return llama_like_config(hf, norm_placement="sandwich" if hf.get("use_post_norm", True) else "pre", **fields)


def unexpressible_here(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' HyperCLOVAX cannot compute: Granite's limits, with either placement."""
    if cfg.norm_placement not in ("pre", "sandwich"):
        return "norm_placement 'pre' or 'sandwich' (use_post_norm)"
    return unexpressible(cfg, dict(NEEDS, norm_placement=cfg.norm_placement))


def from_config(cfg: ModelConfig) -> dict:
    out = llama_like_hf(cfg, architectures=["HyperCLOVAXForCausalLM"], use_post_norm=cfg.norm_placement == "sandwich",
                        **scalars_hf(cfg))
    out["logits_scaling"] = 1.0 / cfg.logit_divisor
    return out


FAMILIES.register("hyperclovax")(Family(RULES, to_config, from_config, IGNORE, needs=unexpressible_here))
