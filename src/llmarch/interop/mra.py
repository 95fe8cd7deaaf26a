"""MRA (`model_type: mra`; Zeng et al. 2022): BERT's post-norm layout under `mra.` with MRA-2 attention (attention
'mra', layers/attention_kinds/mra.py) over blocks of 32 tokens (the reference kernels' block), positions counted
from 2 (a table of max_position_embeddings + 2 rows). Its budget of full-resolution block pairs is transformers':
(max_position_embeddings // 32) * block_per_row, at most (max_position_embeddings // 32)^2, whatever the input's
length; `approx_mode`, `initial_prior_first_n_blocks`, `initial_prior_diagonal_n_blocks` as mra_approx,
mra_first_blocks, mra_diagonal_blocks. Heads narrower than 32 are zero-padded to 32 by transformers before its
kernels, so their scores scale by 32^-1/2 (attn_scale). Heads: the masked LM (BERT's names under
`cls.predictions`), the per-token classifier; MraModel reads as head `embed`. Refused: the sequence classifier (its
head's activation is hidden_act, which the pooler does not take)."""
from __future__ import annotations

from ..config import ModelConfig
from .bert import encoder_rules, kind_encoder_needs
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = encoder_rules("mra", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")
TOKENS = [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in ("weight", "bias")]
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$")
_OFFSET = 2  # transformers' position ids: arange + 2
_BLOCK = 32  # the CUDA kernels' block (and warp) size


def _budget(positions: int, per_row: int) -> int:
    rows = positions // _BLOCK
    return min(rows * per_row, rows * rows)  # MraSelfAttention.num_block


def _scale(head_dim: int) -> float | None:
    return _BLOCK ** -0.5 if head_dim < _BLOCK else None


def to_config(hf: dict) -> ModelConfig:
    hf = {"max_position_embeddings": 512, "type_vocab_size": 1, "layer_norm_eps": 1e-5, **hf}
    cfg = bert_config(hf)
    return cfg.replace(name=hf.get("_name_or_path") or "mra", hf_model_type="mra", attention="mra",
                       attention_block=_BLOCK, attn_scale=_scale(cfg.head_dim),
                       mra_blocks=_budget(hf["max_position_embeddings"], hf.get("block_per_row", 4)),
                       mra_approx=hf.get("approx_mode", "full"),
                       mra_first_blocks=hf.get("initial_prior_first_n_blocks", 0),
                       mra_diagonal_blocks=hf.get("initial_prior_diagonal_n_blocks", 0),
                       position_offset=_OFFSET, pad_id=hf.get("pad_token_id", 1) or 0)


def _per_row(cfg: ModelConfig) -> int | None:
    """block_per_row that gives cfg's budget in transformers, or None."""
    rows = cfg.context_length // _BLOCK  # max_position_embeddings
    per_row = -(-cfg.mra_blocks // rows) if rows else 0
    return per_row if rows and _budget(rows * _BLOCK, per_row) == cfg.mra_blocks else None


def needs(cfg: ModelConfig) -> str | None:
    if cfg.attention_block != _BLOCK or cfg.attn_scale != _scale(cfg.head_dim) or _per_row(cfg) is None:
        return (f"attention='mra' over blocks of {_BLOCK}, scores scaled by max(head_dim, 32)^-1/2, and mra_blocks a "
                f"budget transformers derives from max_position_embeddings // {_BLOCK} block rows")
    return kind_encoder_needs(cfg, "mra", _OFFSET)


def from_config(cfg: ModelConfig) -> dict:
    return dict(bert_hf(cfg), model_type="mra", architectures=["MraForMaskedLM"], is_decoder=False,
                block_per_row=_per_row(cfg), approx_mode=cfg.mra_approx,
                initial_prior_first_n_blocks=cfg.mra_first_blocks,
                initial_prior_diagonal_n_blocks=cfg.mra_diagonal_blocks, pad_token_id=cfg.pad_id)


FAMILIES.register("mra")(Family(RULES, to_config, from_config, IGNORE, needs=needs,
                                heads={"tokens": ("MraForTokenClassification", TOKENS)}, base_prefix="mra."))
