"""Funnel-Transformer (`model_type: funnel`; Dai et al. 2020): word embeddings under a LayerNorm, no position table,
post-norm blocks of relative attention (layers/funnel_attention.py: `q_head` without bias, `k_head`, `v_head`,
`post_proj`, `r_w_bias`, `r_r_bias`, `r_kernel`, `r_s_bias`, `seg_embed`) and a GELU MLP (`linear_1`, `linear_2`),
run by recurrence 'funnel' (layers/funnel.py): `block_sizes` groups with pooling between them (`pooling_type`,
`separate_cls`, `truncate_seq`, `pool_q_only`), and for FunnelModel (FunnelForMaskedLM, FunnelForTokenClassification)
`num_decoder_layers` blocks after the upsampling. FunnelBaseModel (FunnelForSequenceClassification) has no decoder:
which one a checkpoint holds, its `architectures` says. `attention_type` relative_shift and factorized compute the
same scores (transformers' appendix A.2.1 and A.2.2 forms), so both read as one and are written as relative_shift.
pad_token_id is not written: transformers' FunnelEmbeddings zeroes the padding id's row of the (tied) embeddings when
it loads a checkpoint that names one, which the file's weights would not survive.
Heads: the MLM head (`lm_head`, tied, with a bias), the classifier (`linear_hidden` -> tanh -> `linear_out` on the
first token: our pooler + classifier), a per-token classifier. Refused: block_repeats other than 1 (a block run
several times over), FunnelForPreTraining (ELECTRA's discriminator over the decoder), multiple choice and QA heads."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .bert import _W
from .hf import FAMILIES, Family
from .mapping import Rule

_ATTN = [("q_head.weight", "q_proj.weight"), *[(f"{p}_head.{w}", f"{p}_proj.{w}") for p in "kv" for w in _W],
         *[(f"post_proj.{w}", f"o_proj.{w}") for w in _W], ("r_w_bias", "content_bias"), ("r_r_bias", "position_bias"),
         ("r_s_bias", "segment_bias"), ("r_kernel", "position_proj"), ("seg_embed", "segment_embed")]
_LAYER = [*[(f"attention.{hf}", f"mixer.{ours}") for hf, ours in _ATTN],
          *[(f"attention.layer_norm.{w}", f"ln1.{w}") for w in _W],
          *[(f"ffn.linear_{n}.{w}", f"mlp.{ours}.{w}") for n, ours in ((1, "up"), (2, "down")) for w in _W],
          *[(f"ffn.layer_norm.{w}", f"ln2.{w}") for w in _W]]
RULES = [Rule.of("funnel.embeddings.word_embeddings.weight", "embed.weight"),
         *[Rule.of(f"funnel.embeddings.layer_norm.{w}", f"embed_norm.{w}") for w in _W],
         *[Rule.of(f"lm_head.{w}", f"lm_head.{w}") for w in _W]]
HEADS = {"classify": [*[Rule.of(f"classifier.linear_hidden.{w}", f"pooler.dense.{w}") for w in _W],
                      *[Rule.of(f"classifier.linear_out.{w}", f"classifier.{w}") for w in _W]],
         "tokens": [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]}
_NO_DECODER = ("FunnelBaseModel", "FunnelForSequenceClassification")


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """Each block's, by its place: encoder group g's layer l, then the decoder's layers."""
    names = [f"funnel.encoder.blocks.{g}.{j}." for g, n in enumerate(cfg.funnel_blocks) for j in range(n)]
    names += [f"funnel.decoder.layers.{j}." for j in range(cfg.funnel_decoder_layers)]
    return [Rule.of(prefix + hf, f"blocks.{i}.{ours}") for i, prefix in enumerate(names) for hf, ours in _LAYER]


def to_config(hf: dict) -> ModelConfig:
    sizes = list(hf.get("block_sizes", [4, 4, 4]))
    arch = (hf.get("architectures") or ["FunnelForMaskedLM"])[0]
    if any(r != 1 for r in hf.get("block_repeats") or [1]) or arch in ("FunnelForPreTraining",
                                                                        "FunnelForMultipleChoice",
                                                                        "FunnelForQuestionAnswering"):
        raise LlmarchError(f"Funnel with block_repeats other than 1, or {arch}, is not supported (masked LM, sequence "
                           "and token classification, base models)")
    decoder = 0 if arch in _NO_DECODER else hf.get("num_decoder_layers", 2)
    return ModelConfig(
        name=hf.get("_name_or_path") or "funnel", hf_model_type="funnel", vocab_size=hf["vocab_size"],
        d_model=hf.get("d_model", 768), n_layers=sum(sizes) + decoder, n_heads=hf.get("n_head", 12),
        head_dim=hf.get("d_head", 64), ffn=read_activation(hf, "funnel", "hidden_act", "gelu_new"),
        ffn_hidden=hf.get("d_inner", 3072),
        norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-9), norm_placement="post", positions="none",
        causal=False, embed_norm=True, mixer="funnel_attention", recurrence="funnel", funnel_blocks=sizes,
        funnel_decoder_layers=decoder, funnel_pooling=hf.get("pooling_type", "mean"),
        funnel_separate_cls=hf.get("separate_cls", True), funnel_truncate=hf.get("truncate_seq", True),
        funnel_pool_q_only=hf.get("pool_q_only", True), head_bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_position_embeddings", 512))


def needs(cfg: ModelConfig) -> str | None:
    decoder = cfg.head in ("lm", "tokens") or cfg.head == "embed" and cfg.funnel_decoder_layers
    if cfg.recurrence != "funnel" or cfg.norm != "layernorm" or not cfg.embed_norm or cfg.positions != "none" \
            or cfg.type_vocab_size or not exportable(cfg.ffn) or not cfg.bias or cfg.embed_width != cfg.d_model \
            or bool(cfg.funnel_decoder_layers) != bool(decoder) or cfg.pooler_act != "tanh" \
            or cfg.head == "lm" and (cfg.head_transform or not cfg.head_bias):
        return ("recurrence 'funnel' over LayerNorm post-norm blocks with biases, an embedding norm and no absolute "
                "positions or token-type embeddings, decoder layers exactly for the LM and token heads (and a "
                "FunnelModel), and a plain LM head with a bias")
    return None


def from_config(cfg: ModelConfig) -> dict:
    arch = {"lm": "FunnelForMaskedLM", "embed": "FunnelModel" if cfg.funnel_decoder_layers else "FunnelBaseModel",
            "classify": "FunnelForSequenceClassification", "tokens": "FunnelForTokenClassification"}[cfg.head]
    return dict(model_type="funnel", architectures=[arch], vocab_size=cfg.vocab_size, block_sizes=cfg.funnel_blocks,
                block_repeats=[1] * len(cfg.funnel_blocks), num_decoder_layers=cfg.funnel_decoder_layers or 2,
                d_model=cfg.d_model, n_head=cfg.n_heads, d_head=cfg.head_dim, d_inner=cfg.ffn_hidden,
                hidden_act=hf_activation(cfg.ffn), layer_norm_eps=cfg.norm_eps,
                pooling_type=cfg.funnel_pooling, attention_type="relative_shift",
                separate_cls=cfg.funnel_separate_cls, truncate_seq=cfg.funnel_truncate,
                pool_q_only=cfg.funnel_pool_q_only, max_position_embeddings=cfg.context_length,
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("funnel")(Family(RULES, to_config, from_config, heads={
    "classify": ("FunnelForSequenceClassification", HEADS["classify"]),
    "tokens": ("FunnelForTokenClassification", HEADS["tokens"])}, base_prefix="funnel.", needs=needs,
    more_rules=more_rules))
