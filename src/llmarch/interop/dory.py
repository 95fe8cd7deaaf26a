"""NVIDIA's Dory (`model_type: dory`, transformers' DoryForCausalLM; nvidia/NVIDIA-Nemotron-Labs-Dory1.0): an nGPT
decoder (Loshchilov et al. 2024, "nGPT: Normalized Transformer with Representation Learning on the Hypersphere") whose
middle layers loop. What it is made of, in llmarch's parts:
- every norm the projection onto the unit sphere, x / ||x|| (norm 'l2', no gain): sandwich norms around attention and
  the MLP, per-head on q and k before RoPE (qk_norm 'head'), over the gated heads before o_proj and over the MLP's
  hidden activations before down_proj (sub_norm), the final norm;
- the residual add an interpolation on the sphere, h + |a| (y - h), h the normed stream (residual_mix 'ngpt'), the
  stored rates lambda_1, lambda_2 used times ngpt_alpha_init / initializer_range (nGPT §2.6's scaled parameters): ours
  hold the rates as used;
- the rotated queries times (s_qk sqrt(head_dim) / initializer_range)^2 per channel (attn_q_gain, ours the squared
  gain as used); an output gate sigmoid(x W_g (s_gate hidden_size^(1/4) / initializer_range)^2) per head dim
  (attn_output_gate, the gate_proj rows joined per head into our qkv_proj with s_gate's factor folded in); the MLP's
  gate and up rows times suv_gate and suv_up times sqrt(hidden_size) (folded into our gate_up rows); the untied head's
  logits times logit_scale / initializer_range per token (folded into our lm_head rows). Written back, each folded
  scale is stored as its unit value;
- layer types as Gemma 3's: `sliding_attention` layers slide over sliding_window keys, each type its own RoPE base;
- the layers in three sections (recurrence 'loop'): n_input_layers once, the n_recurrent_layers n_recurrent_loops
  times, each pass from norm(h) + norm(h_input), then n_output_layers once; each pass keeps its own KV cache (the
  'per_loop' recurrent_kv_cache_mode; 'last_loop', where earlier passes read the last one's cache, is refused).
Released config.json files list each layer as two entries (attention, mlp) and count them so; both layouts are read,
and the two-entry one is written, as transformers writes it."""
from __future__ import annotations

import math
import re

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .cohere_compass_text import type_rope_fields, type_rope_hf
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import JOINS, LAYOUTS, Rule, _join_gated_q, _split_gated_q
from .qwen3 import FULL, SLIDING

_A, _L, _M, _B = "backbone.layers.{i}.self_attn.", "backbone.layers.{i}.", "backbone.layers.{i}.mlp.", "blocks.{i}."
SECTIONS = ("num_hidden_layers", "n_input_layers", "n_recurrent_layers", "n_output_layers")
# DoryConfig's defaults for what a config.json may leave out
DEFAULTS = dict(head_dim=256, sliding_window=1024, initializer_range=0.0177, ngpt_alpha_init=0.05, n_input_layers=8,
                n_output_layers=8, n_recurrent_loops=2, recurrent_kv_cache_mode="per_loop",
                max_position_embeddings=8192)


def _gate_gain(s_gate: torch.Tensor, cfg) -> torch.Tensor:
    return (s_gate.float() * cfg.d_model ** 0.25 / cfg.init_std).square()


def _join_qkv(parts, cfg):
    """q_proj, gate_proj, k_proj, v_proj, s_gate -> our qkv_proj, gate rows times s_gate's gain, after each head's
    query rows."""
    q, gate, k, v, s_gate = parts
    return _join_gated_q([q, gate * _gate_gain(s_gate, cfg)[:, None].to(gate.dtype), k, v], cfg)


def _split_qkv(t, cfg):
    return [*_split_gated_q(t, cfg), torch.full_like(t[:cfg.n_heads * cfg.head_dim, 0],
                                                     cfg.init_std / cfg.d_model ** 0.25)]


def _join_suv(parts, cfg):
    """gate_proj, up_proj, suv_gate, suv_up -> our gate_up, each row times its suv * sqrt(hidden_size)."""
    gate, up, suv_gate, suv_up = parts
    root = math.sqrt(cfg.d_model)
    return torch.cat([gate * (suv_gate * root)[:, None], up * (suv_up * root)[:, None]])


