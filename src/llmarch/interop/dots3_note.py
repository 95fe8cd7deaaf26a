"""dots.llm3 Note (`model_type: dots3_note_text`, the text model of the `dots3_note` checkpoints): DeepSeek-V3.2's
layout (deepseek_v32.py: latent attention with compressed queries and interleaved RoPE, DeepSeek-V3's grouped sigmoid
router with an expert bias, shared experts, dense first layers by mlp_layer_types) with GLM-5's indexer (its RoPE in
interleaved pairs: layout `dsa_pairs`) on the `indexed_attention` layers, and in every latent attention: the normed
query and KV latents times sqrt(d_model / rank) (mla_lora_scale), the shared RoPE key through its own RMSNorm
(mla_rope_key_norm, `k_rope_only_layernorm`), a sigmoid gate per head from the layer's input before o_proj
(attn_head_gate, `g_proj`), and the latents' norms at rms_norm_eps (mla_latent_eps). Layers of type
`sliding_attention` attend over a window of sliding_window slots (latent attention of kind `sliding_window`) with
RoPE of their own base; `full_attention` layers (use_dsa false) have no indexer. The shared experts are one SwiGLU
of n_shared_experts * shared_experts_intermediate_size. Sliding-window layers whose latent-attention shape differs
from the others' (swa_* in config.json, or a non-empty per_layer_config) are refused, as is RoPE scaling. The
vision and audio towers of `dots3_note` are not read: that model_type is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, _interleaved, deepseek_config, deepseek_hf, dense_first, v3_router_fields
from .deepseek_v32 import dsa_rules
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

IDX, FULL, SWA = "indexed_attention", "full_attention", "sliding_attention"
_SWA = {"num_attention_heads": 64, "q_lora_rank": 1024, "kv_lora_rank": 1024, "qk_nope_head_dim": 192,
        "v_head_dim": 128}  # transformers' defaults for the swa_* fields of a config.json without per_layer_config
LAYOUTS["mla_rope"] = (lambda t, cfg: t[_interleaved(cfg.head_dim, True)],
                       lambda t, cfg: t[_interleaved(cfg.head_dim, False)], lambda s: s)
_A = "model.layers.{i}.self_attn."
RULES = dsa_rules("dsa_pairs") + [Rule.of(_A + "g_proj.weight", "blocks.{i}.attn.g_proj.weight"),
                                  Rule.of(_A + "k_rope_only_layernorm.weight", "blocks.{i}.attn.k_rope_norm.weight",
                                          "mla_rope")]


def layer_types(hf: dict) -> list[str]:
    """Each layer's attention type, as Dots3NoteTextConfig derives it (use_dsa, use_sliding_window)."""
    use_dsa = hf.get("use_dsa", None if "per_layer_config" in hf else True)
    types = hf.get("layer_types")
    if types is None:
        window = hf.get("use_sliding_window", True)
        types = [(FULL if use_dsa is False else IDX) if not window or i < 2 or i % 4 == 1 else SWA
                 for i in range(hf["num_hidden_layers"])]
    if use_dsa is not None:
        old, new = (FULL, IDX) if use_dsa else (IDX, FULL)
        types = [new if t == old else t for t in types]
    if set(types) - {IDX, FULL, SWA}:
        raise LlmarchError(f"dots3_note_text: unknown layer type {sorted(set(types) - {IDX, FULL, SWA})[0]!r}")
    return list(types)


def _check_shapes(hf: dict, types: list[str]) -> None:
    """One latent-attention shape in every layer."""
    if "per_layer_config" in hf:
        differ = any(hf["per_layer_config"].values()) if isinstance(hf["per_layer_config"], dict) else True
    else:
        swa = {k: hf.get("swa_" + k, v) for k, v in _SWA.items()}
        differ = SWA in types and (any(swa[k] != hf.get(k) for k in _SWA) or hf.get(
            "swa_qk_rope_head_dim", hf.get("swa_head_dim", 256) - swa["qk_nope_head_dim"]) != hf["qk_rope_head_dim"])
    if differ:
        raise LlmarchError("dots3_note_text: sliding-window layers with a latent-attention shape of their own (swa_*, "
                           "per_layer_config) are not supported")


