"""EncoderDecoderModel (`model_type: encoder-decoder`; Rothe et al. 2020, "Leveraging Pre-trained Checkpoints for
Sequence Generation Tasks": BERT2BERT, BERT2GPT2): an encoder and a decoder that are models of their own, composed.
config.json holds their configs as `encoder` and `decoder`; the encoder's tensors are under `encoder.` as its base
model stores them (BertModel, RobertaModel: its pooler is not read), the decoder's under `decoder.` as its causal LM
stores them (BertLMHeadModel, RobertaForCausalLM, GPT2LMHeadModel), its blocks with cross-attention over the
encoder's output (`add_cross_attention`: BERT's `crossattention` after the self-attention, post-norm as the rest of
its block; GPT-2's `crossattention` with its own pre-norm `ln_cross_attn`). Each part is read by its own family
(bert.py, roberta.py, gpt2.py) and their rules are renamed: the config is the encoder's, with the decoder's depth,
vocabulary, positions table and head, and the stack-level fields in which the decoder differs as decoder_overrides
(a GPT-2 decoder: pre-norm with a final norm, no embedding norm, no token types); each stack has its own token table
(encoder_embed), the head is tied to the decoder's. Supported: BERT and RoBERTa (XLM-RoBERTa) encoders with BERT,
RoBERTa or GPT-2 decoders of the encoder's width and heads; others are refused (a decoder of another width would need
EncoderDecoderModel's enc_to_dec_proj)."""
from __future__ import annotations

from ..config import DECODER_FIELDS, ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
# the encoder's base-model name prefix in its family's rules (those rules without it are heads, not read)
ENCODERS = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta."}


def _bert_cross(root: str) -> list[Rule]:
    layer, ours = f"decoder.{root}.encoder.layer.{{i}}.crossattention.", "decoder.blocks.{i}."
    return [*[Rule.of(layer + f"self.query.{w}", ours + f"cross_attn.q_proj.{w}") for w in _W],
            *[Rule.of(tuple(layer + f"self.{p}.{w}" for p in ("key", "value")), ours + f"cross_attn.kv_proj.{w}")
              for w in _W],
            *[Rule.of(layer + f"output.dense.{w}", ours + f"cross_attn.o_proj.{w}") for w in _W],
            *[Rule.of(layer + f"output.LayerNorm.{w}", ours + f"ln_cross.{w}") for w in _W]]


def _gpt2_cross() -> list[Rule]:
    layer, ours = "decoder.transformer.h.{i}.", "decoder.blocks.{i}."
    parts = [("crossattention.q_attn", "cross_attn.q_proj"), ("crossattention.c_attn", "cross_attn.kv_proj"),
             ("crossattention.c_proj", "cross_attn.o_proj")]  # Conv1D (in, out); c_attn holds k then v
    return [*[Rule.of(layer + f"{hf}.weight", ours + f"{o}.weight", "transposed") for hf, o in parts],
            *[Rule.of(layer + f"{hf}.bias", ours + f"{o}.bias") for hf, o in parts],
            *[Rule.of(layer + f"ln_cross_attn.{w}", ours + f"ln_cross.{w}") for w in _W]]


# a decoder's model_type -> the names of its cross-attention, beside its family's own rules
CROSS = {"bert": _bert_cross("bert"), "roberta": _bert_cross("roberta"), "xlm-roberta": _bert_cross("roberta"),
         "gpt2": _gpt2_cross()}
_HEAD = ("embed.", "lm_head.", "head_transform.")  # the decoder's table and head keep their names in ours


def _encoder_rules(model_type: str) -> list[Rule]:
    base = ENCODERS[model_type]
    return [Rule.of(tuple("encoder." + h.removeprefix(base) for h in r.hf),
                    "encoder_embed.weight" if r.ours == "embed.weight" else "encoder." + r.ours, r.layout)
            for r in FAMILIES[model_type].rules if all(h.startswith(base) for h in r.hf)]


def _decoder_rules(model_type: str) -> list[Rule]:
    return [Rule.of(tuple("decoder." + h for h in r.hf), r.ours if r.ours.startswith(_HEAD) else "decoder." + r.ours,
                    r.layout) for r in FAMILIES[model_type].rules] + CROSS[model_type]


def _refuse(enc_hf: dict, dec_hf: dict) -> None:
    enc_t, dec_t = enc_hf.get("model_type"), dec_hf.get("model_type")
    if enc_t not in ENCODERS or dec_t not in CROSS:
        raise LlmarchError(f"encoder-decoder with a {enc_t} encoder and a {dec_t} decoder is not supported (encoders: "
                           f"{', '.join(ENCODERS)}; decoders: {', '.join(CROSS)})")
    if not dec_hf.get("add_cross_attention"):
        raise LlmarchError("encoder-decoder: the decoder has no cross-attention (add_cross_attention)")
    if dec_t == "gpt2" and (dec_hf.get("scale_attn_by_inverse_layer_idx") or dec_hf.get("reorder_and_upcast_attn")
                            or dec_hf.get("scale_attn_weights", True) is not True):
        raise LlmarchError("encoder-decoder: a GPT-2 decoder with scale_attn_by_inverse_layer_idx, "
                           "reorder_and_upcast_attn or without scale_attn_weights is not supported")


