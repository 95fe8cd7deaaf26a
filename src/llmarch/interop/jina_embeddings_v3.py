"""Jina-Embeddings-v3's encoder (`model_type: jina_embeddings_v3`; Sturua et al. 2024, "jina-embeddings-v3:
Multilingual Embeddings With Task LoRA", arXiv 2409.10173, §3): XLM-RoBERTa's post-norm encoder with RoPE (base
20 000) in place of the position table; q, k, v, o and the GELU MLP with biases, an embedding LayerNorm over the
token plus token-type embeddings, LayerNorms of eps 1e-5, and RoBERTa's MLM head (lm_head: dense -> GELU ->
layer_norm -> tied decoder with `lm_head.bias`). Stored under the original code's names: `emb_ln`, one fused
`mixer.Wqkv`, `mixer.out_proj`, `mlp.fc1`/`fc2`, `norm1`/`norm2`. Heads: the masked LM; JinaEmbeddingsV3Model reads
as head `embed`. Refused: the released model's task LoRA adapters (`lora_adaptations`), which transformers' port
does not have either; the base encoder is what is read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule

_W = ("weight", "bias")
_R, _L = "roberta.", "roberta.encoder.layers.{i}."
_LAYER = [("mixer.Wqkv", "attn.qkv_proj"), ("mixer.out_proj", "attn.o_proj"), ("mlp.fc1", "mlp.up"),
          ("mlp.fc2", "mlp.down"), ("norm1", "ln1"), ("norm2", "ln2")]
RULES = [
    Rule.of(_R + "embeddings.word_embeddings.weight", "embed.weight"),
    Rule.of(_R + "embeddings.token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_R + f"emb_ln.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"lm_head.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"lm_head.layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("lm_head.decoder.weight", "lm_head.weight"), Rule.of("lm_head.bias", "lm_head.bias"),
]
IGNORE = (r"^lm_head\.decoder\.bias$", r"rotary_emb\.inv_freq$", r"embeddings\.(position|token_type)_ids$")
THETA = 20_000.0  # JinaEmbeddingsV3Config.default_theta


def to_config(hf: dict) -> ModelConfig:
    if hf.get("lora_adaptations"):
        raise LlmarchError("jina_embeddings_v3: the task LoRA adapters (lora_adaptations) are not supported; "
                           "llmarch reads the base encoder only")
    if hf.get("hidden_act", "gelu") != "gelu":  # the MLM head applies exact GELU whatever the MLP's activation
        raise LlmarchError(f"jina_embeddings_v3: hidden_act {hf['hidden_act']!r} is not supported (gelu)")
    params = {"rope_theta": hf.get("rope_theta", THETA), **(hf.get("rope_parameters") or {})}
    rope = rope_fields({"max_position_embeddings": hf.get("max_position_embeddings", 8194), "rope_parameters": params})
    cfg = bert_config({"layer_norm_eps": 1e-5, "type_vocab_size": 1, **hf})
    return cfg.replace(name=hf.get("_name_or_path") or "jina_embeddings_v3", hf_model_type="jina_embeddings_v3",
                       positions="rope", pad_id=hf.get("pad_token_id", 1),
                       **{k: v for k, v in rope.items() if k.startswith("rope_")})


def needs(cfg: ModelConfig) -> str | None:
    if cfg.causal or cfg.norm_placement != "post" or cfg.positions != "rope" or cfg.rope_fraction != 1.0 \
            or cfg.ffn != "gelu" or not cfg.bias or cfg.n_kv_heads != cfg.n_heads or not cfg.embed_norm \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias):
        return ("a bidirectional post-norm GELU encoder with biases, MHA, an embedding norm, RoPE over whole heads "
                "and BERT's MLM head")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**bert_hf(cfg), "model_type": "jina_embeddings_v3", "architectures": ["JinaEmbeddingsV3ForMaskedLM"],
            "pad_token_id": cfg.pad_id, "rope_parameters": rope_parameters(cfg)}


FAMILIES.register("jina_embeddings_v3")(Family(RULES, to_config, from_config, IGNORE, needs=needs,
                                               base_prefix="roberta."))
