"""Falcon (`model_type: falcon`; Almazrouei et al. 2023, "The Falcon Series of Open Language Models"):
LayerNorm with biases, linears with or without biases (`bias`), an ungated MLP (exact GELU by default), rotary
embeddings on every dim, a tied head by default, and q, k, v fused in `query_key_value` per kv-head group
(layout `grouped_qkv`). Three variants share the format (transformers' modeling_falcon.py):
- Falcon-7B (`multi_query`): one k, v head; a parallel block with one shared norm, `input_layernorm`.
- Falcon-40B/180B (`new_decoder_architecture`): `num_kv_heads` groups; a parallel block with two norms,
  `ln_attn` and `ln_mlp` (Falcon2-11B, `num_ln_in_parallel_attn: 1`: one shared `input_layernorm`).
- neither flag: q, k, v per head; `parallel_attn: false` makes the block sequential, with `input_layernorm`
  and `post_attention_layernorm`.
ALiBi checkpoints (`alibi: true`, Falcon-RW) have no rotary embeddings; their bias is ALiBi's with the slopes
and slope * position rounded to bfloat16, then divided by sqrt(head_dim) (alibi_bf16, alibi_scale), as the
original RW code computes it."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import HF_NAMES, PYTORCH_TANH, exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule

_L = "transformer.h.{i}."
_LAYER = [("self_attention.query_key_value", "attn.qkv_proj", "grouped_qkv"),
          ("self_attention.dense", "attn.o_proj", "same"),
          ("mlp.dense_h_to_4h", "mlp.up", "same"), ("mlp.dense_4h_to_h", "mlp.down", "same")]

RULES = [
    Rule.of("transformer.word_embeddings.weight", "embed.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}", layout) for hf, ours, layout in _LAYER
      for w in ("weight", "bias")],
    Rule.of("transformer.ln_f.weight", "ln_final.weight"),
    Rule.of("transformer.ln_f.bias", "ln_final.bias"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
IGNORE = (r"rotary_emb\.inv_freq$",)  # a derived buffer that checkpoints of the original RW code stored
# HF names of our ln1 (and ln2), by block: they depend on config fields, so the rules do (FalconFamily)
_NORMS = {"sequential": ("input_layernorm", "post_attention_layernorm"), "shared": ("input_layernorm",),
          "parallel": ("ln_attn", "ln_mlp")}


def _unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' Falcon cannot compute, or None."""
    needs = [("norm='layernorm' with norm_bias", cfg.norm == "layernorm" and cfg.norm_bias),
             ("pre-norm blocks and a final norm", cfg.norm_placement == "pre" and cfg.final_norm),
             ("positions='rope' on every dim (rope_fraction=1), or Falcon-RW's alibi",
              cfg.positions == "rope" and cfg.rope_fraction == 1 or cfg.positions == "alibi" and _rw_alibi(cfg)),
             ("head_dim = d_model / n_heads", cfg.head_dim * cfg.n_heads == cfg.d_model),
             ("qkv_bias equal to bias", cfg.qkv_bias == cfg.bias),
             (f"an ungated ffn ({', '.join(HF_NAMES)})", exportable(cfg.ffn)),
             ("n_kv_heads 1 or n_heads in a sequential block",
              cfg.block == "parallel" or cfg.n_kv_heads in (1, cfg.n_heads)),
             ("no sliding_window", cfg.sliding_window is None),
             ("head_scale false", not cfg.head_scale)]
    return next((need for need, ok in needs if not ok), None)


def _rw_alibi(cfg: ModelConfig) -> bool:
    return cfg.alibi_bf16 and cfg.alibi_scale == cfg.head_dim ** -0.5


class FalconFamily(Family):
    """Falcon's norms are named by the block, so its rules depend on the config."""

    def rules_for(self, cfg: ModelConfig) -> list[Rule]:
        rules = super().rules_for(cfg)  # which refuses what Falcon's layout cannot hold (needs)
        block = "shared" if cfg.shared_norm else cfg.block
        norms = [Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.ln{n}.{w}") for n, hf in enumerate(_NORMS[block], 1)
                 for w in ("weight", "bias")]
        return rules + norms


def to_config(hf: dict) -> ModelConfig:
    new, parallel = hf.get("new_decoder_architecture", False), hf.get("parallel_attn", True)
    heads = hf["num_attention_heads"]
    # transformers' FalconDecoderLayer: None means 2 norms in the new architecture, input_layernorm in the old
    n_norms = hf.get("num_ln_in_parallel_attn") or (2 if new else 1)
    if new and not parallel:
        raise LlmarchError("falcon: new_decoder_architecture needs parallel_attn=true (its block is always parallel)")
    if parallel and not new and n_norms == 2:
        raise LlmarchError("falcon: num_ln_in_parallel_attn=2 needs new_decoder_architecture")
    # the old architecture ignores num_kv_heads: its fused weight holds 1 (multi_query) or all k, v heads
    kv = (hf.get("num_kv_heads") or heads) if new else 1 if hf.get("multi_query", True) else heads
    d = hf.get("n_embed") or hf["hidden_size"]  # n_embed: the older name, which transformers still honours
    fields = dict(name=hf.get("_name_or_path") or "falcon", hf_model_type="falcon", vocab_size=hf["vocab_size"],
                  d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads, n_kv_heads=kv,
                  ffn=read_activation(hf, "falcon", "activation", "gelu"),
                  ffn_hidden=hf.get("ffn_hidden_size") or 4 * d, norm="layernorm",
                  norm_eps=hf.get("layer_norm_epsilon") or 1e-5, block="parallel" if parallel else "sequential",
                  shared_norm=parallel and n_norms == 1, positions="rope", bias=hf.get("bias", False),
                  tie_embeddings=hf.get("tie_word_embeddings", True),
                  context_length=hf.get("max_position_embeddings", 2048))
    if hf.get("alibi", False):
        fields.update(positions="alibi", alibi_bf16=True, alibi_scale=(d // heads) ** -0.5)
    else:
        fields.update(rope_fields(hf))
    return ModelConfig(**fields)


def from_config(cfg: ModelConfig) -> dict:
    parallel, kv = cfg.block == "parallel", cfg.n_kv_heads
    # the old architecture has one shared norm and 1 or n_heads kv heads; anything else needs the new one
    new = parallel and not (cfg.shared_norm and kv in (1, cfg.n_heads))
    return dict(model_type="falcon", architectures=["FalconForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                num_kv_heads=kv, multi_query=kv == 1, new_decoder_architecture=new, parallel_attn=parallel,
                num_ln_in_parallel_attn=(1 if cfg.shared_norm else 2) if parallel else None,
                alibi=cfg.positions == "alibi",
                bias=cfg.bias, ffn_hidden_size=cfg.ffn_hidden, activation=hf_activation(cfg.ffn, PYTORCH_TANH),
                layer_norm_epsilon=cfg.norm_eps, rope_parameters=rope_parameters(cfg),
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("falcon")(FalconFamily(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
