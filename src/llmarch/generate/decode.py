"""generate(): one prefill over the (left-padded) prompts, then one token at a time from the KV cache."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import LlmarchError
from ..data.batching import pad
from ..layers.positions import apply_rotary
from ..transforms import compiled_decode_step
from .beam import beam_search
from .sampling import sample
from .seq2seq import check_beam_args, generate_seq2seq


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> ids (B, T) padded on the left, and mask (B, T) of real tokens."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise LlmarchError("every prompt needs at least one token")
    return pad(prompts, pad_id, left=True)


def one_token_step_applies(model, total: int) -> bool:
    """Whether decode_one_token computes exactly what model.forward does for this model: a plain LM (no
    segment embeddings, embedding norm or scale, or head transform), a window that hides none of the total
    slots, and no forward hooks anywhere (the short path skips the hook points, so attached hooks would not run)."""
    cfg = model.config
    plain = cfg.head == "lm" and not (cfg.head_transform or cfg.type_vocab_size or cfg.embed_norm or cfg.embed_scale)
    # full attention, or a window that hides none of the slots (the short path attends to all of them)
    window_ok = cfg.attention == "full" or (cfg.attention == "sliding_window" and cfg.sliding_window >= total)
    hooked = nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks or any(
        m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    attention_only = all(b.mixer_kind == "attention" for b in model.blocks)  # the short path is attention's
    return plain and window_ok and attention_only and not hooked


def decode_one_token(model, tok: torch.Tensor, slot: torch.Tensor, kv_len: int) -> torch.Tensor:
    """Logits (B, 1, V) of one new token per row, tok (B, 1) written at cache slot `slot` (1,), with kv_len slots
    filled after it and no padding: model(tok, input_pos=slot, kv_len=kv_len).logits in eval mode, the same ops
    on the same modules, minus what one token never needs (masks, hook points, the forward's bookkeeping). On a
    small model decoding on CPU that per-token overhead is ~20% of a step (docs/benchmarks.md). Valid only
    where one_token_step_applies(model, kv_len): with no hooks anywhere, calling a module's .forward directly is
    the same as calling the module, minus nn.Module's dispatch (~4 µs a call on that CPU, ~50 calls a token)."""
    B = tok.shape[0]
    pos = slot[None].expand(B, 1)
    if model.config.position_offset:
        pos = pos + model.config.position_offset
    x = model.embed.forward(tok)  # (B, 1, C)
    added = model.positions.embed(pos)
    if added is not None:
        x = x + added
    rope = model.positions.rotary(pos)
    bias = model.positions.bias(slot, kv_len)  # (1, H, 1, S) or None: one query over filled slots needs no mask
    for block in model.blocks:
        x = _block_one(block, x, slot, kv_len, rope, bias)
    return model._head(model.ln_final.forward(x), None)  # the model's own head (and its head_scale)


def _block_one(block, x: torch.Tensor, slot: torch.Tensor, kv_len: int, rope, bias) -> torch.Tensor:
    """Block.forward of a decoder-only model (no cross-attention) in eval mode, without its hook points."""
    if block.parallel:
        h = block.ln1.forward(x)
        return x + _attend_one(block.attn, h, slot, kv_len, rope, bias) + block.mlp.forward(
            h if block.ln2 is None else block.ln2.forward(x))
    if block.pre_norm:
        x = x + _attend_one(block.attn, block.ln1.forward(x), slot, kv_len, rope, bias)
        return x + block.mlp.forward(block.ln2.forward(x))
    x = block.ln1.forward(x + _attend_one(block.attn, x, slot, kv_len, rope, bias))
    return block.ln2.forward(x + block.mlp.forward(x))


def _attend_one(attn, x: torch.Tensor, slot: torch.Tensor, kv_len: int, rope, bias) -> torch.Tensor:
    """Attention.forward for one query over the kv_len filled cache slots: no causal mask, only a position bias."""
    B = x.shape[0]
    # With one token, (B, 1, heads, D) and (B, heads, 1, D) are the same memory: a view, no transposes.
    q, k, v = attn.qkv_proj.forward(x).view(B, -1, 1, attn.head_dim).split(attn.qkv_heads, dim=1)  # (B, H|K|K, 1, D)
    q, k = attn.qk_normed(q, k)
    if rope is not None:
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    k, v = attn.kv_cache.update(slot, k, v)
    y = attn.kernel(q, k[:, :, :kv_len], v[:, :, :kv_len], bias, False, 0.0, attn.hook_pattern, attn.scale)
    return attn.o_proj.forward(y.reshape(B, 1, -1))


@torch.inference_mode()
def generate(model, input_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, eos_id: int | None = None, attention_mask: torch.Tensor | None = None,
             seed: int | None = None, on_tokens: Callable[[torch.Tensor], None] | None = None,
             num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool | str = False,
             compile: bool = False):
    """Decode up to max_new_tokens after each prompt (fewer if a row emits eos_id or the context fills).
    compile: decode each new token with transforms.compiled_decode_step (one fixed-shape graph over a cache
    of the whole context; CUDA graphs on CUDA) instead of eagerly.
    num_beams > 1: beam search (beam.py) with length_penalty and early_stopping (True, False or "never"),
    returning each row's best hypothesis. Encoder-decoders: see seq2seq.generate_seq2seq (input_ids are the
    sources; the result is the decoder's sequences).

    input_ids: a (B, T) tensor (left-padded, with attention_mask) or a list of token-id lists of any lengths.
    Returns the same kind: a (B, T + n) tensor of prompt + new ids (rows finished early hold eos_id after
    their end), or a list of lists, each its prompt + new ids up to and including eos_id.
    on_tokens receives each step's new ids (B,) as they are produced (streaming)."""
    check_beam_args(num_beams, temperature, length_penalty, early_stopping)
    if compile and (model.config.is_encoder_decoder or num_beams > 1):
        raise LlmarchError("compile is implemented for greedy and sampled decoding of decoder-only models")
    if model.config.is_encoder_decoder:
        return generate_seq2seq(model, input_ids, max_new_tokens, temperature, top_k, top_p, eos_id, attention_mask,
                                seed, on_tokens, num_beams, length_penalty, early_stopping)
    if not model.config.causal:
        raise LlmarchError(f"{model.config.name} is bidirectional (causal=False) and cannot generate left to right")
    as_lists = not isinstance(input_ids, torch.Tensor)
    pad_id = eos_id if eos_id is not None else 0
    if as_lists:
        input_ids, attention_mask = left_pad(input_ids, pad_id)
    if max_new_tokens < 0:
        raise LlmarchError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    B, T = input_ids.shape
    ctx = model.config.context_length
    if T > ctx:
        raise LlmarchError(f"prompt of {T} tokens is longer than the model's context_length {ctx}")
    max_new_tokens = min(max_new_tokens, ctx - T)
    total = T + max_new_tokens
    mask = None  # (B, total) real-token mask, needed only when some prompt is left-padded
    if attention_mask is not None and not bool(attention_mask.all()):
        mask = torch.ones(B, total, dtype=torch.long, device=device)
        mask[:, :T] = attention_mask.to(device)
    if num_beams > 1:
        return _beam_decode(model, input_ids, mask, max_new_tokens, eos_id, pad_id, num_beams, length_penalty,
                            early_stopping, as_lists)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    out = torch.full((B, total), pad_id, dtype=torch.long, device=device)
    out[:, :T] = input_ids
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n = 0
    was_training = model.training
    model.eval()
    model.setup_cache(B, ctx if compile else total)  # compiled: one cache shape for every call
    short_step = mask is None and one_token_step_applies(model, total) and not compile
    compiled = compiled_decode_step(model) if compile else None
    slots = torch.arange(total, device=device)  # step i reads slots[T + i : T + i + 1]: a view, no allocation
    try:
        logits = model(input_ids, attention_mask=mask, input_pos=slots[:T], last_only=True, kv_len=T).logits
        for i in range(max_new_tokens):
            tok = sample(logits[:, -1], temperature, top_k, top_p, generator)
            if eos_id is not None:
                tok = tok.masked_fill(done, eos_id)
                done |= tok == eos_id
            out[:, T + i] = tok
            n = i + 1
            if on_tokens is not None:
                on_tokens(tok)
            if i + 1 == max_new_tokens or (eos_id is not None and bool(done.all())):
                break
            slot = slots[T + i:T + i + 1]
            if compiled is not None:
                logits = compiled(tok[:, None], slot, mask)
            elif short_step:
                logits = decode_one_token(model, tok[:, None], slot, T + i + 1)
            else:
                logits = model(tok[:, None], attention_mask=mask, input_pos=slot, kv_len=T + i + 1).logits
    finally:
        model.clear_cache()
        model.train(was_training)
    return _finish(out[:, :T + n], mask, T, eos_id, as_lists)


def _finish(out: torch.Tensor, mask: torch.Tensor | None, T: int, eos_id: int | None, as_lists: bool):
    """The tensor as it is, or each row without its left padding and cut after its first new eos."""
    if not as_lists:
        return out
    B = out.shape[0]
    rows = []
    for b in range(B):
        start = 0 if mask is None else int((mask[b, :T] == 0).sum())
        row = out[b, start:].tolist()
        if eos_id is not None and eos_id in row[T - start:]:
            row = row[: row.index(eos_id, T - start) + 1]
        rows.append(row)
    return rows


def _beam_decode(model, input_ids: torch.Tensor, mask: torch.Tensor | None, max_new_tokens: int, eos_id: int | None,
                 pad_id: int, num_beams: int, length_penalty: float, early_stopping, as_lists: bool):
    """Beam search for a decoder-only model: each prompt repeated per beam, one prefill, then a step per token."""
    B, T = input_ids.shape
    rows_ids = input_ids.repeat_interleave(num_beams, dim=0)
    rows_mask = None if mask is None else mask.repeat_interleave(num_beams, dim=0)
    was_training = model.training
    model.eval()
    model.setup_cache(B * num_beams, T + max_new_tokens)
    slots = torch.arange(T + max_new_tokens, device=input_ids.device)
    state = {"n": T}

    def step(tokens: torch.Tensor) -> torch.Tensor:
        n = state["n"] = state["n"] + 1
        return model(tokens[:, None], attention_mask=rows_mask, input_pos=slots[n - 1:n], kv_len=n).logits[:, -1]

    try:
        first = model(rows_ids, attention_mask=rows_mask, input_pos=slots[:T], last_only=True, kv_len=T).logits[:, -1]
        fill = eos_id if eos_id is not None else pad_id
        out = beam_search(first, step, model.reorder_cache, input_ids, num_beams, max_new_tokens, eos_id, fill,
                          length_penalty, early_stopping)
    finally:
        model.clear_cache()
        model.train(was_training)
    return _finish(out, mask, T, eos_id, as_lists)
