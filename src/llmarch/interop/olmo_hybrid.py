"""OLMo Hybrid (`model_type: olmo_hybrid`; Ai2 2026, Olmo-Hybrid-7B): Gated DeltaNet layers (`linear_attention`) and
OLMo 3's attention layers (`full_attention`, by default every 4th) in one stack, each layer type with its own block:
- a `linear_attention` layer is a pre-norm block (input norm, then x + GDN(norm(x)), x + MLP(norm(x))) around the
  gated delta rule (layers/gated_deltanet.py) with its projections stored apart (q, k, v, the output gate g, b, a,
  and one convolution per q, k and v), joined into llmarch's grouped in_proj_qkvz and in_proj_ba as Qwen3.5's
  (qwen3_5.py); beta = 2 sigmoid(b) with linear_allow_neg_eigval (delta_neg_eigval); its gated output norm's eps
  fixed at 1e-5 (delta_norm_eps);
- a `full_attention` layer is OLMo 2's block (norm_placement 'res_post', a per-layer override: the norm on each
  sublayer's output; QK-norm over whole projections, qk_norm 'proj') with RoPE.
The checkpoint names its norms by role, as transformers writes them back: a linear layer's attention_layer_norm and
feedforward_layer_norm are its input norms (ln1, ln2); an attention layer's feedforward_layer_norm and
post_feedforward_layernorm are its output norms (ln1, ln2), so the rules for them follow each layer's type."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.gated_deltanet import delta_shape
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import JOINS, Rule
from .qwen3_5 import _join_qkvz, _split_qkvz

LINEAR, FULL = "linear_attention", "full_attention"
_L = "model.layers.{i}."
_D = _L + "linear_attn."


def _join_qkvg(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """q_proj, k_proj, v_proj and g_proj (the output gate, Qwen3-Next's z) -> our in_proj_qkvz, grouped per key
    head."""
    return _join_qkvz([torch.cat(parts[:3]), parts[3]], cfg)


def _split_qkvg(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    K, H, dk, dv = delta_shape(cfg)
    qkv, z = _split_qkvz(t, cfg)
    return [*qkv.split([K * dk, K * dk, H * dv]), z]


def _conv_sizes(cfg) -> list[int]:
    K, H, dk, dv = delta_shape(cfg)
    return [K * dk, K * dk, H * dv]


JOINS["olmo_hybrid_qkvg"] = (_join_qkvg, _split_qkvg)
JOINS["olmo_hybrid_conv"] = (lambda parts, cfg: torch.cat(parts), lambda t, cfg: list(t.split(_conv_sizes(cfg))))

RULES = [r for r in LLAMA_RULES if "layernorm" not in r.hf[0]] + [
    *[Rule.of(_L + f"self_attn.{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight") for n in "qk"],
    Rule.of(tuple(_D + f"{p}_proj.weight" for p in "qkvg"), "blocks.{i}.mixer.in_proj_qkvz.weight",
            "olmo_hybrid_qkvg"),
    Rule.of((_D + "b_proj.weight", _D + "a_proj.weight"), "blocks.{i}.mixer.in_proj_ba.weight", "qwen3_5_ba"),
    Rule.of(tuple(_D + f"{p}_conv1d.weight" for p in "qkv"), "blocks.{i}.mixer.conv1d.weight", "olmo_hybrid_conv"),
    *[Rule.of(_D + t, "blocks.{i}.mixer." + t) for t in ("A_log", "dt_bias")],
    Rule.of(_D + "o_norm.weight", "blocks.{i}.mixer.norm.weight"),
    Rule.of(_D + "o_proj.weight", "blocks.{i}.mixer.out_proj.weight"),
]
_NORMS = {LINEAR: ("attention_layer_norm", "feedforward_layer_norm"),
          FULL: ("feedforward_layer_norm", "post_feedforward_layernorm")}


def _norm_rules(cfg: ModelConfig) -> list[Rule]:
    """Each layer's two norms, named by its type (the module docstring)."""
    out = []
    for i in range(cfg.n_layers):
        names = _NORMS[LINEAR if cfg.layer_mixer(i) == "gated_deltanet" else FULL]
        out += [Rule.of(f"model.layers.{i}.{name}.weight", f"blocks.{i}.ln{j + 1}.weight")
                for j, name in enumerate(names)]
    return out


def _types(hf: dict) -> list[str]:
    """transformers' default: full attention where i % 4 == 3, and on the last layer if none is."""
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [FULL if i % 4 == 3 else LINEAR for i in range(n)])
    if not hf.get("layer_types") and FULL not in types:
        types[-1] = FULL
    if set(types) - {LINEAR, FULL} or len(types) != n:
        raise LlmarchError(f"olmo_hybrid: layer_types must be {n} of {LINEAR} and {FULL}")
    return types


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu" or hf.get("attention_bias"):
        raise LlmarchError("olmo_hybrid: only hidden_act silu without attention_bias is supported")
    if (hf.get("rope_parameters") or {"rope_theta": 1}).get("rope_theta", 1) is None:
        raise LlmarchError("olmo_hybrid without RoPE (rope_theta null: NoPE attention layers) is not supported")
    heads, d = hf["num_attention_heads"], hf["hidden_size"]
    K = hf.get("linear_num_key_heads") or heads
    dk = hf.get("linear_key_head_dim") or int(0.75 * d / K)
    types = _types(hf)
    return llama_like_config(
        {"rms_norm_eps": 1e-6, **hf, "head_dim": None, "mlp_bias": False}, qk_norm="proj", layer_types=types,
        layer_overrides={FULL: {"norm_placement": "res_post"}, **({LINEAR: {"mixer": "gated_deltanet"}}
                                                                    if LINEAR in types else {})},
        delta_heads=K, delta_value_heads=hf.get("linear_num_value_heads") or heads, delta_key_dim=dk,
        delta_value_dim=hf.get("linear_value_head_dim") or 2 * dk, ssm_conv=hf.get("linear_conv_kernel_dim", 4),
        ssm_conv_bias=False, ssm_bias=False, delta_neg_eigval=bool(hf.get("linear_allow_neg_eigval", True)),
        delta_norm_eps=1e-5)


