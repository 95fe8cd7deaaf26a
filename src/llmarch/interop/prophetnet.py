"""ProphetNet (`model_type: prophetnet`; Qi et al. 2020, "ProphetNet: Predicting Future N-gram for Sequence-to-Sequence
Pre-training"): a post-norm Transformer with biases everywhere, learned positions from pad + 1 in each stack and a
LayerNorm over the embeddings (`embeddings_layer_norm`), one word embedding shared by both stacks and the head (no
logits bias), GELU FFNs (`feed_forward.intermediate`, `feed_forward.output`). The decoder's self-attention is the
n-gram attention over the main stream and the predicting streams (our attention 'ngram', ngram.py, with its
query-dependent relative bias `relative_pos_embeddings`: rel_proj, `num_buckets` and `relative_max_distance` as
relative_buckets and relative_max_distance); `ngram_embeddings` is ngram_streams' table, and the head reads the first
predicting stream, as transformers' `logits` do. Refused: encoder and decoder of different heads or FFN widths, and a
pad_token_id other than 0 (transformers' cached decoding then buckets its relative positions off by it)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_SUB = [("self_attn.out_proj", "attn.o_proj"), ("self_attn_layer_norm", "ln1"), ("feed_forward.intermediate", "mlp.up"),
        ("feed_forward.output", "mlp.down"), ("feed_forward_layer_norm", "ln2")]
_DEC = [("self_attn.relative_pos_embeddings", "attn.rel_proj"), ("cross_attn.query_proj", "cross_attn.q_proj"),
        ("cross_attn.out_proj", "cross_attn.o_proj"), ("cross_attn_layer_norm", "ln_cross")]


def _stack(part: str) -> list[Rule]:
    hf, ours, layer = f"prophetnet.{part}.", f"{part}.", f"prophetnet.{part}.layers.{{i}}."
    subs = _SUB + (_DEC if part == "decoder" else [])
    rules = [Rule.of(hf + "position_embeddings.weight", ours + "positions.weight"),
             *[Rule.of(hf + f"embeddings_layer_norm.{w}", ours + f"embed_norm.{w}") for w in _W],
             *[Rule.of(layer + f"{h}.{w}", ours + f"blocks.{{i}}.{o}.{w}") for h, o in subs for w in _W],
             *[Rule.of(tuple(layer + f"self_attn.{p}_proj.{w}" for p in ("query", "key", "value")),
                       ours + f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W]]
    if part == "decoder":
        rules += [Rule.of(hf + "ngram_embeddings.weight", "decoder.ngram_embed"),
                  *[Rule.of(tuple(layer + f"cross_attn.{p}_proj.{w}" for p in ("key", "value")),
                            f"decoder.blocks.{{i}}.cross_attn.kv_proj.{w}") for w in _W]]
    return rules


RULES = [Rule.of("prophetnet.word_embeddings.weight", "embed.weight"), Rule.of("lm_head.weight", "lm_head.weight"),
         *_stack("encoder"), *_stack("decoder")]
NGRAM = "ngram_attention"


def to_config(hf: dict) -> ModelConfig:
    for enc, dec in (("num_encoder_attention_heads", "num_decoder_attention_heads"),
                     ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(enc, 16 if "heads" in enc else 4096) != hf.get(dec, 16 if "heads" in dec else 4096):
            raise LlmarchError(f"prophetnet: {enc}={hf.get(enc)} differs from {dec}={hf.get(dec)}; llmarch builds "
                               "both stacks with one shape")
    pad = hf.get("pad_token_id", 0)
    if pad != 0:
        raise LlmarchError(f"prophetnet with pad_token_id={pad}: transformers' cached decoding then shifts its "
                           "relative position buckets by it; only 0 is supported")
    n, n_dec = hf.get("num_encoder_layers", 12), hf.get("num_decoder_layers", 12)
    return ModelConfig(name=hf.get("_name_or_path") or "prophetnet", hf_model_type="prophetnet",
                       vocab_size=hf["vocab_size"], d_model=hf.get("hidden_size", 1024), n_layers=n,
                       n_decoder_layers=n_dec, n_heads=hf.get("num_encoder_attention_heads", 16),
                       ffn=read_activation(hf, "prophetnet", "activation_function", "gelu"),
                       ffn_hidden=hf.get("encoder_ffn_dim", 4096), norm="layernorm", norm_eps=1e-5,
                       norm_placement="post", positions="learned", position_offset=pad + 1, embed_norm=True,
                       context_length=hf.get("max_position_embeddings", 512) - pad - 1, bias=True, head_bias=False,
                       tie_embeddings=True, ngram_streams=hf.get("ngram", 2),
                       relative_buckets=hf.get("num_buckets", 32),
                       relative_max_distance=hf.get("relative_max_distance", 128), pad_id=pad,
                       eos_id=hf.get("eos_token_id", 2), decoder_start_id=hf.get("decoder_start_token_id", 0),
                       layer_types=["full_attention"] * n + [NGRAM] * n_dec,
                       layer_overrides={NGRAM: {"attention": "ngram"}})


def from_config(cfg: ModelConfig) -> dict:
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    act = hf_activation(cfg.ffn) if exportable(cfg.ffn) else None
    if (any(enc.for_layer(i).attention != "full" for i in range(enc.n_layers)) or not cfg.ngram_streams
            or any(dec.for_layer(i).attention != "ngram" for i in range(dec.n_layers)) or act is None
            or cfg.norm != "layernorm" or cfg.norm_placement != "post" or cfg.positions != "learned"
            or cfg.position_offset != cfg.pad_id + 1 or cfg.pad_id != 0 or not cfg.embed_norm or cfg.head_bias
            or not cfg.tie_embeddings or cfg.decoder_context_length not in (None, cfg.context_length)):
        raise LlmarchError("model_type prophetnet needs full attention in the encoder, attention 'ngram' with "
                           "ngram_streams in the decoder, post-norm LayerNorms, learned positions from pad + 1 "
                           "(pad 0) of one length in both stacks, embed_norm, an MLP FFN (gelu, relu) and a tied head "
                           "without bias")
    return dict(model_type="prophetnet", architectures=["ProphetNetForConditionalGeneration"],
                vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_encoder_layers=cfg.n_layers,
                num_decoder_layers=cfg.n_decoder_layers, num_encoder_attention_heads=cfg.n_heads,
                num_decoder_attention_heads=cfg.n_heads, encoder_ffn_dim=cfg.ffn_hidden,
                decoder_ffn_dim=cfg.ffn_hidden, activation_function=act,
                max_position_embeddings=cfg.context_length + cfg.position_offset, ngram=cfg.ngram_streams,
                num_buckets=cfg.relative_buckets, relative_max_distance=cfg.relative_max_distance,
                pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id, decoder_start_token_id=cfg.decoder_start_id,
                is_encoder_decoder=True, add_cross_attention=True, tie_word_embeddings=True)


# the stacks' copies of the shared table, tied to it
IGNORE = (r"^prophetnet\.(encoder|decoder)\.word_embeddings\.weight$",)
FAMILIES.register("prophetnet")(Family(RULES, to_config, from_config, IGNORE))
