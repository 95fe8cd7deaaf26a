"""Mistral Large 4 (`model_type: mistral_large4_text`, the text model of the `mistral_large4` vision-language
checkpoints; Mistral AI 2026, Mistral-Large-4-1T-A52B). Mistral Small 4's latent attention and mixture (mistral4.py:
DeepSeek-V3's layout, interleaved RoPE, a softmax router renormalised over the chosen experts and times
routed_scaling_factor, shared experts, dense first layers) with GLM-5's DeepSeek Sparse Attention (glm_moe_dsa.py:
a lightning indexer with interleaved RoPE, `shared` indexer layers), and:
- no compressed query (q_lora_rank None): the attention's q_proj reads the hidden state, and so does the indexer,
  through a LayerNorm of its own (q_input_norm; dsa_query 'hidden');
- every head's queries, the attention's and the indexer's, times a_h ln(1 + p) + b_h learned per head
  (softmax_scaling; attn_log_pos_gain, layers/log_gain.py);
- LeRoPE: the YaRN frequencies times exp(alpha), alpha learned per pair (rotary_emb.alpha; rope_learned_freqs);
- NoPE layers (no_rope_layers 0, by default every 4th): no rotated dims at all, the query's qk_nope_head_dim +
  qk_rope_head_dim dims all plain and kv_a_proj_with_mqa only the latent (mla_no_rope, a layer type), and no RoPE in
  their indexer;
- the latents' RMSNorm at rms_norm_eps (mla_latent_eps) and the logits soft-capped at final_logit_softcapping.
A NoPE layer's query and key rows carry no RoPE, so they load as stored: those rules are given per layer.
Refused: kv_source_layers that share a latent cache between layers, and expert groups (n_group > 1: groups scored
by their two best softmax scores). transformers has no causal-LM class of the text model alone
(MistralLarge4TextModel is its body): the export writes mistral_large4_text with that body and lm_head.weight
beside it, which MistralLarge4TextModel loads (the head left over). Names: as MistralLarge4TextModel saves them
(Mistral's own in part: layers.{i}.attention.wq ...), the wrapper's (tok_embeddings, lerope.alpha, output, w1-w3:
Mistral's consolidated names, which transformers writes back) read as those. The draft head (mtp_dspark.*) is not
read."""
from __future__ import annotations

import re

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import deepseek_config, deepseek_hf, dense_first
from .glm_moe_dsa import indexer_types
from .hf import FAMILIES, Family
from .mapping import Rule

_A, _B = "layers.{i}.attention.", "blocks.{i}.attn."
_PER_LAYER = {"wq.weight": "q_proj.weight", "wkv_a_with_mqa.weight": "kv_a_proj.weight",
              "wkv_a_with_mqa.bias": "kv_a_proj.bias", "indexer.wq_b.weight": "indexer.q_proj.weight",
              "indexer.wk.weight": "indexer.k_proj.weight", "indexer.k_norm.weight": "indexer.k_norm.weight",
              "indexer.k_norm.bias": "indexer.k_norm.bias"}
NOPE = "nope"


def _type(rope: bool, indexer: str) -> str:
    return f"{'rope' if rope else NOPE}_{indexer}"


