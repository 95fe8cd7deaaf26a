"""QRWKV6 (`model_type: rwkv6qwen2`, llmarch's name for RWKV6Qwen2ForCausalLM, the layout llama.cpp's converter reads
and writes as GGUF `rwkv6qwen2`; Recursal's Qwen2.5 conversions): RWKV-6's time mixing in QRWKV's form (mixer
"rwkv6" with rwkv6_qrwkv, layers/rwkv6.py: no bonus, no group norm, a sigmoid gate, keys and values of
num_key_value_heads heads) in place of attention in Qwen2.5's blocks: RMSNorm `input_layernorm`, the time mixing
(`self_attn.*`: the token shifts, LoRAs and decay under rwkv6's names, `q_proj` (receptance), `k_proj`, `v_proj`
with biases (attention_bias, default true as Qwen2's), `o_proj`, `gate`), RMSNorm `post_attention_layernorm`, a
SwiGLU `mlp`; no positions, `model.norm`, `lm_head`. The token-shift LoRA's five slices are stored r k v w g (the
converter reorders them to llama.cpp's w k v r g: layouts rkvwg_columns and rkvwg_rows). config.json: hidden_size,
num_attention_heads, num_key_value_heads, rms_norm_eps, intermediate_size, lora_rank_tokenshift and lora_rank_decay
(else the converter's 32 and 64, 64 and 128 from width 4096). transformers has none of it: its only check is
llmarch -> GGUF -> llama.cpp."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .llama import RULES as LLAMA_RULES
from .mapping import Rule

_KEPT = ("model.embed_tokens.", "model.layers.{i}.mlp.", "model.layers.{i}.input_layernorm.",
         "model.layers.{i}.post_attention_layernorm.", "model.norm.", "lm_head.")
RULES = [r for r in LLAMA_RULES if r.hf[0].startswith(_KEPT)]
_TIME = ("time_maa_x", "time_maa_w", "time_maa_k", "time_maa_v", "time_maa_r", "time_maa_g", "time_decay",
         "time_decay_w1", "time_decay_w2")  # the lerps in the ddlerp's order: GGUF fuses them so
_PROJ = (("q_proj", "receptance"), ("k_proj", "key"), ("v_proj", "value"))
_BIAS = ("weight", "bias")


def default_ranks(d: int) -> tuple[int, int]:
    """The converter's (token shift, decay) LoRA ranks where config.json gives none."""
    return (64, 128) if d >= 4096 else (32, 64)


def block_rules(cfg: ModelConfig) -> list[Rule]:
    rules = []
    for j in range(cfg.n_layers):
        hf, ours = f"model.layers.{j}.self_attn.", f"blocks.{j}.mixer."
        rules += [Rule.of(hf + p, ours + p) for p in _TIME]
        rules += [Rule.of(hf + "time_maa_w1", ours + "time_maa_w1", "rkvwg_columns"),
                  Rule.of(hf + "time_maa_w2", ours + "time_maa_w2", "rkvwg_rows")]
        rules += [Rule.of(hf + f"{p}.{w}", ours + f"{q}.{w}") for p, q in _PROJ for w in _BIAS]
        rules += [Rule.of(hf + "o_proj.weight", ours + "output.weight"),
                  Rule.of(hf + "gate.weight", ours + "gate.weight")]
    return rules


def to_config(hf: dict) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    mix, decay = default_ranks(d)
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "rwkv6qwen2", hf_model_type="rwkv6qwen2", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads, head_dim=d // heads,
        n_kv_heads=hf.get("num_key_value_heads", heads), mixer="rwkv6", rwkv6_qrwkv=True, ffn="swiglu",
        ffn_hidden=hf["intermediate_size"], norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), norm_bias=False,
        positions="none", bias=False, qkv_bias=hf.get("attention_bias", True), ssm_chunk=16,
        tie_embeddings=hf.get("tie_word_embeddings", False), context_length=hf.get("max_position_embeddings", 4096),
        eos_id=eos if isinstance(eos, int) else None, rwkv6_mix_rank=hf.get("lora_rank_tokenshift") or mix,
        rwkv6_decay_rank=hf.get("lora_rank_decay") or decay)


_NEEDS = dict(mixer="rwkv6", rwkv6_qrwkv=True, attn_period=0, ffn="swiglu", norm="rmsnorm", norm_placement="pre",
              block="sequential", positions="none", embed_norm=False, embed_scale=False, embed_multiplier=1.0,
              residual_multiplier=1.0, logit_divisor=1.0, head_bias=False, final_norm=True, final_softcap=None,
              final_norm_eps=None, bias=False, layer_types=None)


def _unexpressible(cfg: ModelConfig) -> str | None:
    return next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)


def from_config(cfg: ModelConfig) -> dict:
    out = dict(architectures=["RWKV6Qwen2ForCausalLM"], model_type="rwkv6qwen2", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
               intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers, rms_norm_eps=cfg.norm_eps,
               attention_bias=cfg.qkv_bias, lora_rank_tokenshift=cfg.rwkv6_mix_rank,
               lora_rank_decay=cfg.rwkv6_decay_rank, tie_word_embeddings=cfg.tie_embeddings,
               max_position_embeddings=cfg.context_length)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("rwkv6qwen2")(Family(RULES, to_config, from_config, needs=_unexpressible, more_rules=block_rules))
