"""xAI's Grok-1 (`model_type: grok-1`, remote code Grok1ForCausalLM; xAI 2024, the open release of Grok-1's weights):
a mixture-of-experts decoder in Gemma 2's sandwich (norm_placement 'sandwich': RMSNorm before and after attention,
`pre_attn_norm` / `post_attn_norm`, and before and after the experts, `pre_moe_norm` / `post_moe_norm`), attention
scores q.k times `attn_output_multiplier` (attn_scale) soft-capped at `attn_logit_softcapping` (default 30; the
checkpoint's max_attn_value), RoPE on halves, every FFN a mixture of `num_local_experts` GELU-gated experts
(`block_sparse_moe.experts.{e}.w1` gate, `w3` up, `w2` down), the top `num_experts_per_tok` by softmax renormalised;
embeddings times `embedding_multiplier_scale` (embed_multiplier), logits times `output_multiplier_scale`
(logit_divisor, its inverse), router logits soft-capped at `router_logit_softcapping` where given (router_softcap).
Refused: another activation, RoPE scaling."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, causal_only
from .mapping import Rule

_L, _MOE = "model.layers.{i}.", "model.layers.{i}.block_sparse_moe."
_NORMS = {"pre_attn_norm": "ln1", "post_attn_norm": "post_ln1", "pre_moe_norm": "ln2", "post_moe_norm": "post_ln2"}
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours and ".ln" not in r.ours and not r.ours.endswith(".bias")] + [
    *[Rule.of(_L + f"{theirs}.weight", f"blocks.{{i}}.{ours}.weight") for theirs, ours in _NORMS.items()],
    Rule.of(_MOE + "gate.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_MOE + "experts.{e}.w1.weight", _MOE + "experts.{e}.w3.weight"), "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_MOE + "experts.{e}.w2.weight", "blocks.{i}.mlp.experts.down"),
]
_GELU = {"gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh"}


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("hidden_act", "gelu")
    if act not in _GELU or hf.get("rope_scaling"):
        raise LlmarchError(f"grok-1: hidden_act {act!r} or RoPE scaling is not supported (gelu or gelu_pytorch_tanh "
                           "experts, plain RoPE)")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or d // heads
    width = hf.get("moe_intermediate_size") or hf["intermediate_size"]
    return ModelConfig(
        name=hf.get("_name_or_path") or "grok-1", hf_model_type="grok-1", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=hf["num_hidden_layers"], n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=head_dim, ffn=_GELU[act], ffn_hidden=width, expert_hidden=width, norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-5), norm_placement="sandwich", positions="rope",
        rope_theta=float(hf.get("rope_theta", 10000.0)), bias=False, norm_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_position_embeddings", 8192),
        attn_scale=float(hf.get("attn_output_multiplier", head_dim ** -0.5)),
        attn_softcap=float(hf.get("attn_logit_softcapping", hf.get("max_attn_value", 30.0))),
        final_softcap=hf.get("final_logit_softcapping"),
        embed_multiplier=float(hf.get("embedding_multiplier_scale", 1.0)),
        logit_divisor=1.0 / float(hf.get("output_multiplier_scale", 1.0)),
        n_experts=hf["num_local_experts"], experts_per_token=hf.get("num_experts_per_tok", 2),
        router_scoring="softmax", router_renormalize=True, router_softcap=hf.get("router_logit_softcapping"))


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    act = {v: k for k, v in _GELU.items()}.get(cfg.ffn)
    if act is None or not cfg.n_experts:
        raise LlmarchError("model_type grok-1 needs GELU-gated experts in every layer")
    hf = dict(model_type="grok-1", architectures=["Grok1ForCausalLM"], vocab_size=cfg.vocab_size,
              hidden_size=cfg.d_model, intermediate_size=cfg.expert_hidden, num_hidden_layers=cfg.n_layers,
              num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
              hidden_act=act, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
              max_position_embeddings=cfg.context_length, tie_word_embeddings=cfg.tie_embeddings,
              attn_output_multiplier=cfg.attn_scale, attn_logit_softcapping=cfg.attn_softcap,
              embedding_multiplier_scale=cfg.embed_multiplier, output_multiplier_scale=1.0 / cfg.logit_divisor,
              num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token)
    capped = {"final_logit_softcapping": cfg.final_softcap, "router_logit_softcapping": cfg.router_softcap}
    hf.update({key: value for key, value in capped.items() if value is not None})
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("grok-1")(Family(RULES, to_config, from_config, IGNORE))