def to_config(hf: dict) -> ModelConfig:
    n = hf["num_hidden_layers"]
    if int(hf.get("n_group") or 1) > 1:
        raise LlmarchError("mistral_large4_text: n_group > 1 (groups scored by their two best softmax scores) is not "
                           "supported")
    if list(hf.get("kv_source_layers") or range(n)) != list(range(n)):
        raise LlmarchError("mistral_large4_text: kv_source_layers sharing a latent cache between layers is not "
                           "supported")
    if set(hf.get("layer_types") or ["indexed_attention"]) != {"indexed_attention"}:
        raise LlmarchError(f"mistral_large4_text: layer_types {hf['layer_types']} other than indexed_attention")
    rope = hf.get("no_rope_layers") or [int((i + 1) % hf.get("no_rope_layer_interval", 4) != 0) for i in range(n)]
    types = [_type(bool(r), t) for r, t in zip(rope, indexer_types(hf))]
    N, R = int(hf["qk_nope_head_dim"]), int(hf["qk_rope_head_dim"])
    overrides = {t: {**({"positions": "none", "mla_no_rope": True, "qk_nope_head_dim": N + R}
                        if t.startswith(NOPE) else {}),
                     **({"dsa_shared": True} if t.endswith("shared") else {})} for t in dict.fromkeys(types)}
    cfg = deepseek_config({**hf, "q_lora_rank": None, "first_k_dense_replace": dense_first(hf)},
                          router_scoring="softmax", router_renormalize=True)
    return cfg.replace(dsa_topk=int(hf.get("index_topk", 2048)), dsa_heads=int(hf.get("index_n_heads", 32)),
                       dsa_head_dim=int(hf.get("index_head_dim", 128)), dsa_query="hidden", attn_log_pos_gain=True,
                       rope_learned_freqs=True, mla_latent_eps=cfg.norm_eps,
                       final_softcap=float(hf.get("final_logit_softcapping", 30.0)), layer_types=types,
                       layer_overrides={t: o for t, o in overrides.items() if o} or None)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts and (cfg.router_scoring != "softmax" or not cfg.router_renormalize or cfg.expert_bias
                          or cfg.router_groups > 1):
        raise LlmarchError("model_type mistral_large4_text routes by softmax scores renormalised over the chosen "
                           "experts, without an expert bias or groups")
    if not (cfg.dsa_topk and cfg.dsa_query == "hidden" and cfg.attn_log_pos_gain and cfg.rope_learned_freqs
            and cfg.q_lora_rank is None and cfg.final_softcap and cfg.mla_latent_eps == cfg.norm_eps):
        raise LlmarchError("model_type mistral_large4_text needs dsa_topk with dsa_query 'hidden', attn_log_pos_gain, "
                           "rope_learned_freqs, no q_lora_rank, final_softcap and mla_latent_eps = norm_eps")
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    nope = cfg.qk_nope_head_dim + cfg.head_dim
    if cfg.mla_no_rope or any(c.mla_no_rope != (c.positions == "none") or c.positions not in ("rope", "none")
                              or c.qk_nope_head_dim != (nope if c.mla_no_rope else cfg.qk_nope_head_dim)
                              for c in layers):
        raise LlmarchError("model_type mistral_large4_text needs RoPE layers and NoPE layers (mla_no_rope, positions "
                           "'none') whose qk_nope_head_dim is qk_nope_head_dim + head_dim")
    n = cfg.n_layers
    return deepseek_hf(cfg, architectures=["MistralLarge4TextModel"], index_topk=cfg.dsa_topk,
                       index_n_heads=cfg.dsa_heads, index_head_dim=cfg.dsa_head_dim,
                       indexer_types=["shared" if c.dsa_shared else "full" for c in layers],
                       no_rope_layers=[int(not c.mla_no_rope) for c in layers], kv_source_layers=list(range(n)),
                       layer_types=["indexed_attention"] * n, final_logit_softcapping=cfg.final_softcap)


def per_layer_rules(cfg: ModelConfig) -> list[Rule]:
    """The query, latent and indexer projections of each layer: DeepSeek's interleaved RoPE rows reordered on a RoPE
    layer (mla_q, mla_kv_a, dsa_pairs), as stored on a NoPE layer."""
    out = []
    for i in range(cfg.n_layers):
        rope = not cfg.for_layer(i).mla_no_rope
        for theirs, ours in _PER_LAYER.items():
            layout = "mla_q" if theirs == "wq.weight" else "mla_kv_a" if theirs.startswith("wkv_a") else "dsa_pairs"
            out.append(Rule.of((_A + theirs).format(i=i), (_B + ours).format(i=i), layout if rope else "same"))
    return out


