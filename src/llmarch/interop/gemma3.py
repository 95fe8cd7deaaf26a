"""Gemma 3 (`model_type: gemma3_text`, and the text model of `gemma3`; Gemma Team 2025, "Gemma 3 Technical
Report", §2): Gemma 2's block (gemma2.py: sandwich norms, offset RMSNorm, scaled embeddings,
query_pre_attn_scalar) with
- QK-norm (qk_norm 'head') in place of Gemma 2's attention soft-capping: each head's queries and keys through
  an RMSNorm of the config's kind, here the offset (1 + g) one;
- five sliding layers to one full (sliding_window_pattern 6, or config.json's layer_types), windows of 512
  (1B) or 1024 tokens;
- a RoPE base per layer type: rope_local_base_freq (10k) on sliding layers; rope_theta (1M) with its
  rope_scaling (linear, factor 8, on the 4B-27B models) on full ones. transformers 5 keeps both in
  rope_parameters, keyed by layer type.
transformers' Gemma 3 attention does not apply attn_logit_softcapping, and Gemma3ForConditionalGeneration does
not apply final_logit_softcapping (both null in the published configs): we read the configs as it does.
`gemma3` checkpoints (Gemma3ForConditionalGeneration, the 4B-27B models): the config is text_config, the text
model's weights lie under model.language_model. (as transformers 5 saves them) or language_model.model. (as
published); gemma3_vision.py reads them with their SigLIP tower and projector.
use_bidirectional_attention (EmbeddingGemma, Vera et al. 2025: a gemma3_text Gemma3TextModel, read as head embed
with the sentence-transformers modules beside it, sentence_transformers.py): causal False, and each sliding layer
sees sliding_window // 2 keys on either side (transformers' Gemma3TextConfig and mask; llama.cpp's symmetric
window)."""
from __future__ import annotations

from ..config import LAYER_FIELDS, ModelConfig
from .gemma2 import FULL, RULES as GEMMA2_RULES, SLIDING, gemma_like_config, gemma_like_hf
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
RULES = GEMMA2_RULES + [Rule.of(_L + "self_attn.q_norm.weight", "blocks.{i}.attn.q_norm.weight"),
                        Rule.of(_L + "self_attn.k_norm.weight", "blocks.{i}.attn.k_norm.weight")]
# what the text model of a vision-language checkpoint does not read (Gemma 3, Mistral 3)
VISION = (r"^(model\.)?(vision_tower|multi_modal_projector)\.",)
# what transformers' Gemma3TextConfig assumes for fields a config.json leaves out (the published multimodal
# configs list only the text_config fields that differ from these)
DEFAULTS = dict(model_type="gemma3_text", vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131072, rms_norm_eps=1e-6,
                tie_word_embeddings=True, query_pre_attn_scalar=256, sliding_window=4096,
                final_logit_softcapping=None, attn_logit_softcapping=None)


def _rope(hf: dict) -> tuple[dict, dict]:
    """RoPE fields of the full layers and of the sliding ones."""
    params = hf.get("rope_parameters") or {}
    if FULL in params or SLIDING in params:  # transformers 5: keyed by layer type
        full, local = dict(params.get(FULL) or {}), dict(params.get(SLIDING) or {})
    else:  # published configs: rope_theta + rope_scaling, rope_local_base_freq
        full = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 1e6)}
        local = {"rope_theta": hf.get("rope_local_base_freq", 1e4)}
    full.setdefault("rope_theta", 1e6)
    local.setdefault("rope_theta", 1e4)
    rest = {k: v for k, v in hf.items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    return rope_fields({**rest, "rope_parameters": full}), rope_fields({**rest, "rope_parameters": local})


def text_config(hf: dict, final_softcap: bool = True) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    full, local = _rope(hf)
    bidirectional = bool(hf.pop("use_bidirectional_attention", False))
    if bidirectional and hf.get("sliding_window") is not None:
        # Gemma3TextConfig turns config.json's window w into w // 2 + 1, and its mask lets query i see key j where
        # |i - j| < w // 2 + 1: our bidirectional sliding_window (window_ahead None)
        hf["sliding_window"] = int(hf["sliding_window"]) // 2 + 1
    return gemma_like_config(hf, DEFAULTS, period=int(hf.get("sliding_window_pattern", 6)),
                             sliding_fields={k: v for k, v in local.items() if k in LAYER_FIELDS}, qk_norm="head",
                             attn_softcap=None, hf_model_type="gemma3_text", causal=not bidirectional,
                             **({} if final_softcap else {"final_softcap": None}), **full)


def from_config(cfg: ModelConfig) -> dict:
    sliding = next((cfg.for_layer(i) for i in range(cfg.n_layers) if cfg.for_layer(i).attention != "full"), cfg)
    return gemma_like_hf(cfg, text_config, bidirectional=not cfg.causal, architectures=["Gemma3ForCausalLM"],
                         rope_parameters={FULL: rope_parameters(cfg), SLIDING: rope_parameters(sliding)})


def multimodal_config(hf: dict) -> ModelConfig:
    """The text model of a Gemma3ForConditionalGeneration config, which applies no final soft-capping."""
    return text_config({**(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")},
                       final_softcap=False)


FAMILIES.register("gemma3_text")(Family(RULES, text_config, from_config, IGNORE,
                                        heads={"embed": ("Gemma3TextModel", [])}, base_prefix="model."))
