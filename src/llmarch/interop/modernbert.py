"""ModernBERT (`model_type: modernbert`; Warner et al. 2024, "Smarter, Better, Faster, Longer: A Modern
Bidirectional Encoder", arXiv 2412.13663): a pre-norm bidirectional encoder with no learned positions and, by
default, no biases (§2.1.1). The token embedding goes through a LayerNorm (`embeddings.norm`), so block 0 has no
norm before its attention (first_mixer_norm=False); q, k, v are one fused `Wqkv` (rows q, k, v, as our
qkv_proj); the MLP is a GeGLU whose fused `Wi` holds the activated half first, then the linear half (our
gate_up); a `final_norm` closes the stack. Attention alternates (§2.1.2): every `global_attn_every_n_layers`-th
layer (i % n == 0) is global, RoPE base `global_rope_theta`, the others a bidirectional local window of
`local_attention` tokens in all (each token sees local_attention // 2 either side: our sliding_window =
local_attention // 2 + 1), RoPE base `local_rope_theta`; transformers 5 writes these as `layer_types` and
`rope_parameters` keyed by layer type. Heads: the MLM head (`head`: dense -> GELU -> LayerNorm, then the tied
`decoder` with its bias), and the sequence and token classifiers, which read through the same kind of `head`
(classifier_transform) and then a `classifier` with a bias; the sequence classifier pools the first token or
the mean over real tokens (`classifier_pooling`). ModernBertModel (the body of embedding models built on it)
reads as head `embed`. Dropouts are not read (inference is unaffected)."""
from __future__ import annotations

from ..config import LAYER_FIELDS, ModelConfig
from ..errors import LlmarchError
from ..layers.ffn import FFN_ACTIVATION
from .activations import HF_GATED_ACTIVATIONS, PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule
from .qwen3 import FULL, SLIDING

_L = "model.layers.{i}."
_W = ("weight", "bias")
_LAYER = [("attn_norm", "ln1"), ("attn.Wqkv", "attn.qkv_proj"), ("attn.Wo", "attn.o_proj"), ("mlp_norm", "ln2"),
          ("mlp.Wi", "mlp.gate_up"), ("mlp.Wo", "mlp.down")]
RULES = [
    Rule.of("model.embeddings.tok_embeddings.weight", "embed.weight"),
    *[Rule.of(f"model.embeddings.norm.{w}", f"embed_norm.{w}") for w in _W],
    # block 0's attn_norm is an Identity in transformers and absent in ours: its rules are skipped both ways
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"model.final_norm.{w}", f"ln_final.{w}") for w in _W],
    *[Rule.of(f"head.{part}.{w}", f"head_transform.{part}.{w}") for part in ("dense", "norm") for w in _W],
    *[Rule.of(f"decoder.{w}", f"lm_head.{w}") for w in _W],
]
_CLASSIFIER = [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]
# a tied decoder.weight, where a file stores it, is the embedding again (an untied one is read by its rule)
IGNORE = (r"^decoder\.weight$",)
# hidden_activation names a gated FFN (ModernBertMLP: act(input) * gate), classifier_activation the head's
_GATED = sorted(set(HF_GATED_ACTIVATIONS.values()))
THETA = {FULL: 160_000.0, SLIDING: 10_000.0}  # ModernBertConfig.default_theta: global, local
_LEGACY_THETA = {FULL: "global_rope_theta", SLIDING: "local_rope_theta"}  # config.json before transformers 5


def _rope(hf: dict, kind: str) -> dict:
    """Our RoPE fields for one layer type: transformers 5's rope_parameters[kind], or an older config's
    global_rope_theta / local_rope_theta, with rope_scaling (if any) applied to both types, as transformers does."""
    params = {**(hf.get("rope_scaling") or {}), **((hf.get("rope_parameters") or {}).get(kind) or {})}
    params.setdefault("rope_theta", hf.get(_LEGACY_THETA[kind], THETA[kind]))
    fields = rope_fields({"max_position_embeddings": hf.get("max_position_embeddings", 8192),
                          "rope_parameters": params})
    return {k: v for k, v in fields.items() if k.startswith("rope_")}


def _layer_types(hf: dict) -> list[str]:
    n = hf["num_hidden_layers"]
    every = hf.get("global_attn_every_n_layers", 3)
    types = list(hf.get("layer_types") or [SLIDING if i % every else FULL for i in range(n)])
    if set(types) - {FULL, SLIDING} or len(types) != n:
        raise LlmarchError(f"modernbert: layer_types must give {FULL} or {SLIDING} for each of the {n} layers, "
                           f"got {types}")
    return types


