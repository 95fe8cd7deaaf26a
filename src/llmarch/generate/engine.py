"""The decoding engine: one step over a static cache, for every model kind (as gpt-fast's prefill and
decode_one_token, Design practice 5). `prefill(ids)` writes a batch of prompts (left-padded: the mask says which
slots are real) and `decode(tokens)` appends one token per row, each returning the next-token logits; greedy and
sampled decoding (decode.py), beam search (beam.py) and speculative decoding are strategies over these two.

The step is the model's own forward without input checks (`model.step`: its tokens come from the model's
vocabulary) and without host reads, so a GPU never waits on the loop. Compiled, it is the same step compiled:
one fixed-shape graph per cache length (decode.compiled_cache_len), reused at every position (CUDA graphs on
CUDA; on a CPU a quantized model's weights frozen into it: compiled.py). On a CPU, the engine first lays the model
out for one-row products where that pays (transforms.for_cpu_decoding: same values, same state-dict names), so a
model decodes as fast from Python as from the CLI.
Encoder-decoders: the engine encodes the sources once and each decoder block projects its cross-attention keys
and values from that output once; the decoder's self-attention is then cached like any decoder's."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from ..transforms import for_cpu_decoding
from .compiled import compiled_step


class Engine:
    def __init__(self, model, batch: int, max_len: int, mask: torch.Tensor | None = None,
                 source: torch.Tensor | None = None, source_mask: torch.Tensor | None = None, compile: bool = False,
                 bounded: bool = False, features: torch.Tensor | None = None):
        """batch rows of up to max_len tokens (for compile, decode.compiled_cache_len: a few cache shapes per model).
        mask (batch, max_len): 1 for real slots, 0 for left padding; None: none padded. source (batch, S) and
        source_mask: an encoder-decoder's inputs, encoded here. bounded: the decoding only moves forward (prefill
        once, then decode; no extend, rewind or moved rows), so the model's states may hold only what later tokens
        read (Stack.setup_cache: a sliding window's layers keep w slots, not max_len). features: an
        encoder-decoder's float inputs in place of source (its encoder front end's: EncoderDecoderLM.encode)."""
        self.model, self.mask, self.source_mask = model, mask, source_mask
        self.was_training = model.training
        # eval() only where some module trains: setting the flag on every module costs more than looking
        self.set_eval = any(m.training for m in model.modules())
        if self.set_eval:
            model.eval()
        with torch.inference_mode(False):  # new weight layouts are parameters' data: never inference tensors
            # compiled one-row steps read (out, in) weights; a compiled batch multiplies through the BLAS
            for_cpu_decoding(model, compiled=compile and batch == 1)
        self.slots = torch.arange(max_len, device=next(model.parameters()).device)  # views, no allocation per step
        self.length = 0  # slots filled
        self.rope_delta = None  # (batch,): M-RoPE's shift of every token after an image prompt (prefill's)
        self.compiled = compiled_step(model) if compile else None
        if model.config.is_encoder_decoder:
            model.setup_cache(batch, max_len, memory=model.encode(source, source_mask, input_features=features))
            self.source_mask = model.memory_mask(source_mask)  # over the encoder output (a front end's frames)
        elif self.compiled is not None:  # its states may be kept from an earlier call (compiled.py)
            self.compiled.setup_cache(batch, max_len, mask is not None)
        else:
            model.setup_cache(batch, max_len, bounded=bounded)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.model.clear_cache()
        if self.set_eval:
            self.model.train(self.was_training)

    def prefill(self, ids: torch.Tensor, embeds: torch.Tensor | None = None,
                prefix_mask: torch.Tensor | None = None, rope_pos: torch.Tensor | None = None,
                rope_delta: torch.Tensor | None = None, deepstack: list | None = None,
                memory: tuple | None = None) -> torch.Tensor:
        """ids (B, T) written at the next T slots -> logits (B, V) after each row's last token. embeds (B, T, C): their
        embeddings where they are not embed(ids) (images: TransformerLM.embed_inputs); prefix_mask (B, T): a
        prefix-LM's prefix among them (TransformerLM.forward); by default, for a prefix LM's first prefill (config
        prefix_lm: PaliGemma), its real tokens, so that every strategy over the engine reads a prompt alike.
        rope_pos (3, B, T), rope_delta (B,), deepstack: an image prompt's M-RoPE positions, the shift of every later
        token's (kept for the steps after it) and its DeepStack features (vision/qwen_inputs.py ImagePrompt).
        memory: an image prompt's (states (B, S, C), the tiles each token sees (B, T, S)) for the cross-attention
        layers (TransformerLM.image_memory: Llama 3.2 Vision), which keep their keys for the steps after it."""
        if prefix_mask is None and self.length == 0 and self.model.config.prefix_lm:
            prefix_mask = torch.ones_like(ids) if self.mask is None else self.mask[:, :ids.shape[1]]
        extra = {k: v for k, v in (("embeds", embeds), ("prefix_mask", prefix_mask), ("rope_pos", rope_pos),
                                   ("deepstack", deepstack)) if v is not None}
        if memory is not None:
            extra["memory"], extra["memory_mask"] = memory
        if rope_delta is not None:
            self.rope_delta = rope_delta
        return self._step(ids, extra)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,), one per row, written at the next slot -> logits (B, V) for the token after it."""
        return self._step(tokens[:, None])

    def extend(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) written at the next T slots -> logits (B, T, V) after each of them (speculative decoding
        checks T - 1 drafted tokens at once)."""
        return self.read(ids).logits

    def read(self, ids: torch.Tensor, last_only: bool = False):
        """ids (B, T) written at the next T slots -> the model's output (ModelOutput: logits and final hidden states)
        after each of them, or after the last only (a drafter reads the target's hidden states: assistant.py)."""
        start, self.length = self.length, self.length + ids.shape[1]
        if self.length > self.slots.shape[0]:
            raise LlmarchError(f"decoding past the cache's {self.slots.shape[0]} slots")
        extra = {} if self.rope_delta is None else {"rope_delta": self.rope_delta}
        return self.model(ids, self.mask, self.slots[start:self.length], last_only=last_only, kv_len=self.length,
                          **extra)

    def rewind(self, length: int) -> None:
        """Forget the slots from `length` on (rejected drafts): later steps overwrite them. Only for decode
        states indexed by slot (KV caches); a recurrent state has no earlier version to return to: its
        strategies call check_rewind first."""
        self.length = length

    def check_rewind(self, what: str) -> None:
        """Raise, naming the mixer, unless every layer's decode state can rewind; `what` needs it (speculative
        decoding, before its first step)."""
        cfg = self.model.config
        states = [] if cfg.is_encoder_decoder else self.model.caches()
        layer = next((i for i, state in enumerate(states) if not getattr(state, "by_slot", False)), None)
        if cfg.is_encoder_decoder or layer is not None:
            what_fails = ("an encoder-decoder" if layer is None else f"layer {layer}'s {cfg.layer_mixer(layer)} "
                          f"mixer (its {type(states[layer]).__name__} is not indexed by slot)")
            raise LlmarchError(f"{cfg.name}: {what} rewinds rejected drafts, which {what_fails} cannot")

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r continues from what row rows[r] holds (beam search)."""
        self.model.reorder_cache(rows)
        if self.rope_delta is not None:
            self.rope_delta = self.rope_delta[rows]

    def _step(self, ids: torch.Tensor, extra: dict | None = None) -> torch.Tensor:
        start, self.length = self.length, self.length + ids.shape[1]
        if self.length > self.slots.shape[0]:
            raise LlmarchError(f"decoding past the cache's {self.slots.shape[0]} slots")
        pos = self.slots[start:self.length]
        if self.compiled is not None and ids.shape[1] == 1:
            return self.compiled(ids, pos, self.mask)[:, -1]
        if self.rope_delta is not None and "rope_pos" not in (extra or {}):
            extra = {**(extra or {}), "rope_delta": self.rope_delta}
        extra = extra or {}
        memory_mask = extra.pop("memory_mask", self.source_mask)
        return self.model.step(ids, pos, self.length, self.mask, memory_mask, **extra).logits[:, -1]