def _split_suv(t, cfg):
    gate, up = t.chunk(2)
    unit = torch.full_like(gate[:, 0], 1.0 / math.sqrt(cfg.d_model))
    return [gate, up, unit, unit.clone()]


def _join_head(parts, cfg):
    """lm_head.weight, logit_scale -> our head rows times logit_scale / initializer_range."""
    weight, scale = parts
    return weight * (scale.float() / cfg.init_std)[:, None].to(weight.dtype)


def _split_head(t, cfg):
    return [t, torch.full_like(t[:, 0], cfg.init_std)]


def _q_gain_to_hf(t, cfg):
    if t.device.type != "meta" and (t < 0).any():
        raise LlmarchError("dory stores the query gain squared: a negative attn_q_gain has no Dory form")
    return t.sqrt() * cfg.init_std / math.sqrt(cfg.head_dim)


JOINS["dory_qkv"] = (_join_qkv, _split_qkv)
JOINS["dory_suv"] = (_join_suv, _split_suv)
JOINS["dory_head"] = (_join_head, _split_head)
LAYOUTS["ngpt_sqk"] = (lambda t, cfg: (t * math.sqrt(cfg.head_dim) / cfg.init_std).square(), _q_gain_to_hf,
                       lambda s: s)
LAYOUTS["ngpt_rate"] = (lambda t, cfg: t * cfg.residual_rate_init / cfg.init_std,
                        lambda t, cfg: t * cfg.init_std / cfg.residual_rate_init, lambda s: s)

RULES = [
    Rule.of("backbone.embeddings.weight", "embed.weight"),
    Rule.of(tuple(_A + n for n in ("q_proj.weight", "g_proj.weight", "k_proj.weight", "v_proj.weight", "s_gate")),
            _B + "attn.qkv_proj.weight", "dory_qkv"),
    Rule.of(_A + "o_proj.weight", _B + "attn.o_proj.weight"),
    Rule.of(_A + "sqk", _B + "attn.q_gain", "ngpt_sqk"),
    Rule.of(tuple(_M + n for n in ("gate_proj.weight", "up_proj.weight", "suv_gate", "suv_up")),
            _B + "mlp.gate_up.weight", "dory_suv"),
    Rule.of(_M + "down_proj.weight", _B + "mlp.down.weight"),
    Rule.of(_L + "lambda_1", _B + "res_attn.weight", "ngpt_rate"),
    Rule.of(_L + "lambda_2", _B + "res_mlp.weight", "ngpt_rate"),
    Rule.of(("lm_head.weight", "lm_head.logit_scale"), "lm_head.weight", "dory_head"),
]


_PAIR = re.compile(r"^(?:backbone|model)\.layers\.(\d+)\.(mixer|attn_alpha|mlp_alpha)(?=\.|$)")


def canonical(name: str) -> str:
    """A stored name as the rules spell it (the layout transformers saves: `backbone.`, `embeddings`, the gate
    `g_proj`), from that layout, from transformers' own module names (`model.`, `embed_tokens`, `gate_proj`) or from
    the released one, each layer two blocks: `layers.{2i}.mixer.` attention, `layers.{2i+1}.mixer.` the MLP, their
    rates `attn_alpha` and `mlp_alpha` (transformers' LayerPairCollapse)."""
    pair = _PAIR.match(name)
    if pair is not None:
        index, part = int(pair[1]), pair[2]
        part = {"attn_alpha": "lambda_1", "mlp_alpha": "lambda_2"}.get(part, ("self_attn", "mlp")[index % 2])
        name = f"backbone.layers.{index // 2}.{part}" + name[pair.end():]
    name = re.sub(r"^model\.", "backbone.", name).replace(".embed_tokens.", ".embeddings.")
    return name.replace(".self_attn.gate_proj.", ".self_attn.g_proj.")


