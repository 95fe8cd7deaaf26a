"""EXAONE 3.0 and 3.5 (`model_type: exaone`; LG AI Research 2024, "EXAONE 3.0 7.8B Instruction Tuned Language
Model"): LLaMA's computation (transformers runs it as LlamaForCausalLM) under GPT-2-like names, which transformers
also writes back: `transformer.wte`, `transformer.h.{i}.attn.attention.{q,k,v,out}_proj`, `ln_1`, `ln_2`,
`mlp.c_fc_0` (gate), `mlp.c_fc_1` (up), `mlp.c_proj` (down), `transformer.ln_f`; config names `num_layers`,
`layer_norm_epsilon`, `activation_function`; RoPE base 500000 by default. EXAONE 4.0 is exaone4.py."""
from __future__ import annotations

import re
from dataclasses import replace

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf

# transformers' conversion_mapping for exaone, in the direction LLaMA's names -> EXAONE's
_NAMES = [(r"^model\.embed_tokens\.", "transformer.wte."), (r"^model\.layers\.", "transformer.h."),
          (r"^model\.norm\.", "transformer.ln_f."), (r"\.self_attn\.o_proj\.", ".attn.attention.out_proj."),
          (r"\.self_attn\.", ".attn.attention."), (r"\.input_layernorm\.", ".ln_1."),
          (r"\.post_attention_layernorm\.", ".ln_2."), (r"\.mlp\.gate_proj\.", ".mlp.c_fc_0."),
          (r"\.mlp\.up_proj\.", ".mlp.c_fc_1."), (r"\.mlp\.down_proj\.", ".mlp.c_proj.")]
_ALIASES = {"num_layers": "num_hidden_layers", "layer_norm_epsilon": "rms_norm_eps",
            "activation_function": "hidden_act"}  # ExaoneConfig.attribute_map
THETA = 500000.0  # ExaoneConfig.default_theta


def _exaone_name(name: str) -> str:
    for pattern, to in _NAMES:
        name = re.sub(pattern, to, name)
    return name


RULES = [replace(r, hf=tuple(_exaone_name(n) for n in r.hf)) for r in LLAMA_RULES]


def to_config(hf: dict) -> ModelConfig:
    hf = {"rope_theta": THETA, **hf, **{ours: hf[theirs] for theirs, ours in _ALIASES.items() if theirs in hf}}
    return llama_like_config({"rms_norm_eps": 1e-5, **hf})


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["LlamaForCausalLM"])


FAMILIES.register("exaone")(Family(RULES, to_config, from_config, IGNORE))
