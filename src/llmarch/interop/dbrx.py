"""DBRX (`model_type: dbrx`; Databricks 2024, "Introducing DBRX"; transformers' DbrxForCausalLM): a pre-norm decoder
with LayerNorms without bias (eps 1e-5, `norm_attn_norm.norm_1`, `norm_2`, `norm_f`), q, k, v fused in `Wqkv` in our
row order [q | k | v] (GQA, `attn_config.kv_n_heads`), clamped to +-`clip_qkv` after the projection (clip_qkv), RoPE,
no biases, an untied head, and every FFN a fine-grained mixture of GLU experts (16 experts, top 4 in DBRX-132B):
softmax over all experts, the top k, divided by their p-norm with p = `moe_normalize_expert_weights` (1: Mixtral's
renormalisation; router_renorm_p), or left raw where it is null. The experts are stored fused, one tensor per
kind for all experts: `w1` (gate) and `v1` (up) (E * I, C), and `w2` (E * I, C), the down projection transposed
(transformers computes h @ w2_e); ours are `experts.gate_up` (E, 2I, C) and `experts.down` (E, C, I).
RoPE: transformers 5 reads the top-level `rope_parameters` (written on save); the published config.json files
have only `attn_config.rope_theta` (500000), which transformers 5 keeps but does not use (it rotates with 10000):
llmarch reads `rope_parameters` where given, else `attn_config.rope_theta`, and writes both."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import _GLU, IGNORE, rope_fields, rope_parameters
from .mapping import JOINS, Rule


def _join_gate_up(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """w1, v1 (E * I, C) each -> our gate_up (E, 2I, C), each expert's gate rows first."""
    return torch.cat([p.reshape(cfg.n_experts, -1, p.shape[-1]) for p in parts], dim=1)


