"""JetMoE (`model_type: jetmoe`; JetMoE-8B; Shen et al. 2024, "JetMoE: Reaching Llama2 Performance with 0.1M
Dollars"): every layer a mixture of attention heads (our mixer "moa", layers/moa.py: `self_attention.experts`
holds the router, each expert's query projection `input_linear` (E, K·D, d) and output projection `output_linear`
(E, d, K·D) and the output bias; `kv_proj` the shared keys then values) and a mixture of SwiGLU experts
(`mlp.input_linear` (E, 2F, d), gate rows first, as our stacked gate_up; `mlp.output_linear`; the output bias
`mlp.bias`: our moe_out_bias), both routed top-`num_experts_per_tok` of `num_local_experts` by a softmax over the chosen
logits. RMSNorm pre-norms; RoPE over `kv_channels` (head_dim); num_attention_heads is derived, k x K. The blocks'
norms use transformers' default epsilon 1e-6 whatever `rms_norm_eps`, which only the final norm reads
(final_norm_eps). The head is tied by default."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_A = _L + "self_attention."
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(_L + "input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of(_A + "experts.router.layer.weight", "blocks.{i}.attn.router.weight"),
    Rule.of(_A + "experts.input_linear.weight", "blocks.{i}.attn.q_experts"),
    Rule.of(_A + "experts.output_linear.weight", "blocks.{i}.attn.o_experts"),
    Rule.of(_A + "experts.bias", "blocks.{i}.attn.o_bias"),
    Rule.of(_A + "kv_proj.weight", "blocks.{i}.attn.kv_proj.weight"),
    Rule.of(_L + "mlp.router.layer.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_L + "mlp.input_linear.weight", "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_L + "mlp.output_linear.weight", "blocks.{i}.mlp.experts.down"),
    Rule.of(_L + "mlp.bias", "blocks.{i}.mlp.bias"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_BLOCK_EPS = 1e-6  # JetMoeRMSNorm's default, which its decoder layers keep


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("activation_function", "silu")
    if act != "silu":
        raise LlmarchError(f"jetmoe: activation_function {act!r} is not supported (silu: SwiGLU experts)")
    K, k, E = hf.get("num_key_value_heads", 16), hf.get("num_experts_per_tok", 2), hf.get("num_local_experts", 8)
    eps = float(hf.get("rms_norm_eps", 1e-6))
    return ModelConfig(name=hf.get("_name_or_path") or "jetmoe", hf_model_type="jetmoe", vocab_size=hf["vocab_size"],
                       d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=k * K, n_kv_heads=K,
                       head_dim=hf.get("kv_channels", 128), mixer="moa", n_experts=E, experts_per_token=k,
                       ffn="swiglu", ffn_hidden=hf["intermediate_size"], bias=False, qkv_bias=False, o_bias=True,
                       moe_out_bias=True, norm="rmsnorm", norm_bias=False, norm_eps=_BLOCK_EPS,
                       final_norm_eps=None if eps == _BLOCK_EPS else eps, positions="rope",
                       tie_embeddings=hf.get("tie_word_embeddings", True),
                       **{"context_length": hf.get("max_position_embeddings", 4096), **rope_fields(hf)})


def _unexpressible(cfg: ModelConfig) -> str | None:
    needs = dict(mixer="moa", ffn="swiglu", norm="rmsnorm", norm_eps=_BLOCK_EPS, norm_placement="pre", bias=False,
                 qkv_bias=False, o_bias=True, moe_out_bias=True, positions="rope", rope_fraction=1.0,
                 router_scoring="softmax", router_renormalize=True, n_shared_experts=0, moe_period=1,
                 moe_dense_first=0, sliding_window=None, layer_types=None, attn_period=0, router_bias=False,
                 expert_bias=False, router_groups=1, router_scale=1.0, capacity_factor=None, expert_capacity=None)
    wrong = next((k for k, v in needs.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={needs[wrong]!r}"
    return None if cfg.expert_hidden == cfg.ffn_hidden else f"expert_hidden = ffn_hidden ({cfg.ffn_hidden})"


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="jetmoe", architectures=["JetMoeForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_key_value_heads=cfg.n_kv_heads,
                kv_channels=cfg.head_dim, intermediate_size=cfg.expert_hidden, activation_function="silu",
                num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                rms_norm_eps=cfg.final_norm_eps or cfg.norm_eps, rope_parameters=rope_parameters(cfg),
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("jetmoe")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
