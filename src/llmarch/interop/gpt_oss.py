"""gpt-oss (`model_type: gpt_oss`; OpenAI 2025, gpt-oss-120b & gpt-oss-20b model card): LLaMA's layout with
biased q/k/v/o projections, a learned attention sink per head (attn_sinks), sliding-window and full attention
layers alternating (layer_types "sliding_attention" / "full_attention", the window set per type), YaRN RoPE,
and every FFN a mixture of clamped-SwiGLU experts with biases, routed by a biased router, top-k then a softmax
over the chosen logits (= renormalised top-k probabilities). transformers stores the experts fused:
gate_up_proj (E, C, 2I) with gate and up interleaved along the last dim, down_proj (E, I, C); mapping.py's
experts_interleaved and experts_transposed layouts turn them into ours. The published checkpoints store the
experts in MXFP4 (`*_blocks`, `*_scales`); this reads the dequantised layout transformers saves."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, rope_parameters
from .mixtral import moe_fields
from .mapping import Rule

_L = "model.layers.{i}."
_X = _L + "mlp.experts."
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours] + [
    Rule.of(_L + "self_attn.sinks", "blocks.{i}.attn.sinks"),
    Rule.of(_L + "mlp.router.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_L + "mlp.router.bias", "blocks.{i}.mlp.router.bias"),
    Rule.of(_X + "gate_up_proj", "blocks.{i}.mlp.experts.gate_up", "experts_interleaved"),
    Rule.of(_X + "gate_up_proj_bias", "blocks.{i}.mlp.experts.in_bias", "interleaved"),
    Rule.of(_X + "down_proj", "blocks.{i}.mlp.experts.down", "experts_transposed"),
    Rule.of(_X + "down_proj_bias", "blocks.{i}.mlp.experts.down_bias"),
]
SLIDING, FULL = "sliding_attention", "full_attention"


def to_config(hf: dict) -> ModelConfig:
    if not hf.get("attention_bias", True):
        raise LlmarchError("gpt_oss with attention_bias false is not supported (the experts' biases and o_proj's "
                           "share llmarch's `bias`)")
    types = list(hf.get("layer_types") or [SLIDING if i % 2 == 0 else FULL for i in range(hf["num_hidden_layers"])])
    overrides = {SLIDING: {"sliding_window": hf["sliding_window"]}} if SLIDING in types else None
    return llama_like_config(dict(hf, mlp_bias=True, attention_bias=True), ffn="swiglu_clamped",
                             swiglu_alpha=float(hf.get("swiglu_alpha", 1.702)),
                             swiglu_limit=float(hf.get("swiglu_limit", 7.0)), attn_sinks=True, router_bias=True,
                             router_renormalize=True, layer_types=types, layer_overrides=overrides,
                             norm_eps=hf.get("rms_norm_eps", 1e-5), **moe_fields(hf))


def _layer_types(cfg: ModelConfig) -> tuple[list[str], int | None]:
    """Each layer's HF type and the one window the sliding layers share."""
    windows = [cfg.for_layer(i).sliding_window for i in range(cfg.n_layers)]
    sizes = {w for w in windows if w is not None}
    if len(sizes) > 1:
        raise LlmarchError(f"model_type gpt_oss has one sliding_window for all sliding layers, got {sorted(sizes)}")
    return [FULL if w is None else SLIDING for w in windows], next(iter(sizes), None)


def from_config(cfg: ModelConfig) -> dict:
    shape_ok = (cfg.attn_sinks and cfg.ffn == "swiglu_clamped" and cfg.router_bias and cfg.router_renormalize
                and cfg.bias and cfg.qkv_bias and cfg.n_experts and cfg.moe_period == 1
                and cfg.expert_hidden == cfg.ffn_hidden and not cfg.n_shared_experts and cfg.qk_norm == "none"
                and cfg.positions == "rope" and cfg.norm == "rmsnorm")
    if not shape_ok:
        raise LlmarchError("model_type gpt_oss needs attn_sinks, swiglu_clamped experts (expert_hidden = "
                           "ffn_hidden) in every layer with biases, a biased router with renormalised top-k, RoPE, "
                           "RMSNorm and no QK-norm")
    types, window = _layer_types(cfg)
    return dict(model_type="gpt_oss", architectures=["GptOssForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.expert_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
                rope_parameters=rope_parameters(cfg), tie_word_embeddings=cfg.tie_embeddings, attention_bias=True,
                sliding_window=window, layer_types=types, swiglu_alpha=cfg.swiglu_alpha,
                swiglu_limit=cfg.swiglu_limit, hidden_act="silu", num_local_experts=cfg.n_experts,
                num_experts_per_tok=cfg.experts_per_token, router_aux_loss_coef=cfg.router_aux_loss_weight)


FAMILIES.register("gpt_oss")(Family(RULES, to_config, from_config, IGNORE))
