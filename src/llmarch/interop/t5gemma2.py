"""T5Gemma 2 (`model_type: t5gemma2`; Google 2025, "T5Gemma 2: Seeing, Reading, and Understanding Longer"): an
encoder-decoder of Gemma 3 stacks (gemma3.py: QK-norm, sandwich norms, offset RMSNorm, embeddings times
sqrt(d_model), a RoPE base per layer type), T5Gemma's layout (t5gemma.py) with three differences:
- the decoder has no cross-attention: each layer's self-attention attends with one softmax over its own keys and
  the encoder output's, made by the same projections and key norm (no RoPE) ("merged attention": our attention
  kind 'merged', layers/attention_kinds/merged.py); its sliding layers window their own keys only;
- the encoder's sliding layers are bidirectional with a window of w keys around the query, (w + 1) // 2 behind
  (itself among them) and w // 2 ahead (our sliding_window and window_ahead on their layer type, `bidi_sliding`);
- one embedding table for encoder, decoder and head; with tie_word_embeddings false, one each (encoder_embed).
The encoder's text config is encoder.text_config; its vision tower and projector (SigLIP, for image tokens) are not
read, nor eoi_embedding, the end-of-image token's input embedding: text has no image tokens, and an id
eoi_token_index in a text input is read with its table row as any other. The stacks may differ in their layer
count and layer types only."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .gemma2 import FULL, SLIDING, gemma_like_hf
from .gemma3 import text_config
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_parameters
from .mapping import Rule

BIDI, MERGED, MERGED_SLIDING = "bidi_sliding", "merged_attention", "merged_sliding"
# fields a stack's config may hold apart from the other's (the encoder's final_logit_softcapping is not read)
_PER_STACK = {"name", "n_layers", "layer_types", "layer_overrides", "causal", "final_softcap"}
_VISION = (r"^model\.encoder\.(vision_tower|multi_modal_projector)\.", r"embed_tokens\.eoi_embedding$")


def stack_rules(part: str) -> list[Rule]:
    hf, ours = f"model.{part}.layers.{{i}}.", f"{part}.blocks.{{i}}."
    norms = dict(pre_self_attn="ln1", post_self_attn="post_ln1", pre_feedforward="ln2", post_feedforward="post_ln2")
    return [
        Rule.of(tuple(hf + f"self_attn.{p}_proj.weight" for p in "qkv"), ours + "attn.qkv_proj.weight"),
        Rule.of(hf + "self_attn.o_proj.weight", ours + "attn.o_proj.weight"),
        Rule.of(hf + "self_attn.q_norm.weight", ours + "attn.q_norm.weight"),
        Rule.of(hf + "self_attn.k_norm.weight", ours + "attn.k_norm.weight"),
        Rule.of((hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"), ours + "mlp.gate_up.weight"),
        Rule.of(hf + "mlp.down_proj.weight", ours + "mlp.down.weight"),
        *[Rule.of(hf + f"{theirs}_layernorm.weight", ours + f"{mine}.weight") for theirs, mine in norms.items()],
        Rule.of(f"model.{part}.norm.weight", f"{part}.ln_final.weight"),
    ]


RULES = [*stack_rules("encoder"), *stack_rules("decoder"), Rule.of("lm_head.out_proj.weight", "lm_head.weight")]


def embedding_rules(cfg: ModelConfig) -> list[Rule]:
    """One table for both stacks and the head (tied), or, untied, the encoder's, the decoder's and the head's."""
    if not cfg.encoder_embed:
        return [Rule.of("model.encoder.embed_tokens.weight", "embed.weight")]
    return [Rule.of("model.encoder.embed_tokens.weight", "encoder_embed.weight"),
            Rule.of("model.decoder.embed_tokens.weight", "embed.weight")]


def _stack(sub: dict) -> ModelConfig:
    if sub.get("attention_bias"):
        raise LlmarchError("t5gemma2 with attention_bias is not supported")
    return text_config({**sub, "model_type": "t5gemma2"})


