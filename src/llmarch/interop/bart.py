"""BART (`model_type: bart`; Lewis et al. 2020): post-norm encoder and decoder with biases everywhere,
learned positions offset by 2 and a LayerNorm over the embeddings in each stack, the shared embedding tied
to the head, and a logits bias (`final_logits_bias`, a buffer in transformers: our head's bias).
Marian (marian.py) is the same layout with sinusoidal positions and no embedding norm."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
SWISH = {"silu": "swish"}  # the spelling BART-derived families write for SiLU
_SUBLAYERS = [("self_attn_layer_norm", "ln1"), ("fc1", "mlp.up"), ("fc2", "mlp.down"), ("final_layer_norm", "ln2")]
_SELF_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
CROSS_SUBLAYERS = [("encoder_attn.q_proj", "cross_attn.q_proj"), ("encoder_attn.out_proj", "cross_attn.o_proj"),
                   ("encoder_attn_layer_norm", "ln_cross")]  # a decoder block's (TrOCR's decoder alone holds it too)


def seq2seq_rules(learned_positions: bool, embed_norm: bool | None = None) -> list[Rule]:
    """BART's names: the shared embedding, the head and its logits bias, then both stacks (stack_rules)."""
    return [Rule.of("model.shared.weight", "embed.weight"), Rule.of("final_logits_bias", "lm_head.bias", "row"),
            Rule.of("lm_head.weight", "lm_head.weight"), *stack_rules(learned_positions, embed_norm)]


def stack_rules(learned_positions: bool, embed_norm: bool | None = None, prefix: str = "model",
                encoder_attn: tuple[str, ...] = _SELF_ATTN) -> list[Rule]:
    """BART's names for both stacks' blocks under `prefix`: learned_positions stores each stack's position table,
    embed_norm (by default where the positions are learned) its layernorm_embedding; encoder_attn: the encoder's
    q, k, v and output projections, relative to its layer (LED's Longformer attention names them apart)."""
    embed_norm = learned_positions if embed_norm is None else embed_norm
    rules = []
    for part in ("encoder", "decoder"):
        hf, ours = f"{prefix}.{part}.layers.{{i}}.", f"{part}.blocks.{{i}}."
        if learned_positions:
            rules.append(Rule.of(f"{prefix}.{part}.embed_positions.weight", f"{part}.positions.weight"))
        if embed_norm:
            rules += [Rule.of(f"{prefix}.{part}.layernorm_embedding.{w}", f"{part}.embed_norm.{w}") for w in _W]
        rules += block_rules(hf, ours, encoder_attn if part == "encoder" else _SELF_ATTN, cross=part == "decoder")
    return rules


def block_rules(hf: str, ours: str, attn: tuple[str, ...] = _SELF_ATTN, cross: bool = True) -> list[Rule]:
    """BART's names for one block's tensors, `hf` and `ours` its prefixes ("{i}" for the layer): attn, its q, k, v
    and output projections; cross, a decoder block's cross-attention (TrOCR's and MusicGen's decoders alone hold
    theirs and never run it: held_cross_width)."""
    *qkv, out = attn
    sublayers = [(out, "attn.o_proj")] + _SUBLAYERS + (CROSS_SUBLAYERS if cross else [])
    rules = [Rule.of(hf + f"{h}.{w}", ours + f"{o}.{w}") for h, o in sublayers for w in _W]
    rules += [Rule.of(tuple(hf + f"{p}.{w}" for p in qkv), ours + f"attn.qkv_proj.{w}") for w in _W]
    if cross:
        rules += [Rule.of(tuple(hf + f"encoder_attn.{p}_proj.{w}" for p in "kv"), ours + f"cross_attn.kv_proj.{w}")
                  for w in _W]
    return rules


def final_norm_rules() -> list[Rule]:
    """The LayerNorm after the last block of each stack (pre-norm layouts: mBART, PEGASUS, M2M-100)."""
    return [Rule.of(f"model.{part}.layer_norm.{w}", f"{part}.ln_final.{w}") for part in ("encoder", "decoder")
            for w in _W]


def shared_fields(hf: dict) -> dict:
    """ModelConfig fields common to BART and Marian configs; both stacks must have the same shape."""
    for enc, dec in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(enc) != hf.get(dec):
            raise LlmarchError(f"{enc}={hf.get(enc)} differs from {dec}={hf.get(dec)}; llmarch builds both stacks "
                               "with one shape")
    return dict(name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"],
                vocab_size=hf["vocab_size"], d_model=hf["d_model"], n_layers=hf["encoder_layers"],
                n_decoder_layers=hf["decoder_layers"], n_heads=hf["encoder_attention_heads"],
                ffn=read_activation(hf, hf["model_type"], "activation_function", "gelu"),
                ffn_hidden=hf["encoder_ffn_dim"], norm="layernorm", norm_eps=1e-5, norm_placement="post",
                embed_scale=bool(hf.get("scale_embedding", False)), bias=True, head_bias=True,
                tie_embeddings=hf.get("tie_word_embeddings", True), pad_id=hf.get("pad_token_id", 1),
                eos_id=hf.get("eos_token_id", 2), decoder_start_id=hf.get("decoder_start_token_id", 2))


def shared_hf(cfg: ModelConfig, model_type: str, architecture: str, placement: str = "post") -> dict:
    """config.json fields common to BART's relatives; placement: the norm placement the layout has (post: BART,
    Marian; pre, with a final norm in each stack: mBART, PEGASUS, M2M-100)."""
    act = hf_activation(cfg.ffn, SWISH) if exportable(cfg.ffn) else None
    if (act is None or cfg.norm != "layernorm" or cfg.norm_placement != placement
            or cfg.final_norm != (placement == "pre")):
        raise LlmarchError(f"model_type {model_type} needs layernorm, {placement}-norm "
                           f"{'with' if placement == 'pre' else 'without'} a final norm and an MLP FFN "
                           "(gelu, relu, silu)")
    return dict(model_type=model_type, architectures=[architecture], vocab_size=cfg.vocab_size,
                d_model=cfg.d_model, encoder_layers=cfg.n_layers, decoder_layers=cfg.n_decoder_layers,
                encoder_attention_heads=cfg.n_heads, decoder_attention_heads=cfg.n_heads,
                encoder_ffn_dim=cfg.ffn_hidden, decoder_ffn_dim=cfg.ffn_hidden, activation_function=act,
                scale_embedding=cfg.embed_scale, tie_word_embeddings=cfg.tie_embeddings, is_encoder_decoder=True,
                pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id, decoder_start_token_id=cfg.decoder_start_id,
                forced_eos_token_id=None)


def to_config(hf: dict) -> ModelConfig:
    return ModelConfig(**shared_fields(hf), positions="learned", position_offset=2, embed_norm=True,
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "learned" or cfg.position_offset != 2 or not cfg.embed_norm:
        raise LlmarchError("model_type bart needs learned positions with position_offset 2 and embed_norm")
    return dict(shared_hf(cfg, "bart", "BartForConditionalGeneration"), max_position_embeddings=cfg.context_length,
                bos_token_id=0)


IGNORE = (r"^model\.(encoder|decoder)\.embed_tokens\.weight$",)
FAMILIES.register("bart")(Family(seq2seq_rules(learned_positions=True), to_config, from_config, IGNORE))
