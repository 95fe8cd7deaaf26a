"""NomicBERT-MoE (nomic-embed-text-v2-moe; Nussbaum & Duderstadt 2025, "Training Sparse Mixture Of Experts Text
Embedding Models", arXiv 2502.07972): NomicBERT's post-norm encoder with RoPE (nomic_bert.py) whose every n-th layer,
from layer 1, has a mixture of experts for its MLP: a router (d -> E, no bias), softmax over the experts, the top k
weighted by their probabilities as they are (not renormalised), each expert a GELU MLP. Unlike NomicBERT v1 the
blocks have biases (q, k, v fused, out, and the dense layers' GELU MLP `fc1`/`fc2`) and the dense MLP is not gated.
transformers' nomic_bert has no experts (the checkpoints say model_type `nomic_bert` and run Nomic's remote code), so
this table, under llmarch's own model_type `nomic_bert_moe`, is the layout llama.cpp's converter (NomicBertModel)
reads: the original names, each layer's experts as two matrices of stacked rows, `mlp.experts.mlp.w1` (E * I, d) and
`mlp.experts.mlp.w2` (E * I, d), expert e's rows e I .. (e + 1) I - 1 (w2's as x @ w2 uses them), the router
`mlp.router.layer`. The original's bias after the experts (`mlp.experts.bias`), which the converter drops and
llama.cpp never adds, is not in the table: a checkpoint holding one is refused. Config: NomicBERT's fields,
`num_experts`, `moe_top_k`, `moe_every_n_layers` (the original's names). Heads: the masked LM; the base model reads as
head `embed`."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, RETYPED, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule
from .nomic_bert import IGNORE

_W = ("weight", "bias")
_R, _L = "nomic_bert.", "nomic_bert.encoder.layers.{i}."
_LAYER = [("attn.Wqkv", "attn.qkv_proj"), ("attn.out_proj", "attn.o_proj"), ("mlp.fc1", "mlp.up"),
          ("mlp.fc2", "mlp.down"), ("norm1", "ln1"), ("norm2", "ln2")]
RULES = [
    Rule.of(_R + "embeddings.word_embeddings.weight", "embed.weight"),
    Rule.of(_R + "embeddings.token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_R + f"emb_ln.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    Rule.of(_L + "mlp.router.layer.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_L + "mlp.experts.mlp.w1", "blocks.{i}.mlp.experts.up", "experts_rows"),
    Rule.of(_L + "mlp.experts.mlp.w2", "blocks.{i}.mlp.experts.down", "experts_rows_transposed"),
    *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"cls.predictions.transform.layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("cls.predictions.decoder.weight", "lm_head.weight"), Rule.of("cls.predictions.bias", "lm_head.bias"),
]


# the original code's config is a GPT2Config (its checkpoints' config.json): those names are read where
# transformers' are absent
_GPT2_NAMES = {"n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
               "n_inner": "intermediate_size", "layer_norm_epsilon": "layer_norm_eps",
               "activation_function": "hidden_act", "n_positions": "max_position_embeddings"}


def _transformers_names(hf: dict) -> dict:
    """config.json with the original code's names as transformers' (RoPE's base `rotary_emb_base`); its RoPE
    variants that llama.cpp does not run (a fraction of each head, interleaved pairs) refused."""
    out = {ours: hf[theirs] for theirs, ours in _GPT2_NAMES.items() if hf.get(theirs) is not None and ours not in hf}
    if "n_embd" in hf and "intermediate_size" not in hf and hf.get("n_inner") is None:
        out["intermediate_size"] = 4 * hf["n_embd"]  # GPT2Config's n_inner None
    if hf.get("rotary_emb_base") is not None and not hf.get("rope_parameters"):
        out["rope_parameters"] = {"rope_theta": float(hf["rotary_emb_base"])}
    if hf.get("rotary_emb_fraction", 1.0) != 1.0 or hf.get("rotary_emb_interleaved"):
        raise LlmarchError(f"nomic_bert_moe: RoPE over a fraction {hf.get('rotary_emb_fraction')} of each head or "
                           "on interleaved pairs is not supported (whole heads, halves rotated)")
    return {**hf, **out}


def to_config(hf: dict) -> ModelConfig:
    hf = _transformers_names(hf)
    act, every = hf.get("hidden_act", "gelu"), hf["moe_every_n_layers"]
    if act != "gelu":
        raise LlmarchError(f"nomic_bert_moe: hidden_act {act!r} is not supported (gelu, as llama.cpp runs it)")
    if every < 2:  # the mixtures sit at layers i % n == 1 (llama.cpp's graph), which n = 1 never gives
        raise LlmarchError(f"nomic_bert_moe: moe_every_n_layers {every} is not supported (2 or more)")
    rope = rope_fields({**hf, "rope_parameters": {"rope_theta": 1000.0, **(hf.get("rope_parameters") or {})}})
    heads = hf["num_attention_heads"]
    return ModelConfig(name=hf.get("_name_or_path") or "nomic_bert_moe", hf_model_type="nomic_bert_moe",
                       vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                       n_heads=heads, head_dim=hf["hidden_size"] // heads, ffn="gelu",
                       ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12),
                       norm_placement="post", positions="rope", causal=False, embed_norm=True,
                       type_vocab_size=hf.get("type_vocab_size", 1), bias=True, expert_proj_bias=False,
                       n_experts=hf["num_experts"], experts_per_token=hf["moe_top_k"], moe_period=every, moe_offset=1,
                       router_scoring="softmax", router_renormalize=False, head_transform=True, head_bias=True,
                       tie_embeddings=hf.get("tie_word_embeddings", True), pad_id=hf.get("pad_token_id") or 0,
                       context_length=hf.get("max_position_embeddings", 512),
                       **{k: v for k, v in rope.items() if k != "context_length"})


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="nomic_bert_moe", architectures=["NomicBertForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act="gelu", layer_norm_eps=cfg.norm_eps,
                type_vocab_size=cfg.type_vocab_size, max_position_embeddings=cfg.context_length,
                rope_parameters=rope_parameters(cfg), tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id,
                num_experts=cfg.n_experts, moe_top_k=cfg.experts_per_token, moe_every_n_layers=cfg.moe_period)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.causal or cfg.norm != "layernorm" or cfg.norm_placement != "post" or cfg.final_norm \
            or not cfg.embed_norm or cfg.positions != "rope" or cfg.rope_fraction != 1.0 or cfg.ffn != "gelu" \
            or not (cfg.bias and cfg.qkv_bias and cfg.o_bias and cfg.ffn_in_bias) or cfg.expert_proj_bias \
            or cfg.n_kv_heads != cfg.n_heads or not cfg.n_experts or cfg.moe_period < 2 or cfg.moe_offset != 1 \
            or cfg.moe_dense_first or cfg.n_shared_experts or cfg.router_scoring != "softmax" \
            or cfg.router_renormalize or cfg.router_scale != 1.0 or cfg.moe_out_bias \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias and cfg.head_act in (None, "gelu")):
        return ("a bidirectional post-LayerNorm encoder with an embedding norm, RoPE over whole heads, MHA and a GELU "
                "MLP with biases, every n-th layer from layer 1 a mixture of unbiased GELU experts with softmax top-k "
                "weights as they are, and BERT's MLM head")
    return None


FAMILIES.register("nomic_bert_moe")(Family(RULES, to_config, from_config, IGNORE, needs=needs,
                                           heads={"embed": ("NomicBertModel", [])}, base_prefix="nomic_bert."))
# nomic-embed-text-v2-moe's config says model_type `nomic_bert`, which transformers reads without experts: its
# moe_every_n_layers tells it apart
RETYPED.append(("nomic_bert", lambda hf: bool(hf.get("moe_every_n_layers")), "nomic_bert_moe"))
