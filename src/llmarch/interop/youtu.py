"""Youtu-LLM (`model_type: youtu`; Tencent 2025, Youtu-LLM-2B; transformers' YoutuForCausalLM): DeepSeek-V3's
multi-head latent attention (mixer "mla", layers/mla.py; its tensors and interleaved RoPE rows: deepseek_v2.py) in a
dense LLaMA block (RMSNorm, SwiGLU `gate_proj`/`up_proj`/`down_proj`), no experts, the head tied by default. The
model is DeepSeek-V3 with every FFN dense, so the family reuses deepseek_v2.py's rules and config reading whole."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, deepseek_config, deepseek_hf, rules
from .hf import FAMILIES, Family

# YoutuConfig's defaults (Youtu-LLM-2B's) for the fields the latent attention and the head read
_DEFAULTS = dict(kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128,
                 rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=131072)


def to_config(hf: dict) -> ModelConfig:
    hf = {**_DEFAULTS, **hf}  # a null given stays null: q_lora_rank (one q_proj)
    if hf.get("rope_interleave") is False:  # the config's default is true, as Youtu-LLM-2B's
        raise LlmarchError("youtu with rope_interleave false is not supported")
    if hf.get("n_routed_experts"):
        raise LlmarchError("youtu has no experts (n_routed_experts must be unset)")
    return deepseek_config(hf)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts:
        raise LlmarchError("model_type youtu has dense FFNs only (n_experts 0)")
    out = deepseek_hf(cfg, architectures=["YoutuForCausalLM"], rope_interleave=True)
    for key in ("n_routed_experts", "first_k_dense_replace"):
        out.pop(key)
    return out


FAMILIES.register("youtu")(Family(rules(interleaved=True), to_config, from_config, IGNORE))
