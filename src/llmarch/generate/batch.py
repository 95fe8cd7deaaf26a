"""Continuous batching (Yu et al. 2022, Orca's iteration-level scheduling) over the decoding engine: requests
join and leave one running batch at token boundaries, over one static cache of `rows` sequences.

The engine shares one slot pointer across rows and lets rows of different lengths share a batch by left
padding (each row's positions count its real slots, models/masks.py). So a request is prefilled alone, in a
one-row cache of its prompt's length (the very computation `generate` does for it), and its decode state is
then copied into a free row, right-aligned to the pointer: the slots before it are that row's padding
(`state.put_row`, layers/mixer.py). Every decode step then writes one token per row at the pointer. When the
pointer reaches the end of the cache, every row moves left by the smallest leading padding (`state.shift`),
which is at least one slot: a request's prompt and new tokens never exceed the context, so no row fills the
whole cache. A prompt longer than the pointer moves the rows right instead, to make room before it.
A step decodes the rows up to the last one in use (`state.rows`: views of the first rows; requests take the
lowest free rows), free rows among them masked, their tokens unused.
A model with M-RoPE (config mrope_section: Qwen-VL) keeps each row's delta beside its states: the shift of every
token after a prompt with images (vision/qwen_inputs.py), 0 for a text prompt; a decode step adds each row's own."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from .engine import Engine

ROW_PROTOCOL = ("put_row", "shift", "rows")


class RunningBatch:
    def __init__(self, model, rows: int, max_len: int | None = None):
        """rows sequences of up to max_len tokens (default: the model's context)."""
        cfg = model.config
        if cfg.is_encoder_decoder or not cfg.causal or cfg.head != "lm":
            raise LlmarchError(f"{cfg.name}: continuous batching serves decoder-only language models")
        if cfg.codebooks:  # each row would be K streams of one sequence (generate/streams.py decodes them)
            raise LlmarchError(f"{cfg.name} reads {cfg.codebooks} parallel token streams (config codebooks): "
                               "continuous batching serves one stream of text tokens")
        if rows < 1:
            raise LlmarchError(f"a running batch needs at least one row, got {rows}")
        self.model, self.max_len = model, max_len or cfg.context_length
        device = next(model.parameters()).device
        self.mask = torch.zeros(rows, self.max_len, dtype=torch.long, device=device)  # 1: a real slot
        # the batch only moves forward: a sliding window's layers keep a ring of w slots per row (ring_cache.py)
        self.engine = Engine(model, rows, self.max_len, self.mask, bounded=True)
        self.states = model.caches()
        for state in self.states:
            missing = [m for m in ROW_PROTOCOL if not hasattr(state, m)]
            if missing:
                raise LlmarchError(f"{cfg.name}: a {type(state).__name__} decode state cannot join a running "
                                   f"batch (it has no {', '.join(missing)}); serve it one request at a time")
        self.start: list[int | None] = [None] * rows  # each row's first real slot; None: a free row
        # each row's M-RoPE delta (rows,); None: a model without M-RoPE, whose positions take no shift
        self.delta = None if cfg.mrope_section is None else torch.zeros(rows, dtype=torch.long, device=device)
        self.views: dict[int, list] = {}

    def close(self) -> None:
        self.engine.__exit__(None, None, None)

    @property
    def length(self) -> int:
        return self.engine.length

    def free_rows(self) -> list[int]:
        return [r for r, s in enumerate(self.start) if s is None]

    def active(self) -> list[int]:
        return [r for r, s in enumerate(self.start) if s is not None]

    @torch.inference_mode()
    def prefill(self, ids: list[int], all_logits: bool = False,
                images: dict | None = None) -> tuple[list, torch.Tensor]:
        """A prompt alone in a one-row cache of its length -> (its decode states, logits (V,) after its last
        token, or (P, V) after each of its tokens with all_logits). The running batch's cache is untouched.
        images: the model's image arguments (vision/preprocess.py: pixel_values, and image_grid_thw for Qwen-VL),
        whose features take the prompt's image tokens (TransformerLM.forward's keyword arguments)."""
        P = len(ids)
        if not 0 < P <= self.max_len:
            raise LlmarchError(f"a prompt needs 1 to {self.max_len} tokens, got {P}")
        x = torch.tensor([ids], dtype=torch.long, device=self.mask.device)
        self.model.setup_cache(1, P)
        try:
            # a prefix LM's prompt (PaliGemma's) is read both ways, as generate's engine reads it
            extra = {"prefix_mask": torch.ones_like(x)} if self.model.config.prefix_lm else {}
            extra.update({k: v.to(x.device) for k, v in (images or {}).items()})
            out = self.model(x, input_pos=self.engine.slots[:P], kv_len=P, last_only=not all_logits, **extra)
            states = self.model.caches()
        finally:
            self.model.set_caches(self.states, self.max_len)
        return states, out.logits[0] if all_logits else out.logits[0, -1]

    def rope_delta(self, ids: list[int], images: dict | None = None) -> int:
        """The M-RoPE delta of the tokens after a prompt (join's): Qwen-VL's images' and videos' (the prompt's last
        position + 1 less its length; vision/qwen_inputs.py rope_index, the grids alone, no tower), 0 without a
        grid."""
        names = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")  # videos: a video processor's
        grids = [(images or {}).get(name) for name in names]
        if grids[0] is None and grids[1] is None:
            return 0
        x = torch.tensor([ids], dtype=torch.long, device=self.mask.device)
        return int(self.model.vision.rope_index(x, None, *(None if g is None else g.to(x.device) for g in grids))[1][0])

    @torch.inference_mode()
    def join(self, row: int, states: list, P: int, rope_delta: int = 0) -> None:
        """A prefilled prompt of P tokens (prefill's states) takes free row `row`, right-aligned to the pointer;
        the next decode step writes its next token. rope_delta: its M-RoPE delta (rope_delta(prompt, images))."""
        if self.start[row] is not None:
            raise LlmarchError(f"row {row} is taken")
        if rope_delta and self.delta is None:
            raise LlmarchError(f"{self.model.config.name} has no M-RoPE (config mrope_section) to shift by a delta")
        if not self.active():
            self.engine.length = P
        elif self.length < P:
            self._shift(self.length - P)
        start = self.length - P
        for big, one in zip(self.states, states):
            big.put_row(row, one, start, P)
        self.mask[row] = 0
        self.mask[row, start:self.length] = 1
        self.start[row] = start
        if self.delta is not None:
            self.delta[row] = rope_delta

    def leave(self, row: int) -> None:
        """Row `row` is free from the next step on (its slots masked as padding)."""
        self.start[row] = None
        self.mask[row] = 0

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (rows,): each active row's next token (anything in free rows) -> logits (k, V) after it, for
        the rows up to the last active one."""
        if self.length == self.max_len:
            self._shift(min(s for s in self.start if s is not None))
        active = self.active()
        for r in active:
            self.mask[r, self.length] = 1
        k = active[-1] + 1
        if k not in self.views:  # the states' first k rows (views: valid while the states live)
            self.views[k] = [state.rows(k) for state in self.states]
        self.model.set_caches(self.views[k], self.max_len)
        self.engine.mask = self.mask[:k]
        if self.delta is not None:
            self.engine.rope_delta = self.delta[:k]
        try:
            return self.engine.decode(tokens[:k])
        finally:
            self.model.set_caches(self.states, self.max_len)

    def _shift(self, n: int) -> None:
        """Every row's slots move n to the left (n < 0: right), and the pointer with them."""
        starts = [s for s in self.start if s is not None]
        if n == 0 or (n > 0 and min(starts) < n) or self.length - n > self.max_len:
            raise LlmarchError(f"cannot move the running batch by {n} slots at slot {self.length}")
        for state in self.states:
            state.shift(n)
        self.mask.copy_(self.mask.roll(-n, dims=1))
        (self.mask[:, self.max_len - n:] if n > 0 else self.mask[:, :-n]).zero_()
        self.start = [None if s is None else s - n for s in self.start]
        self.engine.length -= n