def _split_gate_up(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [p.flatten(0, 1) for p in t.chunk(2, dim=1)]


def _join_down(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """w2 (E * I, C) -> our down (E, C, I): expert e's (I, C) block transposed."""
    return parts[0].reshape(cfg.n_experts, -1, parts[0].shape[-1]).transpose(1, 2)


def _split_down(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [t.transpose(1, 2).flatten(0, 1)]


JOINS["dbrx_gate_up"] = (_join_gate_up, _split_gate_up)
JOINS["dbrx_down"] = (_join_down, _split_down)

_B = "transformer.blocks.{i}."
_A = _B + "norm_attn_norm."
RULES = [
    Rule.of("transformer.wte.weight", "embed.weight"),
    Rule.of(_A + "norm_1.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_A + "attn.Wqkv.weight", "blocks.{i}.attn.qkv_proj.weight"),
    Rule.of(_A + "attn.out_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_A + "norm_2.weight", "blocks.{i}.ln2.weight"),
    Rule.of(_B + "ffn.router.layer.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_B + "ffn.experts.mlp.w1", _B + "ffn.experts.mlp.v1"), "blocks.{i}.mlp.experts.gate_up", "dbrx_gate_up"),
    Rule.of(_B + "ffn.experts.mlp.w2", "blocks.{i}.mlp.experts.down", "dbrx_down"),
    Rule.of("transformer.norm_f.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# what transformers' DbrxForCausalLM computes, beyond the shape fields, RoPE, clip_qkv and the router
NEEDS = dict(norm="layernorm", norm_bias=False, norm_eps=1e-5, norm_placement="pre", final_norm=True, bias=False,
             qkv_bias=False, o_bias=False, block="sequential", positions="rope", rope_fraction=1.0, qk_norm="none",
             attn_scale=None, attn_softcap=None, final_softcap=None, embed_scale=False, embed_norm=False,
             embed_multiplier=1.0, residual_multiplier=1.0, logit_divisor=1.0, head_bias=False, head_scale=False,
             head_transform=False, sliding_window=None, attention="full", mixer="attention", layer_types=None,
             n_decoder_layers=0, type_vocab_size=0, causal=True, position_offset=0, tie_embeddings=False,
             head="lm", moe_period=1, moe_offset=0, moe_dense_first=0, n_shared_experts=0, router_scoring="softmax",
             router_scale=1.0, router_groups=1, expert_bias=False, router_bias=False, capacity_factor=None,
             expert_capacity=None, router_input_norm=False, router_expert_scale=False, expert_input_weighted=False,
             attn_output_gate=False, attn_sinks=False)


def unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' DBRX cannot compute, or None."""
    wrong = next((k for k, v in NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={NEEDS[wrong]!r}"
    if not cfg.n_experts or cfg.ffn not in ("swiglu", "geglu", "geglu_tanh"):
        return "every FFN a mixture of gated experts (swiglu, geglu, geglu_tanh)"
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        return "head_dim = d_model / n_heads"
    if cfg.rope_scaling == "longrope":
        return "rope_scaling none, linear, dynamic, llama3 or yarn"
    return None


def to_config(hf: dict) -> ModelConfig:
    attn, ffn = hf.get("attn_config") or {}, hf.get("ffn_config") or {}
    act = dict(ffn.get("ffn_act_fn") or {"name": "silu"})
    name = act.pop("name", "silu")
    if act or name not in _GLU:
        raise LlmarchError(f"dbrx: ffn_act_fn {ffn.get('ffn_act_fn')!r} is not supported (silu, gelu, "
                           "gelu_pytorch_tanh, without arguments)")
    if hf.get("tie_word_embeddings", False):
        raise LlmarchError("dbrx: tie_word_embeddings=true is not supported (transformers refuses it too)")
    d, heads, p = hf["d_model"], hf["n_heads"], ffn.get("moe_normalize_expert_weights", 1.0)
    max_pos = hf.get("max_seq_len", 2048)
    rope = {**hf, "max_position_embeddings": max_pos}
    if not hf.get("rope_parameters") and not hf.get("rope_scaling"):  # the published files: attn_config's
        rope["rope_theta"] = attn.get("rope_theta", hf.get("rope_theta", 10000.0))
    clip = attn.get("clip_qkv")
    width = ffn.get("ffn_hidden_size", 3584)
    fields = {k: v for k, v in NEEDS.items() if k not in ("attention", "n_decoder_layers", "qkv_bias", "o_bias")}
    fields.update(rope_fields(rope))
    drops = {float(hf.get(k) or 0.0) for k in ("resid_pdrop", "emb_pdrop")} | {float(attn.get("attn_pdrop") or 0)}
    return ModelConfig(**fields, name=hf.get("_name_or_path") or "dbrx", hf_model_type="dbrx",
                       vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["n_layers"], n_heads=heads,
                       n_kv_heads=attn.get("kv_n_heads", 1), ffn=_GLU[name], ffn_hidden=width, expert_hidden=width,
                       n_experts=ffn.get("moe_num_experts", 4), experts_per_token=ffn.get("moe_top_k", 1),
                       router_renormalize=p is not None, router_renorm_p=1.0 if p is None else float(p),
                       router_jitter=float(ffn.get("moe_jitter_eps") or 0.0),
                       router_aux_loss_weight=float(ffn.get("moe_loss_weight", 0.01)),
                       clip_qkv=None if clip is None else float(clip), context_length=max_pos,
                       dropout=drops.pop() if len(drops) == 1 else 0.0)


def from_config(cfg: ModelConfig) -> dict:
    act = {v: k for k, v in _GLU.items() if k != "gelu_new"}[cfg.ffn]
    params = rope_parameters(cfg)
    return dict(model_type="dbrx", architectures=["DbrxForCausalLM"], vocab_size=cfg.vocab_size, d_model=cfg.d_model,
                n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                max_seq_len=cfg.rope_original_context if cfg.rope_scaling == "dynamic" else cfg.context_length,
                attn_config=dict(clip_qkv=cfg.clip_qkv, kv_n_heads=cfg.n_kv_heads, rope_theta=cfg.rope_theta,
                                 attn_pdrop=cfg.dropout),
                ffn_config=dict(ffn_act_fn={"name": act}, ffn_hidden_size=cfg.expert_hidden,
                                moe_num_experts=cfg.n_experts, moe_top_k=cfg.experts_per_token,
                                moe_jitter_eps=cfg.router_jitter or None, moe_loss_weight=cfg.router_aux_loss_weight,
                                moe_normalize_expert_weights=cfg.router_renorm_p if cfg.router_renormalize else None),
                rope_parameters=params, resid_pdrop=cfg.dropout, emb_pdrop=cfg.dropout, tie_word_embeddings=False)


FAMILIES.register("dbrx")(Family(RULES, to_config, from_config, IGNORE, needs=unexpressible))