def to_config(hf: dict) -> ModelConfig:
    ffn = read_activation(hf, "modernbert", "hidden_activation", "gelu", HF_GATED_ACTIVATIONS)
    if read_activation(hf, "modernbert", "classifier_activation", "gelu") != FFN_ACTIVATION[ffn]:
        act, head_act = hf.get("hidden_activation", "gelu"), hf.get("classifier_activation", "gelu")
        raise LlmarchError(f"modernbert: classifier_activation {head_act!r} differs from hidden_activation {act!r}; "
                           "llmarch's head transform uses the MLP's activation")
    if hf.get("attention_bias", False) != hf.get("mlp_bias", False):
        raise LlmarchError("modernbert: attention_bias and mlp_bias differ; llmarch ties Wo's bias to the MLP's")
    pooling = hf.get("classifier_pooling", "cls")
    if pooling not in ("cls", "mean"):
        raise LlmarchError(f"modernbert: classifier_pooling {pooling!r} is not supported (cls, mean)")
    types, pad = _layer_types(hf), hf.get("pad_token_id", 50283)
    full, local = _rope(hf, FULL), _rope(hf, SLIDING)
    cfg = ModelConfig(name=hf.get("_name_or_path") or "modernbert", hf_model_type="modernbert",
                      vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                      n_heads=hf["num_attention_heads"], ffn=ffn, ffn_hidden=hf["intermediate_size"],
                      norm="layernorm", norm_eps=hf.get("norm_eps", 1e-5), norm_bias=hf.get("norm_bias", False),
                      norm_placement="pre", first_mixer_norm=False, final_norm=True, positions="rope",
                      causal=False, embed_norm=True, bias=hf.get("mlp_bias", False),
                      qkv_bias=hf.get("attention_bias", False), head_transform=True,
                      head_transform_bias=hf.get("classifier_bias", False), head_bias=hf.get("decoder_bias", True),
                      classifier_transform=True, pooling=pooling, tie_embeddings=hf.get("tie_word_embeddings", True),
                      pad_id=pad if isinstance(pad, int) else 0,
                      context_length=hf.get("max_position_embeddings", 8192), **full)
    if SLIDING not in types:
        return cfg
    # the local layers: a window, and every RoPE field in which they differ from the global ones (their base)
    sliding = {k: v for k, v in local.items() if getattr(cfg, k) != v and k in LAYER_FIELDS}
    window = hf.get("local_attention", 128) // 2 + 1
    return cfg.replace(layer_types=types, layer_overrides={SLIDING: {"sliding_window": window, **sliding}})


def needs_layout(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' ModernBERT cannot compute, or None."""
    overrides = cfg.layer_overrides or {}
    local = overrides.get(SLIDING, {})
    needs = [("a bidirectional encoder (causal=False)", not cfg.causal),
             ("pre-norm LayerNorm blocks, a final norm, an embedding norm and no norm before block 0's attention",
              cfg.norm == "layernorm" and cfg.norm_placement == "pre" and cfg.final_norm and cfg.embed_norm
              and not cfg.first_mixer_norm and cfg.block == "sequential"),
             ("positions='rope' over whole heads of d_model / n_heads, multi-head attention",
              cfg.positions == "rope" and cfg.rope_fraction == 1.0 and cfg.head_dim * cfg.n_heads == cfg.d_model
              and cfg.n_kv_heads == cfg.n_heads),
             (f"a gated ffn ({', '.join(_GATED)})", cfg.ffn in _GATED),
             ("bias = qkv_bias", cfg.bias == cfg.qkv_bias),
             ("the head transform (lm) or the classifier transform (classify, tokens)",
              cfg.head_transform if cfg.head == "lm" else cfg.classifier_transform),
             ("pooling 'cls' or 'mean'", cfg.head != "classify" or cfg.pooling in ("cls", "mean")),
             (f"layer types {FULL} and {SLIDING} (a window and RoPE fields) and no top-level window",
              cfg.sliding_window is None and set(cfg.layer_types or [FULL]) <= {FULL, SLIDING}
              and set(overrides) <= {SLIDING} and (not local or "sliding_window" in local)
              and all(k == "sliding_window" or k.startswith("rope_") for k in local)),
             ("no token types, experts, QK-norm, softcaps, scalars or attn_scale",
              not (cfg.type_vocab_size or cfg.n_experts or cfg.embed_scale or cfg.head_scale or cfg.attn_softcap
                   or cfg.final_softcap or cfg.attn_sinks or cfg.attn_output_gate) and cfg.qk_norm == "none"
              and cfg.attn_scale is None and cfg.position_offset == 0 and cfg.mixer == "attention"
              and cfg.attention == "full" and (cfg.embed_multiplier, cfg.residual_multiplier) == (1.0, 1.0))]
    return next((need for need, ok in needs if not ok), None)


def _every(types: list[str]) -> int | None:
    """global_attn_every_n_layers where the types follow that pattern (older transformers read only it)."""
    return next((n for n in range(1, len(types) + 1)
                 if types == [SLIDING if i % n else FULL for i in range(len(types))]), None)


def from_config(cfg: ModelConfig) -> dict:
    types = cfg.layer_types or [FULL] * cfg.n_layers
    local = cfg.for_layer(types.index(SLIDING)) if SLIDING in types else cfg
    act = hf_activation(FFN_ACTIVATION[cfg.ffn], PYTORCH_TANH)
    out = dict(model_type="modernbert", architectures=["ModernBertForMaskedLM"], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, hidden_activation=act, classifier_activation=act,
               max_position_embeddings=cfg.context_length, norm_eps=cfg.norm_eps, norm_bias=cfg.norm_bias,
               attention_bias=cfg.qkv_bias, mlp_bias=cfg.bias, classifier_bias=cfg.head_transform_bias,
               decoder_bias=cfg.head_bias, classifier_pooling=cfg.pooling if cfg.pooling == "mean" else "cls",
               tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id, layer_types=list(types),
               local_attention=2 * (local.sliding_window - 1) if SLIDING in types else 128,  # all global: unread
               rope_parameters={FULL: rope_parameters(cfg), SLIDING: rope_parameters(local)},
               global_rope_theta=cfg.rope_theta, local_rope_theta=local.rope_theta)
    every = _every(types)
    if every is not None:
        out["global_attn_every_n_layers"] = every
    return out


FAMILIES.register("modernbert")(Family(RULES, to_config, from_config, IGNORE, needs=needs_layout,
                                       heads={"classify": ("ModernBertForSequenceClassification", _CLASSIFIER),
                                              "tokens": ("ModernBertForTokenClassification", _CLASSIFIER)},
                                       base_prefix="model."))