def _one_entry_per_layer(hf: dict) -> dict:
    """The config with one layer_types entry per layer: the released two-entry layout (attention, mlp) halved, as
    DoryConfig reads it, and the recurrent section's size filled in."""
    hf = {**DEFAULTS, **hf}
    types = hf.get("layer_types")
    if types is not None and "mlp" in types:
        hf.update({k: hf[k] // 2 for k in SECTIONS if hf.get(k) is not None}, layer_types=list(types[::2]))
    n = hf["num_hidden_layers"]
    hf["layer_types"] = hf.get("layer_types") or [FULL if (i + 1) % 4 == 0 else SLIDING for i in range(n)]
    if hf.get("n_recurrent_layers") is None:
        hf["n_recurrent_layers"] = n - hf["n_input_layers"] - hf["n_output_layers"]
    if not hf.get("rope_parameters") or "rope_theta" in hf["rope_parameters"]:
        thetas = {SLIDING: 10_000.0, FULL: 10_000_000.0}
        hf["rope_parameters"] = {t: {"rope_type": "default", "rope_theta": thetas[t]} for t in set(hf["layer_types"])}
    return hf


def to_config(hf: dict) -> ModelConfig:
    hf = _one_entry_per_layer(hf)
    if hf["recurrent_kv_cache_mode"] != "per_loop":
        raise LlmarchError(f"dory: recurrent_kv_cache_mode {hf['recurrent_kv_cache_mode']!r} (earlier loops reading "
                           "the last loop's cache) is not supported; 'per_loop' is")
    if hf.get("attention_bias") or hf.get("mlp_bias") or hf.get("tie_word_embeddings"):
        raise LlmarchError("dory: attention_bias, mlp_bias and tie_word_embeddings are not supported (the head's "
                           "logit scale is folded into its own rows)")
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"dory: hidden_act {hf['hidden_act']!r} is not supported (silu: a SwiGLU MLP)")
    n, prelude, looped, coda = (hf[k] for k in SECTIONS)
    if prelude + looped + coda != n:
        raise LlmarchError(f"dory: n_input_layers + n_recurrent_layers + n_output_layers ({prelude} + {looped} + "
                           f"{coda}) must equal num_hidden_layers ({n})")
    return llama_like_config(
        {**hf, "tie_word_embeddings": False}, norm="l2", norm_eps=1e-6, norm_placement="sandwich", qk_norm="head",
        attn_output_gate=True, attn_q_gain=True, sub_norm=True, residual_mix="ngpt",
        residual_rate_init=float(hf["ngpt_alpha_init"]), init_std=float(hf["initializer_range"]), recurrence="loop",
        loop_prelude=prelude, loop_coda=coda, loop_count=int(hf["n_recurrent_loops"]), **type_rope_fields(hf))


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.norm != "l2" or cfg.norm_placement != "sandwich" or cfg.qk_norm != "head" or not cfg.attn_output_gate \
            or not cfg.attn_q_gain or not cfg.sub_norm or cfg.residual_mix != "ngpt" or cfg.recurrence != "loop" \
            or cfg.tie_embeddings or cfg.bias or cfg.qkv_bias or cfg.n_experts or cfg.ffn != "swiglu" \
            or cfg.mixer != "attention" or cfg.attn_scale is not None or cfg.attn_gate_bias or cfg.v_norm:
        return ("l2 sandwich norms, per-head l2 QK-norms, a per-channel query gain, an output gate, sub-norms, "
                "nGPT residuals, recurrence 'loop', an untied head, no biases and a dense SwiGLU MLP")
    return None


def from_config(cfg: ModelConfig) -> dict:
    looped = cfg.n_layers - cfg.loop_prelude - cfg.loop_coda
    out = llama_like_hf(cfg, architectures=["DoryForCausalLM"], **type_rope_hf(cfg), initializer_range=cfg.init_std,
                        ngpt_alpha_init=cfg.residual_rate_init, n_recurrent_loops=cfg.loop_count,
                        recurrent_kv_cache_mode="per_loop")
    del out["rms_norm_eps"]  # every norm is the sphere's projection, eps fixed at 1e-6
    out["layer_types"] = [entry for t in out["layer_types"] for entry in (t, "mlp")]
    out.update({k: 2 * v for k, v in zip(SECTIONS, (cfg.n_layers, cfg.loop_prelude, looped, cfg.loop_coda))})
    return out


FAMILIES.register("dory")(Family(RULES, to_config, from_config, IGNORE, canonical=canonical, needs=_needs))
