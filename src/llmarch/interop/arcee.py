"""Arcee AFM (`model_type: arcee`: AFM-4.5B; Arcee AI 2025): LLaMA's layout with an ungated MLP of squared ReLU
(ffn 'relu2', So et al. 2021, "Primer"): `mlp.up_proj` then `mlp.down_proj`, no gate projection."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_M = "model.layers.{i}.mlp."
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours] + [
    *[Rule.of(_M + f"up_proj.{w}", f"blocks.{{i}}.mlp.up.{w}") for w in ("weight", "bias")],
    *[Rule.of(_M + f"down_proj.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in ("weight", "bias")]]


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("hidden_act", "relu2")
    if act != "relu2":
        raise LlmarchError(f"arcee: hidden_act {act!r} is not supported (relu2)")
    return llama_like_config({**hf, "hidden_act": "relu2"}, norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.ffn != "relu2" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or cfg.qk_norm != "none" \
            or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type arcee needs a squared-ReLU MLP (ffn 'relu2'), pre-norm RMSNorm and no "
                           "QK-norm, windows or layer types")
    return {**llama_like_hf(cfg.replace(ffn="swiglu"), architectures=["ArceeForCausalLM"]), "hidden_act": "relu2"}


FAMILIES.register("arcee")(Family(RULES, to_config, from_config, IGNORE))
