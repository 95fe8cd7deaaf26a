"""T5Gemma (`model_type: t5gemma`; Zhang et al. 2025, "Encoder-Decoder Gemma: Improving the Quality-Efficiency
Trade-Off via Adaptation"): an encoder-decoder adapted from Gemma 2 checkpoints. Both stacks are Gemma 2 stacks
(gemma2.py: offset RMSNorm gains, sandwich norms, embeddings times sqrt(d_model), tanh-GELU GeGLU, GQA, RoPE,
scores scaled by query_pre_attn_scalar^-0.5 and soft-capped, sliding and full layers alternating); the encoder's
attention is bidirectional, and each decoder block adds cross-attention between its self-attention and its FFN,
with the same sandwich norms (pre_ and post_cross_attn_layernorm), scale, cap and GQA. The decoder's embedding
is the tied head's, whose logits are soft-capped at final_logit_softcapping; the encoder has an embedding table of
its own (encoder_embed).
Each stack's sub-config (`encoder`, `decoder`) may in principle differ in shape (the unbalanced 9B-2B model);
llmarch builds both from one config, so they may differ in their number of layers and layer types only.
transformers' bidirectional sliding-window mask admits keys with |i - j| <= sliding_window (2w + 1 of them) where
the causal one admits j in (i - w, i]: the encoder's sliding layers are their own layer type
(`bidirectional_sliding_attention`) whose window is w + 1 in our |i - j| < w convention."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .gemma2 import DEFAULTS, IGNORE, SLIDING, gemma_like_config, gemma_like_hf
from .hf import FAMILIES, Family
from .mapping import Rule

BIDI = "bidirectional_sliding_attention"
# fields a stack's config may hold apart from the other's
_PER_STACK = {"name", "n_layers", "layer_types", "layer_overrides", "causal"}


def stack_rules(part: str) -> list[Rule]:
    hf, ours = f"model.{part}.layers.{{i}}.", f"{part}.blocks.{{i}}."
    norms = dict(pre_self_attn="ln1", post_self_attn="post_ln1", pre_feedforward="ln2", post_feedforward="post_ln2")
    if part == "decoder":
        norms.update(pre_cross_attn="ln_cross", post_cross_attn="post_ln_cross")
    rules = [
        Rule.of(f"model.{part}.embed_tokens.weight", "encoder_embed.weight" if part == "encoder" else "embed.weight"),
        Rule.of(tuple(hf + f"self_attn.{p}_proj.weight" for p in "qkv"), ours + "attn.qkv_proj.weight"),
        Rule.of(hf + "self_attn.o_proj.weight", ours + "attn.o_proj.weight"),
        Rule.of((hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"), ours + "mlp.gate_up.weight"),
        Rule.of(hf + "mlp.down_proj.weight", ours + "mlp.down.weight"),
        *[Rule.of(hf + f"{theirs}_layernorm.weight", ours + f"{mine}.weight") for theirs, mine in norms.items()],
        Rule.of(f"model.{part}.norm.weight", f"{part}.ln_final.weight"),
    ]
    if part == "decoder":
        rules += [Rule.of(hf + "cross_attn.q_proj.weight", ours + "cross_attn.q_proj.weight"),
                  Rule.of((hf + "cross_attn.k_proj.weight", hf + "cross_attn.v_proj.weight"),
                          ours + "cross_attn.kv_proj.weight"),
                  Rule.of(hf + "cross_attn.o_proj.weight", ours + "cross_attn.o_proj.weight")]
    return rules


RULES = [*stack_rules("encoder"), *stack_rules("decoder"), Rule.of("lm_head.out_proj.weight", "lm_head.weight")]


def _module_config(sub: dict) -> ModelConfig:
    """One stack's T5GemmaModuleConfig as a Gemma 2 config."""
    if sub.get("attention_bias"):
        raise LlmarchError("t5gemma with attention_bias is not supported")
    return gemma_like_config({**sub, "model_type": "t5gemma"}, DEFAULTS, period=2)


def to_config(hf: dict) -> ModelConfig:
    enc, dec = _module_config(hf["encoder"]), _module_config(hf["decoder"])
    differ = sorted(k for k, v in enc.to_dict().items() if k not in _PER_STACK and v != getattr(dec, k))
    if differ:
        raise LlmarchError(f"t5gemma whose encoder and decoder differ in {differ[0]} (beyond their layers) is not "
                           f"supported")
    types = [BIDI if t == SLIDING else t for t in enc.layer_types] + dec.layer_types
    overrides = {}
    if SLIDING in enc.layer_types:
        overrides[BIDI] = {"sliding_window": enc.for_layer(enc.layer_types.index(SLIDING)).sliding_window + 1}
    if SLIDING in dec.layer_types:
        overrides[SLIDING] = {"sliding_window": dec.for_layer(dec.layer_types.index(SLIDING)).sliding_window}
    sub = hf["decoder"]
    eos = hf.get("eos_token_id", sub.get("eos_token_id", 1))
    return dec.replace(
        name=hf.get("_name_or_path") or "t5gemma", n_layers=enc.n_layers, n_decoder_layers=dec.n_layers,
        layer_types=types, layer_overrides=overrides or None, encoder_embed=True,
        tie_embeddings=hf.get("tie_word_embeddings", True) is not False, pad_id=hf.get("pad_token_id", 0),
        eos_id=eos[0] if isinstance(eos, list) else eos,  # the first of several: generation's default
        decoder_start_id=hf.get("decoder_start_token_id") or hf.get("bos_token_id", sub.get("bos_token_id", 2)))


def _module_hf(cfg: ModelConfig, part: str) -> dict:
    """One stack's T5GemmaModuleConfig, checked to read back as the same stack."""
    stack = cfg.stack_config(part)
    if stack.layer_types is not None and BIDI in stack.layer_types:  # back to transformers' window
        over = dict(stack.layer_overrides)
        window = over.pop(BIDI)["sliding_window"] - 1
        stack = stack.replace(layer_types=[SLIDING if t == BIDI else t for t in stack.layer_types],
                              layer_overrides={**over, SLIDING: {"sliding_window": window}})
    out = gemma_like_hf(stack, lambda hf: _module_config(hf).replace(causal=stack.causal))
    out.update(is_decoder=part == "decoder", pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id,
               bos_token_id=cfg.decoder_start_id)
    return out


def from_config(cfg: ModelConfig) -> dict:
    if not cfg.encoder_embed or cfg.head_scale:
        raise LlmarchError("model_type t5gemma needs encoder_embed=True (a table per stack) and head_scale=False")
    enc, dec = _module_hf(cfg, "encoder"), _module_hf(cfg, "decoder")
    return dict(model_type="t5gemma", architectures=["T5GemmaForConditionalGeneration"], encoder=enc, decoder=dec,
                vocab_size=cfg.vocab_size, tie_word_embeddings=cfg.tie_embeddings, is_encoder_decoder=True,
                pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id, bos_token_id=cfg.decoder_start_id,
                decoder_start_token_id=cfg.decoder_start_id)


FAMILIES.register("t5gemma")(Family(RULES, to_config, from_config, IGNORE))
