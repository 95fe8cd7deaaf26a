"""StableLM (`model_type: stablelm`; StableLM-3B-4E1T, StableLM-2-1.6B, StableLM-Zephyr-3B; Bellagente et al.
2024, "Stable LM 2 1.6B Technical Report"): LLaMA's attention and SwiGLU MLP (gate_proj, up_proj, down_proj, no
biases) with pre-norm LayerNorms with biases (`layer_norm_eps`) and a final one (`model.norm`), grouped-query
q, k, v with biases where `use_qkv_bias` (none on o_proj: our bias=False, qkv_bias), RoPE on the first
`partial_rotary_factor` of each head's dims (default 0.25) in the half-split layout, and an untied `lm_head` by
default. `use_parallel_residual` (StableLM-2-12B) is the parallel block with one norm feeding both branches,
x + attn(ln(x)) + mlp(ln(x)) (our block="parallel", shared_norm: transformers then has no
post_attention_layernorm). `qk_layernorm` (StableLM-2-12B) is a LayerNorm without bias per head, each head with
its own weights (StableLmLayerNormPerHead: `q_layernorm.norms.{h}`, `k_layernorm.norms.{h}`): our
qk_norm="per_head", whose gains (H * D,) are the heads' concatenated.
`hidden_dropout` (on the MLP's output) and `attention_dropout` are llmarch's one `dropout` where they agree
(only training reads it); where they differ no field holds them, and they are left out (dropout 0)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_fraction, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_MLP = _L + "mlp."
_W = ("weight", "bias")

RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_L + f"self_attn.{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    Rule.of(_L + "self_attn.o_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of((_MLP + "gate_proj.weight", _MLP + "up_proj.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_MLP + "down_proj.weight", "blocks.{i}.mlp.down.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}")
      for hf, ours in (("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2")) for w in _W],
    *[Rule.of(f"model.norm.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_DROPOUTS = ("hidden_dropout", "attention_dropout")
# what transformers' StableLmForCausalLM computes, beyond the shape fields and the block
_NEEDS = dict(norm="layernorm", norm_bias=True, norm_placement="pre", final_norm=True, positions="rope",
              ffn="swiglu", bias=False, head_bias=False, attn_output_gate=False, attn_sinks=False,
              embed_scale=False, embed_norm=False, head_scale=False, attn_scale=None, attn_softcap=None,
              final_softcap=None, sliding_window=None, attention="full", n_experts=0, mixer="attention",
              layer_types=None, n_decoder_layers=0, type_vocab_size=0, causal=True)


def _unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' StableLM cannot compute, or None."""
    wrong = next((k for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={_NEEDS[wrong]!r}"
    needs = [("block='sequential', or 'parallel' with shared_norm", cfg.block == "sequential" or cfg.shared_norm),
             (f"head_dim = d_model / n_heads = {cfg.d_model // cfg.n_heads}, not {cfg.head_dim}",
              cfg.head_dim * cfg.n_heads == cfg.d_model),
             ("rope_scaling none, linear, dynamic, llama3 or yarn", cfg.rope_scaling != "longrope"),
             ("qk_norm 'none' or 'per_head' (StableLmLayerNormPerHead)", cfg.qk_norm in ("none", "per_head"))]
    return next((need for need, ok in needs if not ok), None)


def to_config(hf: dict) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads):  # transformers' StableLmAttention uses d / heads regardless
        raise LlmarchError(f"stablelm: head_dim={hf['head_dim']} is not hidden_size / num_attention_heads = "
                           f"{d // heads}")
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"stablelm: hidden_act {hf['hidden_act']!r} is not supported (SwiGLU: silu)")
    parallel = bool(hf.get("use_parallel_residual", False))
    dropouts = {float(hf.get(k) or 0.0) for k in _DROPOUTS}
    return ModelConfig(name=hf.get("_name_or_path") or "stablelm", hf_model_type="stablelm",
                       vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                       n_kv_heads=hf.get("num_key_value_heads") or heads, ffn="swiglu",
                       ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-5),
                       block="parallel" if parallel else "sequential", shared_norm=parallel, positions="rope",
                       # transformers' StableLmConfig: 0.25 where a config gives none
                       rope_fraction=rope_fraction(hf, 0.25),
                       bias=False, qkv_bias=bool(hf.get("use_qkv_bias", False)),
                       qk_norm="per_head" if hf.get("qk_layernorm") else "none",
                       tie_embeddings=hf.get("tie_word_embeddings", False),
                       dropout=dropouts.pop() if len(dropouts) == 1 else 0.0,
                       **{"context_length": hf.get("max_position_embeddings", 4096), **rope_fields(hf)})


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="stablelm", architectures=["StableLmForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, hidden_act="silu",
                layer_norm_eps=cfg.norm_eps, use_qkv_bias=cfg.qkv_bias, qk_layernorm=cfg.qk_norm == "per_head",
                use_parallel_residual=cfg.block == "parallel",
                rope_parameters=rope_parameters(cfg, partial=True),
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                tie_word_embeddings=cfg.tie_embeddings, **{k: cfg.dropout for k in _DROPOUTS})


def _head_norms(cfg: ModelConfig) -> list[Rule]:
    """qk_layernorm's norms, one per head, into our per-head gains (H * D,)."""
    if cfg.qk_norm != "per_head":
        return []
    return [Rule.of(tuple(_L + f"self_attn.{p}_layernorm.norms.{h}.weight" for h in range(heads)),
                    f"blocks.{{i}}.attn.{p}_norm.weight") for p, heads in (("q", cfg.n_heads), ("k", cfg.n_kv_heads))]


FAMILIES.register("stablelm")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible,
                                     more_rules=_head_norms))