_L, _M = "layers.{i}.", "blocks.{i}.mlp."
RULES = [
    Rule.of("embed_tokens.weight", "embed.weight"),
    Rule.of("rotary_emb.alpha", "positions.freq_log_scale"),
    Rule.of(_L + "attention_norm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_A + "kv_a_norm.weight", _B + "kv_a_norm.weight"),
    Rule.of(_A + "wkv_b.weight", _B + "kv_b_proj.weight"),
    *[Rule.of(_A + f"o_proj.{w}", _B + f"o_proj.{w}") for w in ("weight", "bias")],
    *[Rule.of(_A + f"ssmax_scaling.{theirs}", _B + f"gain.{ours}") for theirs, ours in (("s", "scale"), ("b", "bias"))],
    *[Rule.of(_A + f"indexer.ssmax_scaling.{theirs}", _B + f"indexer.gain.{ours}")
      for theirs, ours in (("s", "scale"), ("b", "bias"))],
    *[Rule.of(_A + f"indexer.q_input_norm.{w}", _B + f"indexer.q_norm.{w}") for w in ("weight", "bias")],
    Rule.of(_A + "indexer.weights_proj.weight", _B + "indexer.weights_proj.weight"),
    Rule.of(_L + "ffn_norm.weight", "blocks.{i}.ln2.weight"),
    Rule.of((_L + "feed_forward.gate_proj.weight", _L + "feed_forward.up_proj.weight"), _M + "gate_up.weight"),
    Rule.of(_L + "feed_forward.down_proj.weight", _M + "down.weight"),
    Rule.of(_L + "gate.weight", _M + "router.weight"),
    Rule.of((_L + "experts.{e}.w1.weight", _L + "experts.{e}.w3.weight"), _M + "experts.gate_up"),
    Rule.of(_L + "experts.{e}.w2.weight", _M + "experts.down"),
    Rule.of((_L + "shared_experts.gate_proj.weight", _L + "shared_experts.up_proj.weight"),
            _M + "shared.gate_up.weight"),
    Rule.of(_L + "shared_experts.down_proj.weight", _M + "shared.down.weight"),
    Rule.of("norm.weight", "ln_final.weight"),
    # not in MistralLarge4TextModel, which has no head: the wrapper's `output`, which that class leaves unread
    Rule.of("output.weight", "lm_head.weight"),
]
TEXT = Family(RULES, to_config, from_config, more_rules=per_layer_rules)
FAMILIES.register("mistral_large4_text")(TEXT)

# the wrapper's names (Mistral's own, which transformers writes back) as the text model's
_WRAPPER_NAMES = [(r"^tok_embeddings\.", "embed_tokens."), (r"^lerope\.alpha$", "rotary_emb.alpha"),
                  (r"\.attention\.wo\.", ".attention.o_proj."),
                  (r"\.(feed_forward|shared_experts)\.w1\.", r".\1.gate_proj."),
                  (r"\.(feed_forward|shared_experts)\.w2\.", r".\1.down_proj."),
                  (r"\.(feed_forward|shared_experts)\.w3\.", r".\1.up_proj.")]
_VISION = (r"^(vision_encoder|patch_merger|vision_language_adapter|pre_mm_projector_norm)\.", r"^mtp_dspark\.")


def _text_name(name: str) -> str:
    for pattern, to in _WRAPPER_NAMES:
        name = re.sub(pattern, to, name)
    return name


def wrapper_config(hf: dict) -> ModelConfig:
    text = {"model_type": "mistral_large4_text", **(hf.get("text_config") or {})}
    if text["model_type"] != "mistral_large4_text":
        raise LlmarchError(f"mistral_large4 with a {text['model_type']!r} text model is not supported")
    return to_config({**text, "_name_or_path": hf.get("_name_or_path")})


def _no_export(cfg: ModelConfig) -> dict:
    raise LlmarchError("llmarch holds mistral_large4's text model only; export it with "
                       "hf_model_type='mistral_large4_text'")


FAMILIES.register("mistral_large4")(Family(RULES, wrapper_config, _no_export, _VISION, canonical=_text_name,
                                           more_rules=per_layer_rules))
