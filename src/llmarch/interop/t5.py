"""T5 (`model_type: t5`; Raffel et al. 2020): pre-norm RMSNorm stacks (no mean subtraction, no bias), no
biases anywhere, unscaled attention (the 1/sqrt(d) is folded into the initialisation), one relative position
bias table per stack stored in block 0, a ReLU MLP (v1.0) or a tanh-GELU-gated FFN (v1.1: wi_0 gate, wi_1 up).
v1.0 ties the head to the shared embedding and rescales the decoder output by d_model^-0.5 first; v1.1
unties it and does not rescale. mT5 (`mt5`; Xue et al. 2021) is T5 v1.1's model over a 250k vocabulary: it never
rescales, and its head is tied exactly where the checkpoint stores no lm_head.weight (MT5Config's
tie_word_embeddings says true even where the published checkpoints store a head of their own).

T5EncoderModel (`architectures: ["T5EncoderModel"]`, the encoder alone: sentence-T5, the text encoder of image
models; MT5EncoderModel for mT5) reads as an encoder-only model (bidirectional, head `embed`): its output is the
encoder's final hidden states, T5EncoderModel's last_hidden_state, and its tensors are the encoder's, under the same
names."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule


def stack_rules(part: str, mlp: str = "DenseReluDense", attn: str = "SelfAttention") -> list[Rule]:
    """The rules of one stack; `mlp`: the name of the FFN module in each block's FFN layer; `attn`: of the
    self-attention module (LongT5's encoder: LocalSelfAttention)."""
    hf, ours = f"{part}.block.{{i}}.layer.", f"{part}.blocks.{{i}}."
    ff = ffn_layer(part)
    rules = [
        Rule.of(f"{part}.block.0.layer.0.{attn}.relative_attention_bias.weight", f"{part}.positions.weight"),
        Rule.of(tuple(hf + f"0.{attn}.{p}.weight" for p in "qkv"), ours + "attn.qkv_proj.weight"),
        Rule.of(hf + f"0.{attn}.o.weight", ours + "attn.o_proj.weight"),
        Rule.of(hf + "0.layer_norm.weight", ours + "ln1.weight"),
        Rule.of(hf + f"{ff}.{mlp}.wi.weight", ours + "mlp.up.weight"),
        Rule.of((hf + f"{ff}.{mlp}.wi_0.weight", hf + f"{ff}.{mlp}.wi_1.weight"), ours + "mlp.gate_up.weight"),
        Rule.of(hf + f"{ff}.{mlp}.wo.weight", ours + "mlp.down.weight"),
        Rule.of(hf + f"{ff}.layer_norm.weight", ours + "ln2.weight"),
        Rule.of(f"{part}.final_layer_norm.weight", f"{part}.ln_final.weight"),
    ]
    if part == "decoder":
        rules += [Rule.of(hf + "1.EncDecAttention.q.weight", ours + "cross_attn.q_proj.weight"),
                  Rule.of((hf + "1.EncDecAttention.k.weight", hf + "1.EncDecAttention.v.weight"),
                          ours + "cross_attn.kv_proj.weight"),
                  Rule.of(hf + "1.EncDecAttention.o.weight", ours + "cross_attn.o_proj.weight"),
                  Rule.of(hf + "1.layer_norm.weight", ours + "ln_cross.weight")]
    return rules


def ffn_layer(part: str) -> int:
    """Index of the FFN sublayer in a block's `layer` list: the decoder's layer.1 is cross-attention."""
    return 2 if part == "decoder" else 1


def encoder_only_rules(rules: list[Rule]) -> list[Rule]:
    """An encoder-decoder's encoder rules for the encoder alone (T5EncoderModel): the same Hugging Face names,
    ours without `encoder.` (an encoder-only model's blocks are the model's own)."""
    return [Rule.of(r.hf, r.ours.removeprefix("encoder."), r.layout) for r in rules if r.ours.startswith("encoder.")]


RULES = [Rule.of("shared.weight", "embed.weight"), *stack_rules("encoder"), *stack_rules("decoder"),
         Rule.of("lm_head.weight", "lm_head.weight")]
ENCODER_RULES = encoder_only_rules(RULES)
# copies of the shared embedding in older files; a cross-attention bias table transformers never uses
IGNORE = (r"^(encoder|decoder)\.embed_tokens\.weight$", r"EncDecAttention\.relative_attention_bias\.weight$")
# feed_forward_proj -> our ffn ("gated-gelu" means the tanh approximation, as transformers reads it)
_FFN = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gated-gelu": "geglu_tanh",
        "gated-gelu_new": "geglu_tanh", "gated-silu": "swiglu"}


def encoder_only(hf: dict, arch: str) -> bool:
    """Whether config.json names the encoder alone (`arch`: T5EncoderModel, UMT5EncoderModel)."""
    return (hf.get("architectures") or [""])[0] == arch


def as_encoder(cfg: ModelConfig) -> ModelConfig:
    """The encoder of an encoder-decoder config alone: bidirectional, its final hidden states as the output."""
    return cfg.replace(n_decoder_layers=0, causal=False, head="embed", pooling="none", head_transform=False,
                       head_bias=False, tie_embeddings=True, head_scale=False)


