"""What a stack adds to its token embeddings before the first block (models/stack.py): the embedding scale, the
absolute positions, token types and the other per-token tables (ERNIE's tasks, XLM's languages, LayoutLM's boxes,
TAPAS's table types), the embedding norm, dropout and projection, and ProphetNet's predicting-stream rows. A mixin of
Stack, so that the tables keep the stack's own parameter names (token_types.weight, as the weight maps name them)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..layers.attention import AttentionContext
from ..layers.box_positions import BoxEmbeddings
from ..layers.input_proj import InputProjection
from ..layers.lang_adapters import default_lang_ids
from ..layers.linear import Linear
from ..layers.norms import make_norm
from ..layers.table_types import TypeTables
from ..layers.token_dropout import drop_mask_tokens


class StackInputs:
    def _init_inputs(self, cfg) -> None:
        """The per-token tables (each None where the config has none), the embedding norm and projections."""
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.sum_width) if cfg.type_vocab_size else None
        self.task_types = nn.Embedding(cfg.task_type_vocab_size, cfg.sum_width) if cfg.task_type_vocab_size else None
        self.lang_embed = nn.Embedding(cfg.lang_vocab_size, cfg.sum_width) if cfg.lang_vocab_size else None
        self.box_embed = BoxEmbeddings(cfg.box_vocab_size, cfg.sum_width) if cfg.box_vocab_size else None
        self.type_tables = TypeTables(cfg.type_vocab_sizes, cfg.sum_width) if cfg.type_vocab_sizes else None
        self.token_proj = Linear(cfg.embed_width, cfg.embed_width) if cfg.token_proj else None
        self.embed_norm = make_norm(cfg, cfg.sum_width) if cfg.embed_norm else None
        # ELECTRA: embeddings narrower than the residual stream, projected into it (embed_dim); FNet: at equal widths
        self.embed_proj = Linear(cfg.embed_width, cfg.d_model) if cfg.sum_width != cfg.d_model or cfg.embed_proj \
            else None
        # MobileBERT: the token embeddings projected into d_model before the positions join them (embed_input)
        self.input_proj = InputProjection(cfg) if cfg.embed_input != "token" else None

    def _add_inputs(self, x: torch.Tensor, ctx: AttentionContext, pos: torch.Tensor, T: int, token_type_ids,
                    input_ids: torch.Tensor | None, task_type_ids: torch.Tensor | None,
                    lang_ids: torch.Tensor | None, bbox: torch.Tensor | None):
        """x (B, T, C) the token embeddings, pos (B, T') their positions (a prompt's slots first): the stream that
        enters the blocks, (B, T, d_model) or (B, 2T, d_model) with ProphetNet's predicting stream, with ctx and pos
        as the blocks read them (ctx: X-MOD's languages, per-layer inputs; pos: TAPAS's positions within cells)."""
        cfg = self._stack_cfg
        if cfg.languages is not None:  # X-MOD's language adapters: each input's language, or the default one
            ctx.lang_ids = lang_ids if lang_ids is not None else default_lang_ids(cfg, x.shape[0], x.device)
        if cfg.embed_scale:  # sqrt(d_model) (Vaswani et al. 2017, §3.4; Gemma), rounded to x's dtype as HF does
            x = x * torch.tensor(cfg.d_model ** 0.5, dtype=x.dtype)
        if self._embed_multiplier is not None:  # Granite: a Python float, as transformers multiplies
            x = x * self._embed_multiplier
        if cfg.embed_affine:
            x = (x + self.input_bias) * self.input_scale
        sub = self._modules  # not nn.Module's attribute fallback: read at every decoded token
        if self.token_proj is not None:  # RoCBert: the token embeddings mapped before positions and types join them
            x = self.token_proj(x)
        x = sub["hook_embed"](x)  # the token embeddings alone, as TransformerLens's hook_embed
        input_proj = sub.get("input_proj")
        if input_proj is not None:
            x = input_proj(x)
        if self.per_layer is not None:  # from the scaled embeddings, as transformers projects them
            ctx = dataclasses.replace(ctx, per_layer=sub["per_layer"](input_ids, x))
        if cfg.token_dropout_id is not None:  # ESM-2: mask tokens' embeddings zeroed, the rest rescaled
            x = drop_mask_tokens(x, input_ids, ctx.pad_mask, cfg.token_dropout_id)
        norm_first = cfg.decoder_embed_norm_first  # BlenderbotSmall's decoder: LN(e) + p
        if norm_first:
            x = self.embed_norm(x)
        if cfg.position_reset_types is not None and token_type_ids is not None:  # TAPAS: positions within a cell
            pos = self.type_tables.cell_positions(pos, token_type_ids, cfg.position_reset_types)
        added = sub["positions"].embed(pos[:, pos.shape[1] - T:])  # the tokens' own (a prompt's slots come first)
        if added is not None:  # absolute positions (learned, sinusoidal), added to the token embeddings
            x = x + sub["hook_pos_embed"](added)
        if self.token_types is not None:
            types = self.token_types
            x = x + (types(token_type_ids) if token_type_ids is not None else types.weight[cfg.default_token_type])
        if self.type_tables is not None:  # TAPAS's table structure: K token types per token
            x = x + self.type_tables(token_type_ids)
        if self.task_types is not None:  # ERNIE's task embeddings, after the token types as transformers adds them
            x = x + (self.task_types(task_type_ids) if task_type_ids is not None else self.task_types.weight[0])
        if self.lang_embed is not None and lang_ids is not None:  # XLM's language embeddings, (B,) or (B, T) ids
            x = x + self.lang_embed(lang_ids if lang_ids.dim() == 2 else lang_ids[:, None])
        if self.box_embed is not None:  # LayoutLM's 2-D positions: each token's box on the page, (0, 0, 0, 0) if none
            x = x + (self.box_embed(bbox) if bbox is not None else self.box_embed.origin())
        ngram = self._parameters.get("ngram_embed")
        if ngram is not None:  # (B, 2T, C): the first predicting stream's rows, one position ahead, after the tokens
            ahead = ngram[-1].to(x.dtype) + sub["positions"].embed(pos + 1)
            x = torch.cat([x, ahead.expand_as(x)], dim=1)
        if self.embed_norm is not None and not norm_first:
            x = self.embed_norm(x)
        x = self.drop(x)
        if self.embed_proj is not None:  # after the embeddings' dropout, as ELECTRA's
            x = self.embed_proj(x)
        return x, ctx, pos
