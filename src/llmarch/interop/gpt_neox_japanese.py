"""GPT-NeoX-Japanese (`model_type: gpt_neox_japanese`; ABEJA's gpt-neox-japanese-2.7b): GPT-NeoX's names and its
q, k, v fused per head (`query_key_value`, layout neox_qkv) in sequential pre-norm blocks,
x += attn(LN1(x)); x += mlp(LN2(x)), with no bias on any projection but one: the last layer's attention output
adds a learned `dense_bias` (transformers' GPTNeoXJapaneseAttention(use_bias=layer_number == num_hidden_layers -
1)), which llmarch holds as that layer's o_proj bias, a layer type of its own (o_bias varies per layer). An
exact-GELU MLP of intermediate_multiple_size x hidden_size, RoPE on the first rotary_pct of each head's dims (GPT-NeoX's
halves), and a head `embed_out` tied as tie_word_embeddings says."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import rope_fields
from .mapping import Rule

_D, _L = "gpt_neox_japanese.", "gpt_neox_japanese.layers.{i}."
_W = ("weight", "bias")
RULES = [
    Rule.of(_D + "embed_in.weight", "embed.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in
      (("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2")) for w in _W],
    Rule.of(_L + "attention.query_key_value.weight", "blocks.{i}.attn.qkv_proj.weight", "neox_qkv"),
    Rule.of(_L + "attention.dense.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_L + "attention.dense_bias", "blocks.{i}.attn.o_proj.bias"),  # the last layer's only
    Rule.of(_L + "mlp.dense_h_to_4h.weight", "blocks.{i}.mlp.up.weight"),
    Rule.of(_L + "mlp.dense_4h_to_h.weight", "blocks.{i}.mlp.down.weight"),
    *[Rule.of(_D + f"final_layer_norm.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("embed_out.weight", "lm_head.weight"),
]
IGNORE = (r"rotary_emb\.inv_freq$", r"attention\.(masked_)?bias$", r"^embed_out\.weight$")  # a tied head stored too
PLAIN, LAST = "attention", "attention_dense_bias"  # the layer types: the last layer's attention output has a bias


def to_config(hf: dict) -> ModelConfig:
    d, n = hf.get("hidden_size", 2560), hf.get("num_hidden_layers", 32)
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    params.setdefault("rope_theta", hf.get("rotary_emb_base", 10000.0))
    rope = rope_fields({**hf, "rope_parameters": params})
    context = rope.pop("context_length", hf.get("max_position_embeddings", 2048))  # dynamic NTK stretches it
    return ModelConfig(name=hf.get("_name_or_path") or "gpt_neox_japanese", hf_model_type="gpt_neox_japanese",
                       vocab_size=hf.get("vocab_size", 32000), d_model=d, n_layers=n,
                       n_heads=hf.get("num_attention_heads", 32),
                       ffn=read_activation(hf, "gpt_neox_japanese", "hidden_act", "gelu"),
                       ffn_hidden=int(d * hf.get("intermediate_multiple_size", 4)), norm="layernorm",
                       norm_eps=hf.get("layer_norm_eps", 1e-5), positions="rope",
                       rope_fraction=float(params.get("partial_rotary_factor", hf.get("rotary_pct", 1.0))),
                       bias=False, layer_types=[PLAIN] * (n - 1) + [LAST], layer_overrides={LAST: {"o_bias": True}},
                       tie_embeddings=hf.get("tie_word_embeddings", True), **rope,
                       context_length=context)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.ffn_hidden % cfg.d_model:
        raise LlmarchError(f"model_type gpt_neox_japanese needs ffn_hidden a multiple of d_model "
                           f"(intermediate_multiple_size), got {cfg.ffn_hidden} and {cfg.d_model}")
    params = {"rope_type": "default" if cfg.rope_scaling == "none" else cfg.rope_scaling,
              "rope_theta": cfg.rope_theta, "partial_rotary_factor": cfg.rope_fraction}
    if cfg.rope_scaling != "none":
        params["factor"] = cfg.rope_factor
    hf = dict(model_type="gpt_neox_japanese", architectures=["GPTNeoXJapaneseForCausalLM"],
              vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
              num_attention_heads=cfg.n_heads, intermediate_multiple_size=cfg.ffn_hidden // cfg.d_model,
              hidden_act=hf_activation(cfg.ffn, PYTORCH_TANH), layer_norm_eps=cfg.norm_eps,
              max_position_embeddings=cfg.context_length, rope_parameters=params,
              tie_word_embeddings=cfg.tie_embeddings, attention_dropout=cfg.dropout, hidden_dropout=cfg.dropout)
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("gpt_neox_japanese")(Family(RULES, to_config, from_config, IGNORE))