def encoder_fields(cfg: ModelConfig, fields: dict, arch: str) -> dict:
    """config.json of the encoder alone from an encoder-decoder's `fields` (`arch`: its architecture name); the
    encoder's hidden states unpooled, as T5EncoderModel gives them (a pooling has no config.json field)."""
    if cfg.pooling != "none":
        raise LlmarchError(f"{arch} gives each token's hidden state; this model pools them ({cfg.pooling})")
    out = {**fields, "architectures": [arch], "is_encoder_decoder": False, "use_cache": False}
    for name in ("num_decoder_layers", "scale_decoder_outputs", "decoder_start_token_id"):
        out.pop(name)
    return out


def to_config(hf: dict) -> ModelConfig:
    cfg = encoder_decoder_config(hf)
    return as_encoder(cfg) if encoder_only(hf, "T5EncoderModel") else cfg


def encoder_decoder_config(hf: dict) -> ModelConfig:
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in _FFN:
        raise LlmarchError(f"unsupported T5 feed_forward_proj {proj!r}; supported: {', '.join(_FFN)}")
    tied = hf.get("tie_word_embeddings", True) is not False
    return ModelConfig(
        name=hf.get("_name_or_path") or "t5", hf_model_type="t5", vocab_size=hf["vocab_size"], d_model=hf["d_model"],
        n_layers=hf["num_layers"], n_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        n_heads=hf["num_heads"], head_dim=hf["d_kv"], ffn=_FFN[proj], ffn_hidden=hf["d_ff"], norm="rmsnorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-6), norm_placement="pre", positions="t5_relative",
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128), bias=False, norm_bias=False,
        attn_scale=1.0, tie_embeddings=tied, head_scale=hf.get("scale_decoder_outputs", tied),
        pad_id=hf.get("pad_token_id", 0), eos_id=hf.get("eos_token_id", 1),
        decoder_start_id=hf.get("decoder_start_token_id", hf.get("pad_token_id", 0)),
        context_length=hf.get("n_positions", 512), init="t5")


def from_config(cfg: ModelConfig) -> dict:
    if cfg.relative_bias_per_layer:
        raise LlmarchError("model_type t5 shares one relative-bias table per stack (a table per layer: umt5)")
    return t5_fields(cfg) if cfg.n_decoder_layers else encoder_fields(cfg, t5_fields(cfg), "T5EncoderModel")


def t5_fields(cfg: ModelConfig) -> dict:
    """The T5Config fields of cfg (T5 and the families built on its layout)."""
    proj = {v: k for k, v in reversed(_FFN.items())}.get(cfg.ffn)
    if proj is None or cfg.norm != "rmsnorm" or cfg.positions != "t5_relative" or cfg.norm_placement != "pre":
        raise LlmarchError("model_type t5 needs rmsnorm, pre-norm, t5_relative positions and a relu/gelu/geglu/"
                           "swiglu FFN")
    return dict(model_type="t5", architectures=["T5ForConditionalGeneration"], vocab_size=cfg.vocab_size,
                d_model=cfg.d_model, d_kv=cfg.head_dim, d_ff=cfg.ffn_hidden, num_layers=cfg.n_layers,
                num_decoder_layers=cfg.n_decoder_layers, num_heads=cfg.n_heads,
                relative_attention_num_buckets=cfg.relative_buckets,
                relative_attention_max_distance=cfg.relative_max_distance, layer_norm_epsilon=cfg.norm_eps,
                feed_forward_proj=proj, tie_word_embeddings=cfg.tie_embeddings,
                scale_decoder_outputs=cfg.head_scale, is_encoder_decoder=True, pad_token_id=cfg.pad_id,
                eos_token_id=cfg.eos_id, decoder_start_token_id=cfg.decoder_start_id, n_positions=cfg.context_length)


FAMILIES.register("t5")(Family(RULES + ENCODER_RULES, to_config, from_config, IGNORE,
                               heads={"embed": ("T5EncoderModel", [])}))


def mt5_config(hf: dict) -> ModelConfig:
    cfg = encoder_decoder_config(hf).replace(name=hf.get("_name_or_path") or "mt5", hf_model_type="mt5",
                                             head_scale=False)
    return as_encoder(cfg) if encoder_only(hf, "MT5EncoderModel") else cfg


def mt5_hf(cfg: ModelConfig) -> dict:
    if cfg.head_scale:
        raise LlmarchError("model_type mt5 never rescales the decoder output (head_scale=False)")
    if cfg.relative_bias_per_layer:
        raise LlmarchError("model_type mt5 shares one relative-bias table per stack (a table per layer: umt5)")
    fields = {**t5_fields(cfg), "model_type": "mt5", "architectures": ["MT5ForConditionalGeneration"]}
    return fields if cfg.n_decoder_layers else encoder_fields(cfg, fields, "MT5EncoderModel")


FAMILIES.register("mt5")(Family(RULES + ENCODER_RULES, mt5_config, mt5_hf, IGNORE, tied_by_checkpoint=True,
                                heads={"embed": ("MT5EncoderModel", [])}))
