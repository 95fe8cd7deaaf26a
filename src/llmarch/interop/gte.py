"""GTE (`model_type: gte`; Zhang et al. 2024, "mGTE: Generalized Long-Context Text Representation and Reranking
Models for Multilingual Text Retrieval", arXiv 2407.19669, §3.1): BERT's post-norm encoder (LayerNorm after each
residual add, an embedding LayerNorm over the token plus token-type embeddings) with RoPE in place of the
position table, q, k, v, o with biases, and a gated MLP (GeGLU for hidden_act gelu) whose gate and up projections
have no bias while down has one (ffn_in_bias=False). The MLM head is BERT's (dense -> exact GELU -> LayerNorm ->
tied decoder with a bias). NomicBERT (nomic_bert.py) is the same layout with no biases in the blocks and the
head's activation the MLP's. Heads: the masked LM; GteModel reads as head `embed`."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule

_W = ("weight", "bias")
_E, _L = "gte.embeddings.", "gte.encoder.layer.{i}."
# as transformers writes them (its conversion mapping turned back): the original remote-code names
_LAYER = [("attention.qkv_proj", "attn.qkv_proj"), ("attention.o_proj", "attn.o_proj"), ("attn_ln", "ln1"),
          ("mlp.down_proj", "mlp.down"), ("mlp_ln", "ln2")]
_GLU = {"gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh", "silu": "swiglu"}
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    Rule.of(_L + "mlp.up_gate_proj.weight", "blocks.{i}.mlp.gate_up.weight", "swapped_halves"),  # rows: up, gate
    *[Rule.of(f"lm_head.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"lm_head.norm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("lm_head.decoder.weight", "lm_head.weight"), Rule.of("lm_head.decoder.bias", "lm_head.bias"),
]


def canonical(name: str) -> str:
    """Alibaba's checkpoints (NewModel, the remote code transformers' GTE came from) name the body `new.`."""
    return "gte." + name[4:] if name.startswith("new.") else name


IGNORE = (r"rotary_emb\.inv_freq$",)


def encoder_config(hf: dict, model_type: str, theta: float, biased: bool) -> ModelConfig:
    """A GTE-layout config (NomicBERT's too): `theta` the config class's default RoPE base, `biased` its blocks'
    biases."""
    act = hf.get("hidden_act", "gelu")
    if act not in _GLU:
        raise LlmarchError(f"{model_type}: hidden_act {act!r} is not supported ({', '.join(_GLU)})")
    rope = rope_fields({**hf, "rope_theta": hf.get("rope_theta", theta),
                        "rope_parameters": {"rope_theta": theta, **(hf.get("rope_parameters") or {})}})
    heads = hf["num_attention_heads"]
    return ModelConfig(name=hf.get("_name_or_path") or model_type, hf_model_type=model_type,
                       vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                       n_heads=heads, head_dim=hf.get("head_dim") or hf["hidden_size"] // heads, ffn=_GLU[act],
                       ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12),
                       norm_placement="post", positions="rope", causal=False, embed_norm=True,
                       type_vocab_size=hf.get("type_vocab_size", 2), bias=biased, ffn_in_bias=False,
                       head_transform=True, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       pad_id=hf.get("pad_token_id") or 0, context_length=hf.get("max_position_embeddings", 2048),
                       **{k: v for k, v in rope.items() if k != "context_length"})


def encoder_needs(cfg: ModelConfig, biased: bool) -> str | None:
    if cfg.causal or cfg.norm != "layernorm" or cfg.norm_placement != "post" or cfg.final_norm \
            or not cfg.embed_norm or cfg.positions != "rope" or cfg.rope_fraction != 1.0 or cfg.ffn not in \
            _GLU.values() or cfg.n_kv_heads != cfg.n_heads or cfg.ffn_in_bias or (cfg.bias, cfg.qkv_bias,
                                                                                  cfg.o_bias) != (biased,) * 3 \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias and cfg.head_transform_bias):
        return (f"a bidirectional post-LayerNorm encoder with an embedding norm, RoPE over whole heads, MHA, a gated "
                f"MLP without input biases, {'biases' if biased else 'no biases'} elsewhere in the blocks, and "
                "BERT's MLM head")
    return None


def encoder_hf(cfg: ModelConfig, model_type: str, arch: str) -> dict:
    return dict(model_type=model_type, architectures=[arch], vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, intermediate_size=cfg.ffn_hidden,
                hidden_act={v: k for k, v in _GLU.items()}[cfg.ffn], layer_norm_eps=cfg.norm_eps,
                type_vocab_size=cfg.type_vocab_size, max_position_embeddings=cfg.context_length,
                rope_parameters=rope_parameters(cfg), tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "gelu") != "gelu":  # GteLMHead applies exact GELU whatever the MLP's activation
        raise LlmarchError(f"gte: hidden_act {hf['hidden_act']!r} is not supported (gelu: the MLM head's is gelu)")
    return encoder_config(hf, "gte", 160_000.0, True)


FAMILIES.register("gte")(Family(RULES, to_config, lambda cfg: encoder_hf(cfg, "gte", "GteForMaskedLM"), IGNORE,
                                canonical=canonical,
                                needs=lambda cfg: encoder_needs(cfg, True) or (None if cfg.ffn == "geglu" else
                                                                               "ffn geglu (GteLMHead's GELU)"),
                                base_prefix="gte."))