def from_config(cfg: ModelConfig) -> dict:
    types = [LINEAR if cfg.layer_mixer(i) == "gated_deltanet" else FULL for i in range(cfg.n_layers)]
    for i, t in enumerate(types):
        lc = cfg.for_layer(i)
        want = ("pre", "gated_deltanet") if t == LINEAR else ("res_post", "attention")
        if (lc.norm_placement, lc.mixer) != want or t == FULL and (lc.qk_norm != "proj" or lc.positions != "rope"):
            raise LlmarchError("model_type olmo_hybrid needs pre-norm gated_deltanet layers and res_post attention "
                               "layers with qk_norm='proj' and RoPE")
    if cfg.ffn != "swiglu" or cfg.bias or cfg.qkv_bias or cfg.ssm_bias or cfg.ssm_conv_bias \
            or cfg.delta_norm_eps != 1e-5 or cfg.head_dim * cfg.n_heads != cfg.d_model or cfg.sliding_window:
        raise LlmarchError("model_type olmo_hybrid needs SwiGLU, no biases or windows, delta_norm_eps 1e-5 and "
                           "head_dim = d_model / n_heads")
    K, H, dk, dv = delta_shape(cfg)
    out = llama_like_hf(cfg, architectures=["OlmoHybridForCausalLM"], layer_types=types, linear_num_key_heads=K,
                        linear_num_value_heads=H, linear_key_head_dim=dk, linear_value_head_dim=dv,
                        linear_conv_kernel_dim=cfg.ssm_conv, linear_allow_neg_eigval=cfg.delta_neg_eigval,
                        pad_token_id=None)  # its default, 100277, lies past a smaller vocabulary
    for key in ("head_dim", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("olmo_hybrid")(Family(RULES, to_config, from_config, IGNORE, more_rules=_norm_rules))
