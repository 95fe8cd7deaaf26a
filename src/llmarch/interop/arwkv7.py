"""ARWKV-7 (`model_type: arwkv7`, llmarch's name; RWKV-Red-Team's RwkvHybridForCausalLM, which llama.cpp's converter
writes as GGUF `arwkv7`): RWKV-7's time mixing (mixer "rwkv7", layers/rwkv7.py) in place of attention in Qwen2.5's
blocks: RMSNorm `input_layernorm`, the time mixing (`attention.*`, named as the rwkv7 table names them, without the
token shift's channel mixing: one token shift a layer), RMSNorm `post_attention_layernorm`, a SwiGLU `mlp`; no
positions, no norm over the embeddings, `model.norm`, `lm_head`. config.json: hidden_size, head_size, rms_norm_eps,
intermediate_size, `wkv_has_gate` (the output gate and its lerp: rwkv7_gate) and `wkv_has_group_norm` (ln_x:
rwkv7_group_norm; llmarch's key, llama.cpp reads it from the tensors present), the LoRA ranks as rwkv7's."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import RULES as LLAMA_RULES
from .mapping import Rule
from .rwkv7 import given_ranks, time_rules, written_ranks

_KEPT = ("model.embed_tokens.", "model.layers.{i}.mlp.", "model.layers.{i}.input_layernorm.",
         "model.layers.{i}.post_attention_layernorm.", "model.norm.", "lm_head.")
RULES = [r for r in LLAMA_RULES if r.hf[0].startswith(_KEPT)]


def block_rules(cfg: ModelConfig) -> list[Rule]:
    return [r for j in range(cfg.n_layers) for r in time_rules(f"model.layers.{j}.", f"blocks.{j}.", j)]


def to_config(hf: dict) -> ModelConfig:
    d, head = hf["hidden_size"], hf["head_size"]
    if d % head:
        raise LlmarchError(f"arwkv7: hidden_size {d} is not a multiple of head_size {head}")
    if hf.get("wkv_version", 7) != 7:
        raise LlmarchError(f"arwkv7: wkv_version {hf['wkv_version']} is not supported (7 only)")
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "arwkv7", hf_model_type="arwkv7", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=hf["num_hidden_layers"], n_heads=d // head, head_dim=head, mixer="rwkv7", ffn="swiglu",
        ffn_hidden=hf["intermediate_size"], norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), norm_bias=False,
        positions="none", bias=False, tie_embeddings=hf.get("tie_word_embeddings", False),
        context_length=hf.get("max_position_embeddings", 4096), eos_id=eos if isinstance(eos, int) else None,
        rwkv7_gate=hf.get("wkv_has_gate", True), rwkv7_group_norm=hf.get("wkv_has_group_norm", True),
        **given_ranks(hf))


_NEEDS = dict(mixer="rwkv7", attn_period=0, ffn="swiglu", norm="rmsnorm", norm_placement="pre", block="sequential",
              positions="none", embed_norm=False, embed_scale=False, embed_multiplier=1.0, residual_multiplier=1.0,
              logit_divisor=1.0, head_bias=False, final_norm=True, final_softcap=None, final_norm_eps=None,
              bias=False, layer_types=None, rwkv7_group_norm_eps=64e-5)


def _unexpressible(cfg: ModelConfig) -> str | None:
    return next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)


def from_config(cfg: ModelConfig) -> dict:
    out = dict(architectures=["RwkvHybridForCausalLM"], model_type="arwkv7", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, head_size=cfg.head_dim, intermediate_size=cfg.ffn_hidden,
               num_hidden_layers=cfg.n_layers, rms_norm_eps=cfg.norm_eps, wkv_version=7, wkv_has_gate=cfg.rwkv7_gate,
               wkv_has_group_norm=cfg.rwkv7_group_norm, tie_word_embeddings=cfg.tie_embeddings,
               max_position_embeddings=cfg.context_length, **written_ranks(cfg))
    if not cfg.rwkv7_gate:
        out["lora_rank_gate"] = 0  # as the converter writes a gateless model's
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("arwkv7")(Family(RULES, to_config, from_config, needs=_unexpressible, more_rules=block_rules))
