"""Moonshine (`model_type: moonshine`; Jeffries et al. 2024, "Moonshine: Speech Recognition for Live Transcription
and Voice Commands"), as transformers' MoonshineForConditionalGeneration holds it: an encoder over the raw 16 kHz
waveform (model.encoder.conv1, groupnorm, conv2, conv3: our encoder_input 'waveform_stem',
layers/encoder_inputs.py), then pre-norm blocks in both stacks with LayerNorms without biases, attention without
biases, partial RoPE (partial_rotary_factor, default 0.9) in the encoder's and the decoder's self-attention (none in
cross-attention), and a final norm in each stack. The encoder's MLP is fc1 -> GELU -> fc2; the decoder's is gated,
fc1 holding the up rows first and the gate's after them (ours: the gate first, "swapped_halves"); both with biases.
transformers rotates adjacent pairs of dims (its rotate_half over x[0::2], x[1::2]): the q and k rows are
reordered to ours ("rope_pairs"), which changes no score. The head (proj_out) is tied to the token embeddings.

Refused: query heads apart from key/value heads (transformers views the queries by num_key_value_heads, so a GQA
checkpoint does not compute attention as configured), encoder and decoder of different head counts (llmarch builds
both stacks with one shape), attention biases, RoPE scalings."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.ffn import FFN_ACTIVATION
from .activations import HF_GATED_ACTIVATIONS, read_activation, require_hf_activation
from .hf import FAMILIES, Family
from .mapping import ROPE_PAIRS_QKV, Rule


def _attention(hf: str, ours: str, rope: bool) -> list[Rule]:
    qkv = Rule((f"{hf}.q_proj.weight", f"{hf}.k_proj.weight", f"{hf}.v_proj.weight"), f"{ours}.qkv_proj.weight",
               ROPE_PAIRS_QKV)
    if rope:
        return [qkv, Rule.of(f"{hf}.o_proj.weight", f"{ours}.o_proj.weight")]
    return [Rule.of(f"{hf}.q_proj.weight", f"{ours}.q_proj.weight"),
            Rule.of((f"{hf}.k_proj.weight", f"{hf}.v_proj.weight"), f"{ours}.kv_proj.weight"),
            Rule.of(f"{hf}.o_proj.weight", f"{ours}.o_proj.weight")]


def _mlp(hf: str, ours: str, gated: bool) -> list[Rule]:
    up, layout = ("gate_up", "swapped_halves") if gated else ("up", "same")
    return [Rule.of(f"{hf}.fc1.{w}", f"{ours}.{up}.{w}", layout) for w in ("weight", "bias")] + \
        [Rule.of(f"{hf}.fc2.{w}", f"{ours}.down.{w}") for w in ("weight", "bias")]


_ENC, _DEC = "model.encoder.layers.{i}", "model.decoder.layers.{i}"
RULES = [
    Rule.of("model.decoder.embed_tokens.weight", "embed.weight"), Rule.of("proj_out.weight", "lm_head.weight"),
    Rule.of("model.encoder.conv1.weight", "encoder_input.conv1.weight"),
    *[Rule.of(f"model.encoder.{m}.{w}", f"encoder_input.{m}.{w}") for m in ("groupnorm", "conv2", "conv3")
      for w in ("weight", "bias")],
    Rule.of(f"{_ENC}.input_layernorm.weight", "encoder.blocks.{i}.ln1.weight"),
    *_attention(f"{_ENC}.self_attn", "encoder.blocks.{i}.attn", rope=True),
    Rule.of(f"{_ENC}.post_attention_layernorm.weight", "encoder.blocks.{i}.ln2.weight"),
    *_mlp(f"{_ENC}.mlp", "encoder.blocks.{i}.mlp", gated=False),
    Rule.of("model.encoder.layer_norm.weight", "encoder.ln_final.weight"),
    Rule.of(f"{_DEC}.input_layernorm.weight", "decoder.blocks.{i}.ln1.weight"),
    *_attention(f"{_DEC}.self_attn", "decoder.blocks.{i}.attn", rope=True),
    Rule.of(f"{_DEC}.post_attention_layernorm.weight", "decoder.blocks.{i}.ln_cross.weight"),
    *_attention(f"{_DEC}.encoder_attn", "decoder.blocks.{i}.cross_attn", rope=False),
    Rule.of(f"{_DEC}.final_layernorm.weight", "decoder.blocks.{i}.ln2.weight"),
    *_mlp(f"{_DEC}.mlp", "decoder.blocks.{i}.mlp", gated=True),
    Rule.of("model.decoder.norm.weight", "decoder.ln_final.weight"),
]


def _check(hf: dict) -> None:
    arch = (hf.get("architectures") or ["MoonshineForConditionalGeneration"])[0]
    heads = hf.get("encoder_num_attention_heads", 8), hf.get("decoder_num_attention_heads", 8)
    kv = hf.get("encoder_num_key_value_heads") or heads[0], hf.get("decoder_num_key_value_heads") or heads[1]
    rope = hf.get("rope_parameters") or {}
    problem = (f"{arch} checkpoints" if arch != "MoonshineForConditionalGeneration" else
               f"different encoder and decoder head counts {heads}" if heads[0] != heads[1] else
               f"key/value heads {kv} apart from the query heads {heads}" if kv != heads else
               "attention biases (attention_bias true)" if hf.get("attention_bias") else
               f"rope type {rope.get('rope_type')!r}" if rope.get("rope_type", "default") != "default" else None)
    if problem:
        raise LlmarchError(f"model_type moonshine: {problem} are not supported")


def to_config(hf: dict) -> ModelConfig:
    """The decoder's positions bound by max_position_embeddings; the encoder's frames are not (RoPE has no table, and
    transformers' encoder reads any length): its context_length is that of the longest input, 30 s of samples."""
    _check(hf)
    eos = hf.get("eos_token_id", 2)
    eos = eos[0] if isinstance(eos, list) else eos
    rope = hf.get("rope_parameters") or {}
    decoder_ffn = read_activation(hf, "moonshine", "decoder_hidden_act", "silu", HF_GATED_ACTIVATIONS)
    return ModelConfig(
        name=hf.get("_name_or_path") or "moonshine", hf_model_type="moonshine", vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], n_layers=hf["encoder_num_hidden_layers"],
        n_decoder_layers=hf["decoder_num_hidden_layers"], n_heads=hf.get("encoder_num_attention_heads", 8),
        ffn=read_activation(hf, "moonshine", "encoder_hidden_act", "gelu"), ffn_hidden=hf["intermediate_size"],
        decoder_overrides={"ffn": decoder_ffn}, norm="layernorm", norm_eps=1e-5, norm_bias=False,
        norm_placement="pre", bias=True, qkv_bias=False, o_bias=False, positions="rope",
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        rope_fraction=float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 0.9))),
        tie_embeddings=hf.get("tie_word_embeddings", True), head_bias=False,
        pad_id=hf.get("pad_token_id") if hf.get("pad_token_id") is not None else eos, eos_id=eos,
        decoder_start_id=hf.get("decoder_start_token_id", 1), encoder_input="waveform_stem", input_channels=1,
        context_length=30 * 16000 // 384, decoder_context_length=hf.get("max_position_embeddings", 512))