def _thetas(hf: dict) -> dict:
    """Each layer type's RoPE base; only default RoPE."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling")
    if not params:
        params = {IDX: {"rope_theta": hf.get("rope_theta", 80_000_000.0)}, SWA: {"rope_theta": hf.get(
            "swa_rope_theta", 50_000.0)}}
    if "rope_theta" in params or "rope_type" in params:  # one set for every type
        params = {t: params for t in (IDX, FULL, SWA)}
    if any(p.get("rope_type", "default") != "default" for p in params.values()):
        raise LlmarchError("dots3_note_text: RoPE scaling (rope_type other than default) is not supported")
    main = params.get(IDX) or params.get(FULL) or params[SWA]
    return {t: float(params.get(t, main)["rope_theta"]) for t in (IDX, FULL, SWA)}


def to_config(hf: dict) -> ModelConfig:
    if hf.get("q_lora_rank") is None:
        raise LlmarchError("dots3_note_text needs q_lora_rank (compressed queries)")
    if hf.get("moe_layer_freq", 1) != 1:
        raise LlmarchError("dots3_note_text: moe_layer_freq other than 1 is not supported (use mlp_layer_types)")
    types = layer_types(hf)
    _check_shapes(hf, types)
    theta = _thetas(hf)
    n_shared = int(hf.get("n_shared_experts") or 0)
    if n_shared < 1:
        raise LlmarchError("dots3_note_text needs at least one shared expert (n_shared_experts)")
    flat = {"rope_type": "default", "rope_theta": theta[IDX if IDX in types else FULL]}
    cfg = deepseek_config({**hf, "rope_parameters": flat, "first_k_dense_replace": dense_first(hf)},
                          **v3_router_fields(hf))
    overrides = {FULL: {"dsa_topk": None}} if FULL in types else {}
    if SWA in types:
        window = int(hf.get("sliding_window") or hf.get("sliding_window_size", 512))
        overrides[SWA] = dict(attention="sliding_window", sliding_window=window, rope_theta=theta[SWA], dsa_topk=None)
    dsa = dict(dsa_topk=int(hf.get("index_topk", 2048)), dsa_heads=int(hf.get("index_n_heads", 64)),
               dsa_head_dim=int(hf.get("index_head_dim", 128))) if IDX in types else {}
    shared = int(hf.get("shared_experts_intermediate_size", hf.get("moe_shared_expert_intermediate_size", 1536)))
    return cfg.replace(layer_types=types, layer_overrides=overrides or None, mla_lora_scale=True,
                       mla_rope_key_norm=True, attn_head_gate=True, mla_latent_eps=cfg.norm_eps,
                       shared_hidden=shared * n_shared, **dsa)


def _type(cfg: ModelConfig, i: int) -> str:
    layer = cfg.for_layer(i)
    return SWA if layer.attention == "sliding_window" else IDX if layer.dsa_topk is not None else FULL


def from_config(cfg: ModelConfig) -> dict:
    if not (cfg.mla_lora_scale and cfg.mla_rope_key_norm and cfg.attn_head_gate and cfg.mla_latent_eps == cfg.norm_eps
            and cfg.q_lora_rank is not None and cfg.n_experts and cfg.n_shared_experts
            and cfg.shared_hidden % cfg.n_shared_experts == 0 and cfg.router_scoring == "sigmoid"
            and cfg.expert_bias and cfg.rope_scaling == "none"):
        raise LlmarchError("model_type dots3_note_text needs latent attention with mla_lora_scale, mla_rope_key_norm, "
                           "attn_head_gate and mla_latent_eps = norm_eps, compressed queries, plain RoPE, and "
                           "DeepSeek-V3's sigmoid router with shared experts")
    types = [_type(cfg, i) for i in range(cfg.n_layers)]
    windows = {cfg.for_layer(i).sliding_window for i in range(cfg.n_layers) if types[i] == SWA}
    if len(windows) > 1 or any(cfg.for_layer(i).dsa_shared for i in range(cfg.n_layers)):
        raise LlmarchError("model_type dots3_note_text has one sliding window and no shared indexer layers")
    first = {t: cfg.for_layer(types.index(t)) for t in set(types)}
    out = deepseek_hf(cfg, architectures=["Dots3NoteForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                      layer_types=types, per_layer_config={}, head_dim=cfg.qk_nope_head_dim + cfg.head_dim,
                      pad_token_id=None, bos_token_id=None,  # their defaults, 151659 and 151643, may lie past the vocab
                      mlp_layer_types=["sparse" if cfg.is_moe_layer(i) else "dense" for i in range(cfg.n_layers)],
                      shared_experts_intermediate_size=cfg.shared_hidden // cfg.n_shared_experts,
                      rope_parameters={t: dict(rope_type="default", rope_theta=c.rope_theta) for t, c in first.items()})
    out.pop("first_k_dense_replace", None)
    if windows:
        out["sliding_window"] = windows.pop()
    if IDX in types:
        c = first[IDX]
        out.update(index_topk=c.dsa_topk, index_n_heads=c.dsa_heads, index_head_dim=c.dsa_head_dim)
    return out


def _refuse_wrapper(hf: dict) -> ModelConfig:
    raise LlmarchError("dots3_note (with its vision and audio towers) is not supported; its text model is "
                       "dots3_note_text")


FAMILIES.register("dots3_note_text")(Family(RULES, to_config, from_config, IGNORE + (r"^mtp\.",), mtp=True))
FAMILIES.register("dots3_note")(Family([], _refuse_wrapper, _refuse_wrapper, ()))