def to_config(hf: dict) -> ModelConfig:
    enc_hf, dec_hf = hf.get("encoder") or {}, hf.get("decoder") or {}
    _refuse(enc_hf, dec_hf)
    enc = FAMILIES[enc_hf["model_type"]].to_config({**enc_hf, "is_decoder": False})
    dec = FAMILIES[dec_hf["model_type"]].to_config({**dec_hf, "is_decoder": True})
    if (enc.d_model, enc.n_heads) != (dec.d_model, dec.n_heads):
        raise LlmarchError(f"encoder-decoder: the encoder's width and heads ({enc.d_model}, {enc.n_heads}) differ "
                           f"from the decoder's ({dec.d_model}, {dec.n_heads}); llmarch has no enc_to_dec_proj")
    overrides = {f: getattr(dec, f) for f in DECODER_FIELDS if getattr(dec, f) != getattr(enc, f)}
    start = hf.get("decoder_start_token_id")
    return enc.replace(name=hf.get("_name_or_path") or "encoder-decoder", hf_model_type="encoder-decoder", causal=True,
                       hf_stack_types=[enc_hf["model_type"], dec_hf["model_type"]], n_decoder_layers=dec.n_layers,
                       vocab_size=dec.vocab_size, encoder_embed=True,
                       encoder_vocab_size=enc.vocab_size if enc.vocab_size != dec.vocab_size else None,
                       decoder_context_length=dec.context_length if dec.context_length != enc.context_length else None,
                       decoder_overrides=overrides or None, head_transform=dec.head_transform,
                       head_bias=dec.head_bias, tie_embeddings=dec.tie_embeddings,
                       pad_id=hf.get("pad_token_id", dec_hf.get("pad_token_id")),
                       eos_id=dec_hf.get("eos_token_id") if isinstance(dec_hf.get("eos_token_id"), int) else None,
                       decoder_start_id=start if start is not None else dec_hf.get("bos_token_id"))


def needs(cfg: ModelConfig) -> str | None:
    types = cfg.hf_stack_types or [None, None]
    if len(types) != 2 or types[0] not in ENCODERS or types[1] not in CROSS or not cfg.encoder_embed \
            or cfg.layer_types is not None:
        return (f"hf_stack_types naming the encoder's model_type ({', '.join(ENCODERS)}) and the decoder's "
                f"({', '.join(CROSS)}), encoder_embed, and no layer_types")
    return None


def rules(cfg: ModelConfig) -> list[Rule]:
    enc_t, dec_t = cfg.hf_stack_types
    return _encoder_rules(enc_t) + _decoder_rules(dec_t)


def from_config(cfg: ModelConfig) -> dict:
    problem = needs(cfg)
    if problem:
        raise LlmarchError(f"model_type encoder-decoder needs {problem}")
    enc_t, dec_t = cfg.hf_stack_types
    enc = cfg.stack_config("encoder").replace(vocab_size=cfg.encoder_vocab_size or cfg.vocab_size,
                                              hf_model_type=enc_t, hf_stack_types=None)
    dec = cfg.stack_config("decoder").replace(hf_model_type=dec_t, hf_stack_types=None)
    enc_hf, dec_hf = FAMILIES[enc_t].from_config(enc), FAMILIES[dec_t].from_config(dec)
    enc_hf.pop("architectures")
    dec_hf.pop("architectures")
    return dict(model_type="encoder-decoder", architectures=["EncoderDecoderModel"], is_encoder_decoder=True,
                encoder=enc_hf, decoder=dict(dec_hf, is_decoder=True, add_cross_attention=True),
                decoder_start_token_id=cfg.decoder_start_id, pad_token_id=cfg.pad_id)


# BertModel's pooler; buffers; each head's copy of the decoder's table where tied, and BERT's decoder bias (its
# cls.predictions.bias again)
IGNORE = (r"^encoder\.pooler\.", r"embeddings\.position_ids$", r"\.(attn|crossattention)\.(masked_)?bias$",
          r"^decoder\.cls\.predictions\.decoder\.(weight|bias)$", r"^decoder\.lm_head\.decoder\.(weight|bias)$",
          r"^decoder\.lm_head\.weight$")
FAMILIES.register("encoder-decoder")(Family([], to_config, from_config, IGNORE, needs=needs, more_rules=rules))