def to_config(hf: dict) -> ModelConfig:
    enc, dec = _stack((hf.get("encoder") or {}).get("text_config") or {}), _stack(hf.get("decoder") or {})
    differ = sorted(k for k, v in enc.to_dict().items() if k not in _PER_STACK and v != getattr(dec, k))
    if differ:
        raise LlmarchError(f"t5gemma2 whose encoder and decoder differ in {differ[0]} (beyond their layers) is not "
                           "supported")
    over = {}
    if SLIDING in enc.layer_types:
        local = dict(enc.layer_overrides[SLIDING])
        w = local["sliding_window"]
        over[BIDI] = {**local, "sliding_window": (w + 1) // 2, "window_ahead": w // 2}
    over[MERGED] = {"attention": "merged"}
    if SLIDING in dec.layer_types:
        over[MERGED_SLIDING] = {**dec.layer_overrides[SLIDING], "attention": "merged"}
    types = [BIDI if t == SLIDING else t for t in enc.layer_types] + \
        [MERGED_SLIDING if t == SLIDING else MERGED for t in dec.layer_types]
    eos = hf.get("eos_token_id", 1)
    tied = hf.get("tie_word_embeddings", True) is not False
    return dec.replace(
        name=hf.get("_name_or_path") or "t5gemma2", hf_model_type="t5gemma2", n_layers=enc.n_layers,
        n_decoder_layers=dec.n_layers, layer_types=types, layer_overrides=over,
        tie_embeddings=tied, encoder_embed=not tied,
        pad_id=hf.get("pad_token_id", 0), eos_id=eos[0] if isinstance(eos, list) else eos,
        decoder_start_id=(hf.get("decoder") or {}).get("bos_token_id", hf.get("bos_token_id", 2)))


def _plain(stack: ModelConfig) -> ModelConfig:
    """A stack's config as Gemma 3's: bidirectional and merged layer types back to sliding and full ones."""
    over, types = dict(stack.layer_overrides or {}), []
    for t in stack.layer_types:
        local = dict(over.get(t) or {})
        if t == BIDI:
            ahead = local.pop("window_ahead")
            local["sliding_window"] += ahead  # (w + 1) // 2 behind and w // 2 ahead: w
        elif t not in (MERGED, MERGED_SLIDING, FULL, SLIDING):
            raise LlmarchError(f"model_type t5gemma2 has no layer type {t!r}")
        local.pop("attention", None)
        kind = SLIDING if "sliding_window" in local else FULL
        types.append(kind)
        if kind == SLIDING:
            over[SLIDING] = {**local, "attention": "sliding_window"}
    over = {t: o for t, o in over.items() if t in (SLIDING,)}
    return stack.replace(hf_model_type="gemma3_text", causal=True, layer_types=types, layer_overrides=over or None)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.encoder_embed == cfg.tie_embeddings or cfg.head_scale:
        raise LlmarchError("model_type t5gemma2 has one embedding table for encoder, decoder and a tied head, or "
                           "(untied) one each: encoder_embed=not tie_embeddings, and an unscaled head")
    enc, dec = _plain(cfg.stack_config("encoder")), _plain(cfg.stack_config("decoder"))
    subs = []
    for stack in (enc, dec):
        sliding = next((stack.for_layer(i) for i in range(stack.n_layers) if stack.for_layer(i).attention != "full"),
                       stack)
        out = gemma_like_hf(stack, text_config, rope_parameters={FULL: rope_parameters(stack),
                                                                SLIDING: rope_parameters(sliding)})
        out.update(model_type="t5gemma2_text", pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id,
                   bos_token_id=cfg.decoder_start_id)
        subs.append(out)
    subs[1]["model_type"] = "t5gemma2_decoder"
    return dict(model_type="t5gemma2", architectures=["T5Gemma2ForConditionalGeneration"],
                encoder={"model_type": "t5gemma2_encoder", "text_config": subs[0]}, decoder=subs[1],
                vocab_size=cfg.vocab_size, tie_word_embeddings=cfg.tie_embeddings, is_encoder_decoder=True,
                pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id, bos_token_id=cfg.decoder_start_id)


FAMILIES.register("t5gemma2")(Family(RULES, to_config, from_config, IGNORE + _VISION, more_rules=embedding_rules))
