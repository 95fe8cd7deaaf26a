"""MPT (`model_type: mpt`; MosaicML 2023, "Introducing MPT-7B"; transformers' MptForCausalLM): a pre-norm decoder
with ALiBi and no position embeddings (Press et al. 2022; MPT's slopes, 2^(-8h/n) with n rounded up to a power of
two and interleaved, are the authors' and BLOOM's: layers/positions.py alibi_slopes), LayerNorms without bias
(`norm_1`, `norm_2`, `norm_f`), q, k, v fused in `Wqkv` in our row order [q | k | v], clamped to +-`clip_qkv`
where given (clip_qkv), scores scaled by `softmax_scale` (attn_scale; None: 1/sqrt(d_h)), an exact-GELU MLP of
`expansion_ratio` x d (`ffn.up_proj`, `ffn.down_proj`), no biases, and the head tied to the embeddings.
transformers' MPT ignores some of the original code's switches; llmarch refuses a config that sets one away from
what the published models use, rather than compute either reading: `attn_config.qk_ln` (LayerNorms on q and k),
`alibi: false` (learned positions instead), `alibi_bias_max` other than 8, `attn_type` multi-query, `prefix_lm`,
`no_bias: false`, `logit_scale`."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "transformer.blocks.{i}."
_LAYER = [("norm_1", "ln1"), ("attn.Wqkv", "attn.qkv_proj"), ("attn.out_proj", "attn.o_proj"), ("norm_2", "ln2"),
          ("ffn.up_proj", "mlp.up"), ("ffn.down_proj", "mlp.down")]
RULES = [
    Rule.of("transformer.wte.weight", "embed.weight"),
    *[Rule.of(_L + f"{hf}.weight", f"blocks.{{i}}.{ours}.weight") for hf, ours in _LAYER],
    Rule.of("transformer.norm_f.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# what transformers' MptForCausalLM computes, beyond the shape fields, softmax_scale and clip_qkv
NEEDS = dict(positions="alibi", alibi_scale=1.0, alibi_bf16=False, norm="layernorm", norm_bias=False,
             norm_placement="pre", final_norm=True, ffn="gelu", bias=False, qkv_bias=False, o_bias=False,
             block="sequential", qk_norm="none", attn_softcap=None, final_softcap=None, embed_scale=False,
             embed_norm=False, embed_multiplier=1.0, residual_multiplier=1.0, logit_divisor=1.0, head_bias=False,
             head_scale=False, head_transform=False, sliding_window=None, attention="full", n_experts=0,
             mixer="attention", layer_types=None, n_decoder_layers=0, type_vocab_size=0, causal=True,
             position_offset=0, attn_output_gate=False, attn_sinks=False, head="lm")
# the original code's switches transformers does not implement, and the value every published MPT has
_FIXED = dict(qk_ln=False, alibi=True, alibi_bias_max=8, attn_type="multihead_attention", prefix_lm=False)


def unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' MPT cannot compute, or None."""
    wrong = next((k for k, v in NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={NEEDS[wrong]!r}"
    if cfg.n_kv_heads != cfg.n_heads or cfg.head_dim * cfg.n_heads != cfg.d_model:
        return "as many key heads as query heads, of d_model / n_heads dims"
    if cfg.ffn_hidden != 4 * cfg.d_model:
        return "ffn_hidden = 4 * d_model (transformers' MptMLP ignores expansion_ratio)"
    return None


def to_config(hf: dict) -> ModelConfig:
    attn = hf.get("attn_config") or {}
    for key, value in _FIXED.items():
        if attn.get(key, value) != value:
            raise LlmarchError(f"mpt: attn_config.{key}={attn[key]!r} is not supported ({value!r})")
    if not hf.get("no_bias", True) or hf.get("logit_scale") is not None:
        raise LlmarchError("mpt: no_bias=false and logit_scale are not supported (transformers ignores both)")
    d, clip, scale = hf["d_model"], attn.get("clip_qkv"), attn.get("softmax_scale")
    drops = {float(hf.get("resid_pdrop") or 0), float(hf.get("emb_pdrop") or 0), float(attn.get("attn_pdrop") or 0)}
    fields = {k: v for k, v in NEEDS.items() if k not in ("attention", "n_decoder_layers", "qkv_bias", "o_bias")}
    return ModelConfig(**fields, name=hf.get("_name_or_path") or "mpt", hf_model_type="mpt",
                       vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["n_layers"], n_heads=hf["n_heads"],
                       ffn_hidden=hf.get("expansion_ratio", 4) * d, norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                       clip_qkv=float(clip) if clip else None, attn_scale=None if scale is None else float(scale),
                       tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_seq_len", 2048),
                       dropout=drops.pop() if len(drops) == 1 else 0.0)


def from_config(cfg: ModelConfig) -> dict:
    # attn_pdrop an int where it is 0: transformers 5's MptAttentionConfig types it `int` (and refuses 0.0)
    attn = dict(_FIXED, clip_qkv=cfg.clip_qkv, softmax_scale=cfg.attn_scale, attn_pdrop=cfg.dropout or 0)
    return dict(model_type="mpt", architectures=["MptForCausalLM"], vocab_size=cfg.vocab_size, d_model=cfg.d_model,
                n_heads=cfg.n_heads, n_layers=cfg.n_layers, expansion_ratio=cfg.ffn_hidden // cfg.d_model,
                max_seq_len=cfg.context_length, layer_norm_epsilon=cfg.norm_eps, attn_config=attn, no_bias=True,
                resid_pdrop=cfg.dropout, emb_pdrop=cfg.dropout,
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("mpt")(Family(RULES, to_config, from_config, needs=unexpressible))
