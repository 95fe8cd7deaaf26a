"""GPT-1 (`model_type: openai-gpt`; Radford et al. 2018, "Improving Language Understanding by Generative
Pre-Training", §3.1): the original Transformer's decoder alone, with post-norm blocks, x = LN1(x + attn(x)),
x = LN2(x + mlp(x)) (norm_placement post: no norm after the last block), learned positions, a tanh-GELU MLP of
4 d_model (transformers' afn "gelu" is gelu_new), biases everywhere and a head tied to the token embeddings,
without a bias. Conv1D weights stored (in, out), q, k, v fused in `c_attn` in our q|k|v order, as GPT-2's.
transformers embeds token_type_ids with the token table, as llmarch does here (type_ids_from_tokens)."""
from __future__ import annotations

from ..config import ModelConfig
from .activations import hf_activation, read_activation
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import Rule

_LAYER = [("ln_1", "ln1", "same"), ("attn.c_attn", "attn.qkv_proj", "transposed"),
          ("attn.c_proj", "attn.o_proj", "transposed"), ("ln_2", "ln2", "same"),
          ("mlp.c_fc", "mlp.up", "transposed"), ("mlp.c_proj", "mlp.down", "transposed")]
RULES = [
    Rule.of("transformer.tokens_embed.weight", "embed.weight"),
    Rule.of("transformer.positions_embed.weight", "positions.weight"),
    *[Rule.of(f"transformer.h.{{i}}.{hf}.{w}", f"blocks.{{i}}.{ours}.{w}", layout if w == "weight" else "same")
      for hf, ours, layout in _LAYER for w in ("weight", "bias")],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# transformers' own ACT_FNS, not ACT2FN: its "gelu" is the tanh approximation (gelu_new)
_ACT_FNS = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}


def to_config(hf: dict) -> ModelConfig:
    d = hf.get("n_embd", 768)
    return ModelConfig(name=hf.get("_name_or_path") or "openai-gpt", hf_model_type="openai-gpt",
                       vocab_size=hf.get("vocab_size", 40478), d_model=d, n_layers=hf.get("n_layer", 12),
                       n_heads=hf.get("n_head", 12), ffn=read_activation(hf, "openai-gpt", "afn", "gelu", _ACT_FNS),
                       ffn_hidden=4 * d, norm="layernorm",
                       norm_eps=hf.get("layer_norm_epsilon", 1e-5), norm_placement="post", positions="learned",
                       tie_embeddings=hf.get("tie_word_embeddings", True), type_ids_from_tokens=True,
                       context_length=hf.get("n_positions", 512))


def from_config(cfg: ModelConfig) -> dict:
    act = hf_activation(cfg.ffn, {"gelu_tanh": "gelu"})
    hf = dict(model_type="openai-gpt", architectures=["OpenAIGPTLMHeadModel"], vocab_size=cfg.vocab_size,
              n_positions=cfg.context_length, n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads,
              afn=act, layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
              attn_pdrop=cfg.dropout, tie_word_embeddings=cfg.tie_embeddings)
    return refuse_unless_read_back(cfg, hf, to_config)


def canonical(name: str) -> str:
    """OpenAIGPTModel checkpoints (the published openai-community/openai-gpt) store `h.0...` without
    `transformer.`."""
    return name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name


FAMILIES.register("openai-gpt")(Family(RULES, to_config, from_config, ignore=(r"\.attn\.bias$", r"position_ids$"),
                                       canonical=canonical))
