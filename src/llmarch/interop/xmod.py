"""X-MOD (`model_type: xmod`; Pfeiffer et al. 2022, "Lifting the Curse of Multilinguality by Pre-training Modular
Transformers"): RoBERTa (roberta.py's layout under `roberta.`: positions from padding_idx + 1, its MLM head) with a
bottleneck adapter per language in every layer after the FFN (`output.adapter_modules.<language>.dense1/dense2`,
hidden_size / adapter_reduction_factor wide), chosen per input by lang_ids (layers/lang_adapters.py: our `languages`,
`lang_adapter_dim`, `default_language`). `pre_norm` gives pre-norm blocks and a final `encoder.LayerNorm`;
`is_decoder` (XmodForCausalLM) causal attention. The adapters read the FFN's LayerNorm (adapter_reuse_layer_norm,
ln_before_adapter, as every released X-MOD): adapter_layer_norm, or either of those false, is refused, as are a
hidden_act other than gelu (the MLM head applies GELU beside it) and the classification heads."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import _W
from .hf import FAMILIES, Family
from .mapping import Rule
from .roberta import IGNORE, RULES as ROBERTA_RULES
from .roberta import from_config as roberta_hf
from .roberta import to_config as roberta_config

RULES = [*ROBERTA_RULES, *[Rule.of(f"roberta.encoder.LayerNorm.{w}", f"ln_final.{w}") for w in _W]]


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """Each language's adapter, named by language in the checkpoint and by index in ours."""
    layer = "roberta.encoder.layer.{i}.output.adapter_modules"
    return [Rule.of(f"{layer}.{lang}.{hf}.{w}", f"blocks.{{i}}.lang_adapters.adapters.{j}.{ours}.{w}")
            for j, lang in enumerate(cfg.languages or ()) for hf, ours in (("dense1", "up"), ("dense2", "down"))
            for w in _W]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("adapter_layer_norm", False) or not hf.get("adapter_reuse_layer_norm", True) \
            or not hf.get("ln_before_adapter", True) or hf.get("add_cross_attention", False):
        raise LlmarchError("X-MOD with adapter_layer_norm, adapter_reuse_layer_norm=false, ln_before_adapter=false or "
                           "add_cross_attention is not supported (adapters on the FFN's LayerNorm, as released)")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise LlmarchError(f"X-MOD with hidden_act {hf['hidden_act']!r} is not supported (its MLM head applies GELU)")
    pre = bool(hf.get("pre_norm", False))
    return roberta_config(hf).replace(
        norm_placement="pre" if pre else "post", final_norm=pre, causal=bool(hf.get("is_decoder", False)),
        languages=[str(lang) for lang in hf.get("languages", ["en_XX"])],
        lang_adapter_dim=hf["hidden_size"] // int(hf.get("adapter_reduction_factor", 2)),
        default_language=hf.get("default_language"))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement not in ("post", "pre") or cfg.final_norm != (cfg.norm_placement == "pre") \
            or not cfg.embed_norm or cfg.ffn != "gelu" or not cfg.position_offset or not cfg.languages \
            or cfg.embed_width != cfg.d_model or cfg.d_model % cfg.lang_adapter_dim:
        return ("post-norm blocks, or pre-norm ones with a final norm, an embedding LayerNorm, a GELU MLP, positions "
                "from padding_idx + 1, and language adapters a whole fraction of d_model wide")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**roberta_hf(cfg, "xmod", "Xmod"), "architectures": ["XmodForCausalLM" if cfg.causal else
                                                                  "XmodForMaskedLM"],
            "is_decoder": cfg.causal, "pre_norm": cfg.norm_placement == "pre", "languages": list(cfg.languages),
            "adapter_reduction_factor": cfg.d_model // cfg.lang_adapter_dim, "default_language": cfg.default_language,
            "adapter_layer_norm": False, "adapter_reuse_layer_norm": True, "ln_before_adapter": True}


FAMILIES.register("xmod")(Family(RULES, to_config, from_config, IGNORE, base_prefix="roberta.", needs=needs,
                                 more_rules=more_rules))
