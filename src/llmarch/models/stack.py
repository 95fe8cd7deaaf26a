"""A stack of transformer blocks and what surrounds them, given token embeddings: what joins them (positions, token
types: inputs.py), the masks, the blocks, the final norm, the KV caches. A decoder-only or encoder-only model is one
stack (TransformerLM subclasses it, so its parameter names stay flat: blocks.0..., ln_final); an
encoder-decoder holds two, the decoder's blocks with cross-attention over the encoder's output."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers import POSITIONS, HookPoint
from ..layers.altup import AltUpStreams
from ..layers.attention import AttentionContext
from ..layers.block import Block, identity
from ..layers.canon import BlockState, Canon
from ..layers.depth_attention import DepthAttention
from ..layers.hyper import HYPER_CONNECTIONS, streams
from ..layers.kv_cache import SharedKV
from ..layers.attention_kinds import ATTENTION_KINDS
from ..layers.norms import make_norm
from ..layers.reversible_backward import reversible_blocks
from ..layers.mixer import MIXERS
from ..layers.per_layer_inputs import PerLayerInputs
from ..layers.recurrence import RECURRENCES
from ..layers.shared_block import SharedBlock
from ..layers.token_blocks import token_blocks
from .inputs import StackInputs
from .masks import causal_mask, document_mask, document_positions, position_ids


class Stack(StackInputs, nn.Module):
    def __init__(self, cfg: ModelConfig, cross: bool = False):
        super().__init__()
        self.positions = POSITIONS[cfg.positions](cfg)
        self._init_inputs(cfg)  # the per-token tables and what joins them (inputs.py)
        self.per_layer = PerLayerInputs(cfg) if cfg.ple_dim else None  # Gemma 3n / Gemma 4's per-layer inputs
        self.altup = AltUpStreams(cfg) if cfg.altup_streams > 1 else None  # Gemma 3n's K residual streams
        # hyper-connections' n residual streams (layers/hyper.py): made from the embedding, merged after the blocks
        self.hc_head = HYPER_CONNECTIONS[cfg.hyper_connection].head(cfg) if cfg.hyper_connection != "none" else None
        # block attention residuals (layers/depth_attention.py): a stack of block sums through the blocks, (B, T, m, C),
        # from which one more depth attention reads the final norm's input
        self.final_depth = DepthAttention(cfg.d_model) if cfg.attn_residual_block else None
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else identity  # no module dispatch when off
        # PEGASUS-X's learned global tokens, put before the tokens after the embeddings and dropped after the blocks
        self.global_embed = nn.Parameter(torch.zeros(cfg.global_tokens, cfg.d_model)) if cfg.global_tokens else None
        if cfg.global_tokens and not any(cfg.for_layer(i).attention == "global_local" for i in range(cfg.n_layers)):
            raise LlmarchError(f"global_tokens={cfg.global_tokens} needs global_local attention, which lets the "
                               "tokens see them, in some layer of the stack")
        # ProphetNet's predicting-stream table (ngram_streams rows); the first stream reads the last row
        self.ngram_embed = nn.Parameter(torch.zeros(cfg.ngram_streams, cfg.d_model)) if cfg.ngram_streams else None
        if cfg.ngram_streams and any(cfg.for_layer(i).attention != "ngram" for i in range(cfg.n_layers)):
            raise LlmarchError(f"ngram_streams={cfg.ngram_streams} needs attention 'ngram' in every layer of the "
                               "stack, which keeps the predicting stream apart from the tokens")
        if cfg.embed_affine:  # ZAYA1: the token embeddings as (e + b) * s
            d = cfg.d_model
            self.input_bias, self.input_scale = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.ones(d))
        # ALBERT's cross-layer sharing (layer_groups): G blocks, layer i runs block block_order[i] (i * G // n_layers;
        # with layer_groups_cyclic, Perceiver IO's repeats of all G in order, i mod G); else one per layer
        groups = cfg.layer_groups
        self.block_order = [i % groups if cfg.layer_groups_cyclic else i * groups // cfg.n_layers
                            for i in range(cfg.n_layers)] if groups else None
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i), cross=cross, layer=i)
                                    for i in range(cfg.layer_groups or cfg.n_layers))
        # a recurrence (layers/recurrence.py: HRM's two modules) runs the blocks in its own order, each invocation
        # with a decode state of its own (_runs), set on the block's mixer before it runs
        self.recurrence = RECURRENCES[cfg.recurrence](cfg) if cfg.recurrence != "none" else None
        self._runs: list | None = None
        # Zamba's shared transformer blocks (layers/shared_block.py): held here once, run by the layers whose mixer
        # reads them, each through ctx.shared_blocks; the j-th such layer runs block j mod shared_blocks
        users = [b.seq_mixer for i, b in enumerate(self.blocks) if MIXERS[cfg.layer_mixer(i)].reads_shared_blocks]
        self.shared_blocks = nn.ModuleList(SharedBlock(cfg) for _ in range(cfg.shared_blocks)) if users else None
        for j, mixer in enumerate(users):
            mixer.block_id = j % cfg.shared_blocks
        for i, block in enumerate(self.blocks):  # the last kv_shared_layers read an earlier layer's keys and values
            if getattr(block.seq_mixer, "kv_shared", False):
                block.seq_mixer.kv_from = cfg.kv_source(i)
        # a layer type whose rotary positions differ (Gemma 3's local RoPE base, SmolLM3's NoPE layers) gets
        # its own positions; the others share the stack's
        self._types = [cfg.layer_type(i) for i in range(cfg.n_layers)]
        self.layer_positions = nn.ModuleDict({
            t: POSITIONS[lc.positions](lc) for t in dict.fromkeys(self._types)
            if t is not None and _rotary_fields(lc := cfg.for_layer(self._types.index(t))) != _rotary_fields(cfg)})
        final = cfg if cfg.final_norm_eps is None else cfg.replace(norm_eps=cfg.final_norm_eps)
        final = final if cfg.final_norm_bias is None else final.replace(norm_bias=cfg.final_norm_bias)
        self.ln_final = make_norm(final, cfg.final_width) if cfg.final_norm else nn.Identity()
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.ln_final.hook_normalized = HookPoint()
        self._stack_cfg = cfg  # this stack's own config (an encoder-decoder's model config differs)
        # Granite's embedding_multiplier, read once here: None (1.0) costs a forward nothing
        self._embed_multiplier = cfg.embed_multiplier if cfg.embed_multiplier != 1.0 else None
        # each block's Canon layers (canon_kv, canon_out), whose histories join its mixer's decode state
        self._canons = [[m for m in b.modules() if isinstance(m, Canon)] for b in self.blocks]
        # whether some layer's attention reads ctx.mask
        self._uses_mask = any(ATTENTION_KINDS[cfg.for_layer(i).attention].uses_mask for i in range(cfg.n_layers))
        # whether every layer attends through ctx.mask, so packed documents can be kept apart (document_ids)
        self.packable = cfg.causal and all(
            lc.mixer == "attention" and ATTENTION_KINDS[lc.attention].uses_mask
            for lc in map(cfg.for_layer, range(cfg.n_layers)))

    # ---- KV cache and recurrent state ---------------------------------------------------------
    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None, bounded: bool = False) -> None:
        """Every block's mixer gets the decode state it needs for `batch` sequences of up to max_len tokens (a
        KV cache, a recurrent state, ...: Mixer.new_state); bounded: for decoding that only moves forward, a
        prompt and then one token at a time, where a state may hold only what later tokens read (a sliding
        window's ring: Mixer.bounded_state)."""
        cfg = self._stack_cfg
        slots = max_len + cfg.task_prompt  # the prompt's slots first (task_prompt)
        if slots > cfg.context_length:
            raise LlmarchError(f"cache length {slots} exceeds context_length {cfg.context_length}")
        w = next(self.blocks[0].parameters())
        if self.recurrence is not None:  # each invocation's state, its block's Canon histories with it
            self._runs = [self._new_state(j, batch, slots, dtype or w.dtype, w.device) for j in self.recurrence.order()]
            self.set_caches(self._runs, max_len)
            return
        for i, block in enumerate(self.blocks):
            if cfg.kv_source(i) != i:  # its keys and values are an earlier layer's: so is its cache
                block.seq_mixer.cache = SharedKV(self.blocks[cfg.kv_source(i)].seq_mixer.cache)
                continue
            make = block.seq_mixer.bounded_state if bounded else block.seq_mixer.new_state
            block.seq_mixer.cache = make(batch, slots, dtype or w.dtype, w.device)
            for canon in self._canons[i]:
                canon.cache = canon.new_state(batch, slots, dtype or w.dtype, w.device)
        self._cache_max_len = slots

    def _new_state(self, j: int, batch: int, slots: int, dtype: torch.dtype, device) -> object:
        """A new decode state of block j's: its mixer's, with its Canon layers' histories where it has some."""
        state = self.blocks[j].seq_mixer.new_state(batch, slots, dtype, device)
        canons = self._canons[j]
        return BlockState(state, [c.new_state(batch, slots, dtype, device) for c in canons]) if canons else state

    def _put_state(self, j: int, state) -> None:
        """Block j (its mixer, its Canon layers) decodes over state."""
        if isinstance(state, BlockState):
            for canon, history in zip(self._canons[j], state.canons):
                canon.cache = history
            state = state.mixer
        self.blocks[j].seq_mixer.cache = state

    def clear_cache(self) -> None:
        self._runs = None
        for block, canons in zip(self.blocks, self._canons):
            block.seq_mixer.cache = None
            for canon in canons:
                canon.cache = None
            if getattr(block, "cross", False) or getattr(block, "merged", False):
                block.set_memory(None)

    def caches(self) -> list:
        """Each block's decode state (None where generation is not set up); with a recurrence, each invocation's."""
        if self.recurrence is not None:
            return list(self._runs) if self._runs is not None else [None] * len(self.recurrence.order())
        return [BlockState(b.seq_mixer.cache, [c.cache for c in canons]) if canons else b.seq_mixer.cache
                for b, canons in zip(self.blocks, self._canons)]

    def set_caches(self, states: list, max_len: int) -> None:
        """Every block's decode state, as caches() lists them, for sequences of up to max_len tokens
        (continuous batching swaps in a one-row state to prefill a request alone: generate/batch.py)."""
        max_len = max_len + self._stack_cfg.task_prompt  # the prompt's slots first (task_prompt)
        if self.recurrence is not None:
            self._runs = list(states)
            for j, state in zip(self.recurrence.order(), states):  # each block holds some state: cache_len reads it
                self._put_state(j, state)
            self._cache_max_len = max_len
            return
        for block, canons, state in zip(self.blocks, self._canons, states):
            if isinstance(state, BlockState):
                state, histories = state.mixer, state.canons
                for canon, history in zip(canons, histories):
                    canon.cache = history
            block.seq_mixer.cache = state
        self._cache_max_len = max_len

    def reorder_cache(self, rows: torch.Tensor) -> None:
        """Batch row r of every mixer's state takes row rows[r]'s contents (beam search)."""
        if self.recurrence is not None:
            for state in self._runs:
                state.reorder(rows)
            return
        for block, canons in zip(self.blocks, self._canons):
            block.seq_mixer.cache.reorder(rows)
            for canon in canons:
                canon.cache.reorder(rows)

    @property
    def cache_len(self) -> int | None:
        return None if self.blocks[0].seq_mixer.cache is None else self._cache_max_len

    # ---- forward -------------------------------------------------------------------------------
    def run(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, input_pos: torch.Tensor | None = None,
            kv_len: int | None = None, token_type_ids: torch.Tensor | None = None, last_only: bool = False,
            memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
            global_attention_mask: torch.Tensor | None = None,
            document_ids: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
            task_type_ids: torch.Tensor | None = None, lang_ids: torch.Tensor | None = None,
            prefix_mask: torch.Tensor | None = None, prompt: torch.Tensor | None = None,
            bbox: torch.Tensor | None = None, rope_pos: torch.Tensor | None = None,
            rope_delta: torch.Tensor | None = None, deepstack: list | None = None) -> torch.Tensor:
        """x (B, T, C): token embeddings. Masks, positions and caches as in TransformerLM.forward; memory (B, S, C) and
        memory_mask (B, S) feed the cross-attention of a decoder stack, or Llama 3.2 Vision's image states and the tiles
        each token sees, (B, T, S), its cross-attention layers (layers/vision_cross.py); input_ids (B, T): the tokens of
        x, which per-layer inputs (ple_dim) look up; prefix_mask (B, T): a causal stack's prefix-LM prefix, whose tokens
        attend to each other both ways (masks.causal_mask; None: none, or with prefix_bidirectional the whole call);
        prompt (P, C): the input of the prompt tokens (task_prompt), put before x in a sequence's first call (slot 0).
        rope_pos (3, B, T): M-RoPE positions of this call's tokens (config mrope_section; images' tokens:
        vision/qwen_inputs.py) that RoPE turns by in place of their row positions; rope_delta (B,): added to the row
        positions of tokens after such a prompt (cached decoding). deepstack: (B, T, C) tensors added to the hidden
        states after blocks 0, 1, ... (Qwen3-VL's DeepStack image features, zero off the image tokens). Returns the
        final hidden states (B, T, C), or (B, 1, C) with last_only."""
        if (rope_pos is not None or rope_delta is not None) and self._stack_cfg.mrope_section is None:
            raise LlmarchError("rope_pos and rope_delta are M-RoPE positions, for a config with mrope_section")
        if deepstack is not None and (self.recurrence is not None or self._stack_cfg.reversible_backward):
            raise LlmarchError("DeepStack features are added after the first blocks of a plain stack (no recurrence "
                               "or reversible blocks)")
        if self.per_layer is not None and input_ids is None:
            raise LlmarchError("per-layer input embeddings (ple_dim) need the token ids beside their embeddings")
        if document_ids is not None:
            return self._run_packed(x, document_ids, last_only, input_ids)
        if prefix_mask is not None and not self.packable:
            raise LlmarchError("a prefix-LM prefix (prefix_mask) needs causal attention through the dense mask in "
                               "every layer")
        cfg = self._stack_cfg
        B, T = x.shape[:2]
        if input_pos is None:
            input_pos = torch.arange(T, device=x.device)
        P = cfg.task_prompt
        if P:  # the prompt holds slots 0..P-1: the caller's slots, masks and lengths move past it
            prompt = prompt if int(input_pos[0]) == 0 else None  # a sequence's first call brings it
            input_pos, kv_len = input_pos + P, kv_len and kv_len + P
            if attention_mask is not None:
                attention_mask = nn.functional.pad(attention_mask, (P, 0), value=1)
            if prompt is not None:
                input_pos = torch.cat([torch.arange(P, device=x.device), input_pos])
                T = T + P
                if prefix_mask is not None:  # the prompt's slots are the prefix's too
                    prefix_mask = nn.functional.pad(prefix_mask.bool(), (P, 0), value=True)
        if prefix_mask is None and cfg.prefix_bidirectional and T > 1:  # CPM-Ant: a call's tokens see each other
            prefix_mask = torch.ones(B, T, dtype=torch.bool, device=x.device)
        blocks = None  # a call without the token keeps the causal kernels and the sliding layers' blockwise engine
        if cfg.bidirectional_token is not None and T > 1 and input_ids is not None \
                and bool((input_ids == cfg.bidirectional_token).any()):
            blocks = token_blocks(input_ids, cfg.bidirectional_token)
        key_len = kv_len or self.cache_len or T
        # slots past the mask are future tokens: real, hidden by causality
        pad_mask = _key_slots(attention_mask, key_len, True)
        row_pos = position_ids(input_pos, B, pad_mask)  # (B, T)
        pos = row_pos + cfg.position_offset if cfg.position_offset else row_pos
        if rope_delta is not None:
            pos = pos + rope_delta[:, None]
        positions = self._modules["positions"]  # not nn.Module's attribute fallback: read at every decoded token
        bias = positions.bias(input_pos, key_len, pad_mask)  # (B|1, H, T|1, S), (L, ...) per layer, or None
        # Without padding, a lone query over exactly the filled slots, or T queries over T keys, needs no mask
        # (unless a position bias enters the scores). Other attention kinds build their own from pad_mask.
        plain = pad_mask is None and (key_len == T or (T == 1 and kv_len is not None)) and bias is None
        plain = (plain and prefix_mask is None and blocks is None) or not self._uses_mask
        if cfg.causal:
            # bidirectional_sliding: the full layers' mask stays causal; the sliding ones build theirs from blocks
            full_blocks = None if cfg.bidirectional_sliding else blocks
            mask = None if plain else causal_mask(input_pos, key_len, pad_mask, prefix_mask, full_blocks)
        else:  # bidirectional: every real token sees every real token
            mask = None if pad_mask is None else pad_mask[:, None, None, :]
        if bias is not None:  # the bias, with -inf where attention is barred
            mask = bias if mask is None else torch.where(mask, bias, float("-inf"))
        causal = cfg.causal and T > 1 and prefix_mask is None and blocks is None
        ctx = AttentionContext(mask=mask, causal=causal, rope=positions.rotary(pos if rope_pos is None else rope_pos),
                               input_pos=input_pos,
                               positions=row_pos, kv_len=kv_len, memory=memory, pad_mask=pad_mask,
                               global_mask=_key_slots(global_attention_mask, key_len, False),
                               memory_mask=_memory_mask(memory_mask),
                               shared_kv={} if cfg.kv_shared_layers or cfg.kv_source_layers else None,
                               relative=positions.relative(input_pos, key_len),
                               side_bias=positions.side_bias(input_pos, key_len, pad_mask), rotary=positions.rotary,
                               input_ids=input_ids, token_type_ids=token_type_ids, blocks=blocks)
        return self._layers(x, ctx, pos, token_type_ids, last_only, input_ids, task_type_ids, lang_ids, prompt,
                            bbox, deepstack)

    def _run_packed(self, x: torch.Tensor, document_ids: torch.Tensor, last_only: bool,
                    input_ids: torch.Tensor | None) -> torch.Tensor:
        """Several documents packed into each row (B, T), document_ids numbering them: each token attends
        causally within its own document and its positions restart at 0 there, so a packed row computes what
        its documents would alone (masks.document_mask). Full forwards only, with no cache."""
        if not self.packable or self.cache_len is not None:
            raise LlmarchError("packed documents (document_ids) need causal attention through the dense mask in "
                               "every layer (no recurrent mixers or sliding windows) and no KV cache")
        T = x.shape[1]
        row_pos = document_positions(document_ids)  # (B, T)
        pos = row_pos + self._stack_cfg.position_offset
        mask = document_mask(document_ids)  # (B, 1, T, T)
        bias = self.positions.bias(torch.arange(T, device=x.device), T, None)
        if bias is not None:
            mask = torch.where(mask, bias, float("-inf"))
        cfg = self._stack_cfg
        ctx = AttentionContext(mask=mask, causal=True, rope=self.positions.rotary(pos),
                               input_pos=torch.arange(T, device=x.device), positions=row_pos,
                               shared_kv={} if cfg.kv_shared_layers or cfg.kv_source_layers else None,
                               relative=self.positions.relative(torch.arange(T, device=x.device), T),
                               input_ids=input_ids)
        return self._layers(x, ctx, pos, None, last_only, input_ids)

    def _invoke(self, k: int, x: torch.Tensor, ctxs: dict, messages: torch.Tensor | None = None) -> torch.Tensor:
        """A recurrence's invocation k: its block on x, with its layer type's context (ctxs: by type, None the
        stack's), over the invocation's own decode state when decoding; messages: what the recurrence hands the block
        (Inkling 2 Loop's, loop_messages.py), or None."""
        j = self.recurrence.order()[k]
        if self._runs is not None:
            self._put_state(j, self._runs[k])
        ctx = ctxs.get(self._types[j], ctxs[None])
        return self._modules["blocks"][j](x, ctx if messages is None else dataclasses.replace(ctx, messages=messages))

    def _layer_ctx(self, i: int, ctxs: dict, ctx: AttentionContext, per_layer: bool) -> AttentionContext:
        """Layer i's context: its layer type's, with its own mask where the positions give one per layer."""
        c = ctxs.get(self._types[i], ctx)
        return dataclasses.replace(c, mask=c.mask[i]) if per_layer else c

    def _layers(self, x: torch.Tensor, ctx: AttentionContext, pos: torch.Tensor, token_type_ids, last_only: bool,
                input_ids: torch.Tensor | None = None, task_type_ids: torch.Tensor | None = None,
                lang_ids: torch.Tensor | None = None, prompt: torch.Tensor | None = None,
                bbox: torch.Tensor | None = None, deepstack: list | None = None):
        """What joins the embeddings (inputs.py), then the blocks (deepstack: Stack.run's) and the final norm."""
        cfg = self._stack_cfg
        T = x.shape[1]
        x, ctx, pos = self._add_inputs(x, ctx, pos, T, token_type_ids, input_ids, task_type_ids, lang_ids, bbox)
        sub = self._modules  # not nn.Module's attribute fallback: read at every decoded token
        if prompt is not None:  # (B, P + T, C): the prompt tokens first
            x = torch.cat([prompt.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        glob = self._parameters.get("global_embed")
        if glob is not None:  # (B, G + T, C): the global tokens first
            x = torch.cat([glob.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        if self.shared_blocks is not None:  # they read the stream entering the first block beside their layer's
            ctx = dataclasses.replace(ctx, shared_blocks=sub["shared_blocks"], embeds=x)
        if cfg.moe_shortcut:  # the shortcut mixtures' outputs, carried to the next block (layers/block.py)
            ctx = dataclasses.replace(ctx, carry={})
        ctxs = {None: ctx}
        for t, positions in sub["layer_positions"].items():
            ctxs[t] = dataclasses.replace(ctx, rope=positions.rotary(pos),
                                          rotary=None if ctx.rotary is None else positions.rotary)
        altup = sub.get("altup")
        if altup is not None:  # AltUp: K streams through the blocks, (K, B, T, C), then one again
            x = altup.split(x)
        hc_head = sub.get("hc_head")
        if hc_head is not None:  # hyper-connections: n streams through the blocks, (B, T, n, C)
            x = streams(x, cfg.hc_streams)
        final_depth = sub.get("final_depth")
        if final_depth is not None:  # the stack of block sums: none finished, the embeddings the partial one
            x = x.unsqueeze(2)
        per_layer = sub["positions"].per_layer  # a bias, hence a mask, per layer (L, B|1, H, T, S): UMT5
        blocks = sub["blocks"] if self.block_order is None else [sub["blocks"][j] for j in self.block_order]
        if self.recurrence is not None:  # its own schedule (no per-layer bias: its check); a context it derives (c)
            x = sub["recurrence"](x, lambda k, h, c=None, messages=None: self._invoke(
                k, h, ctxs if c is None else {None: c}, messages), ctx)
        elif cfg.reversible_backward and self.training and torch.is_grad_enabled():  # RevNet's backward
            x = reversible_blocks(x, blocks, [self._layer_ctx(i, ctxs, ctx, per_layer) for i in range(len(blocks))])
        else:
            for i, block in enumerate(blocks):
                x = block(x, self._layer_ctx(i, ctxs, ctx, per_layer))
                if deepstack is not None and i < len(deepstack):
                    x = x + deepstack[i]
        if altup is not None:
            x = altup.merge(x)
        if hc_head is not None:
            x = hc_head(x)
        if final_depth is not None:
            x = final_depth(x)[:, :, 0].to(x.dtype)
        if glob is not None:
            x = x[:, glob.shape[0]:]
        if self.ngram_embed is not None:  # the predicting stream (inputs.py): what the head reads
            x = x[:, T:]
        if prompt is not None:
            x = x[:, prompt.shape[0]:]
        if last_only and T > 1:
            x = x[:, -1:]
        ln_final = sub["ln_final"]
        return ln_final._modules["hook_normalized"](ln_final(x))


def _rotary_fields(cfg: ModelConfig) -> tuple:
    """What a layer type's rotary tables depend on: its positions kind, head width and every rope_* field."""
    return tuple(getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                 if f.name in ("positions", "head_dim") or f.name.startswith("rope_"))


def _memory_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A memory mask (B, S) or per query (B, T, S) as attention reads it, bool (B, 1, 1|T, S)."""
    if mask is None:
        return None
    return mask.bool()[:, None, None, :] if mask.dim() == 2 else mask.bool()[:, None]


def _key_slots(mask: torch.Tensor | None, key_len: int, fill: bool) -> torch.Tensor | None:
    """A (B, S') 0/1 mask as bool over key slots 0..key_len-1, slots past it filled with `fill`."""
    if mask is None:
        return None
    mask = mask[:, :key_len].bool()
    return nn.functional.pad(mask, (0, key_len - mask.shape[1]), value=fill) if mask.shape[1] < key_len else mask


def check_ids(input_ids: torch.Tensor, cfg: ModelConfig, cache_len: int | None, what: str = "input_ids",
              vocab: int | None = None) -> None:
    """vocab: the ids' vocabulary size, if not cfg.vocab_size (an encoder's own source vocabulary)."""
    vocab = vocab or cfg.vocab_size
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise LlmarchError(f"{what} must be an integer tensor, got {input_ids.dtype}")
    if input_ids.dim() != 2:
        raise LlmarchError(f"{what} must have shape (batch, seq), got {tuple(input_ids.shape)}")
    T = input_ids.shape[1]
    if cache_len is None and T > cfg.context_length:
        raise LlmarchError(f"sequence of {T} tokens is longer than context_length {cfg.context_length}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab):
        bad = input_ids[(input_ids < 0) | (input_ids >= vocab)][0].item()
        raise LlmarchError(f"token id {bad} out of range for vocab_size {vocab}")