def from_config(cfg: ModelConfig) -> dict:
    gated = (cfg.decoder_overrides or {}).get("ffn")
    if cfg.encoder_input != "waveform_stem" or set(cfg.decoder_overrides or {}) != {"ffn"} \
            or gated not in ("swiglu", "geglu") or cfg.positions != "rope" or cfg.rope_scaling != "none" \
            or cfg.norm != "layernorm" or cfg.norm_bias or cfg.norm_placement != "pre" or not cfg.final_norm \
            or cfg.qkv_bias or cfg.o_bias or not cfg.bias or cfg.n_kv_heads != cfg.n_heads or cfg.head_bias \
            or cfg.embed_scale or cfg.embed_norm:
        raise LlmarchError("model_type moonshine needs encoder_input waveform_stem, a gated decoder FFN (swiglu, "
                           "geglu; decoder_overrides), RoPE unscaled, pre-norm LayerNorms without bias and final "
                           "norms, MLP biases and none in attention, MHA, no head bias, embed scale or norm")
    return {"model_type": "moonshine", "architectures": ["MoonshineForConditionalGeneration"],
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.ffn_hidden,
            "encoder_num_hidden_layers": cfg.n_layers, "decoder_num_hidden_layers": cfg.n_decoder_layers,
            "encoder_num_attention_heads": cfg.n_heads, "decoder_num_attention_heads": cfg.n_heads,
            "encoder_num_key_value_heads": cfg.n_heads, "decoder_num_key_value_heads": cfg.n_heads,
            "encoder_hidden_act": require_hf_activation(cfg.ffn, "moonshine"),
            "decoder_hidden_act": require_hf_activation(FFN_ACTIVATION[gated], "moonshine"),
            "max_position_embeddings": cfg.decoder_context_length or cfg.context_length,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta,
                                "partial_rotary_factor": cfg.rope_fraction},
            "attention_bias": False, "tie_word_embeddings": cfg.tie_embeddings, "is_encoder_decoder": True,
            "pad_token_id": cfg.pad_id, "eos_token_id": cfg.eos_id,
            "decoder_start_token_id": cfg.decoder_start_id}


FAMILIES.register("moonshine")(Family(RULES, to_config, from_config))
