"""OPT (`model_type: opt`; Zhang et al. 2022, "OPT: Open Pre-trained Transformer Language Models"): GPT-2's
pre-norm decoder (LayerNorms with biases, learned positions, biases on every projection, a tied head) with a ReLU
MLP (`fc1`, `fc2`) and q, k, v, o kept apart (`self_attn.{q,k,v,out}_proj`) under `model.decoder.`. Its position
table has two extra rows in front: positions count from offset 2 (position_offset 2, as RoBERTa's), each row's
from its first real token. Published checkpoints (OPTModel) hold `decoder.*` without `model.`. OPT-350m's
projections in and out of a narrower embedding (word_embed_proj_dim) and its post-norm blocks are not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_LAYER = [("self_attn.out_proj", "attn.o_proj"), ("self_attn_layer_norm", "ln1"), ("fc1", "mlp.up"),
          ("fc2", "mlp.down"), ("final_layer_norm", "ln2")]


def decoder_rules(root: str, final_norm: str, head: str) -> list[Rule]:
    """OPT's decoder layout under `root`, its final LayerNorm named `final_norm` and its head `head` (BioGPT's is
    the same decoder under other names)."""
    layer = root + "layers.{i}."
    return [
        Rule.of(root + "embed_tokens.weight", "embed.weight"),
        Rule.of(root + "embed_positions.weight", "positions.weight"),
        *[Rule.of(tuple(layer + f"self_attn.{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}")
          for w in _W],
        *[Rule.of(layer + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
        *[Rule.of(root + f"{final_norm}.{w}", f"ln_final.{w}") for w in _W],
        Rule.of(f"{head}.weight", "lm_head.weight"),
    ]


RULES = decoder_rules("model.decoder.", "final_layer_norm", "lm_head")
OFFSET = 2  # OPTLearnedPositionalEmbedding.offset


def to_config(hf: dict) -> ModelConfig:
    d = hf["hidden_size"]
    if not hf.get("do_layer_norm_before", True) or hf.get("word_embed_proj_dim", d) not in (None, d):
        raise LlmarchError("opt: post-norm blocks (do_layer_norm_before false) and a projected embedding "
                           "(word_embed_proj_dim, OPT-350m) are not supported")
    if hf.get("_remove_final_layer_norm") or not hf.get("layer_norm_elementwise_affine", True):
        raise LlmarchError("opt: a removed final LayerNorm or LayerNorms without gains are not supported")
    return ModelConfig(name=hf.get("_name_or_path") or "opt", hf_model_type="opt", vocab_size=hf["vocab_size"],
                       d_model=d, n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
                       ffn=read_activation(hf, "opt", "activation_function", "relu"), ffn_hidden=hf["ffn_dim"],
                       norm="layernorm", norm_eps=1e-5,
                       positions="learned", position_offset=OFFSET, bias=bool(hf.get("enable_bias", True)),
                       tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("max_position_embeddings", 2048))


def from_config(cfg: ModelConfig) -> dict:
    if (cfg.norm, cfg.norm_eps, cfg.norm_placement, cfg.positions, cfg.position_offset, cfg.block) != (
            "layernorm", 1e-5, "pre", "learned", OFFSET, "sequential") or not exportable(cfg.ffn) \
            or cfg.qkv_bias != cfg.bias or not cfg.norm_bias or cfg.n_kv_heads != cfg.n_heads or not cfg.final_norm:
        raise LlmarchError("model_type opt needs pre-norm LayerNorms (eps 1e-5) with biases, learned positions "
                           "from offset 2, MHA, one enable_bias and a relu/gelu MLP")
    return dict(model_type="opt", architectures=["OPTForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, word_embed_proj_dim=cfg.d_model, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, ffn_dim=cfg.ffn_hidden,
                activation_function=hf_activation(cfg.ffn),
                max_position_embeddings=cfg.context_length, do_layer_norm_before=True, enable_bias=cfg.bias,
                tie_word_embeddings=cfg.tie_embeddings, dropout=cfg.dropout)


def canonical(name: str) -> str:
    """OPTModel checkpoints (the published facebook/opt-* ones) store `decoder.*` without `model.`."""
    return "model." + name if name.startswith("decoder.") else name


FAMILIES.register("opt")(Family(RULES, to_config, from_config, canonical=canonical))
