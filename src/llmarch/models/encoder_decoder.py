"""The encoder-decoder (Vaswani et al. 2017, §3.1; T5, BART): a bidirectional encoder stack reads the source,
a causal decoder stack reads the target so far and cross-attends to the encoder output, a head projects the
decoder's final states onto the vocabulary. One token embedding is shared by both stacks (and by the head
when tied), or with encoder_embed the encoder reads a table of its own (T5Gemma; FSMT's, of another vocabulary:
encoder_vocab_size). `encode` once, then `decode` step by step with the decoder's KV cache and the encoder's
keys/values projected once per generation (setup_cache(..., memory=...)). With an encoder front end (config
encoder_input, layers/encoder_inputs.py: Whisper's convolutions over log-mel frames, Moonshine's over the waveform)
the encoder reads float input_features in place of source ids."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.encoder_inputs import ENCODER_INPUTS
from ..layers.heads import HeadTransform
from ..layers.linear import Linear
from ..layers.softcap import soft_cap
from .init import init_weights
from .stack import Stack, check_ids
from .transformer import ModelOutput


class EncoderDecoderLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # T5Gemma: the encoder reads a table of its own; otherwise both stacks read `embed`
        # FSMT: of a source vocabulary of its own (encoder_vocab_size)
        self.source_vocab = cfg.encoder_vocab_size or cfg.vocab_size
        self.encoder_embed = nn.Embedding(self.source_vocab, cfg.d_model) if cfg.encoder_embed else None
        # Whisper: float features through a front end of their own, in place of source ids and their table
        self.encoder_input = ENCODER_INPUTS[cfg.encoder_input](cfg) if cfg.encoder_input != "tokens" else None
        self.encoder = Stack(cfg.stack_config("encoder"))
        self.decoder = Stack(cfg.stack_config("decoder"), cross=True)
        # BERT's MLM head as a decoder's (bert2bert): dense -> activation -> norm, by the decoder's own fields
        self.head_transform = HeadTransform(cfg.stack_config("decoder")) if cfg.head_transform else None
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_bias)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        if self.embed.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, self.config)

    # ---- caches --------------------------------------------------------------------------------
    def setup_cache(self, batch: int, max_len: int, memory: torch.Tensor | None = None,
                    dtype: torch.dtype | None = None) -> None:
        """The decoder's self-attention KV cache for max_len target tokens; memory (B, S, C): the encoder
        output, whose cross-attention keys and values are projected here once."""
        self.decoder.setup_cache(batch, max_len, dtype)
        if memory is not None:
            for block in self.decoder.blocks:
                block.set_memory(memory)

    def clear_cache(self) -> None:
        self.decoder.clear_cache()

    def reorder_cache(self, rows: torch.Tensor) -> None:
        self.decoder.reorder_cache(rows)  # beams of one source share its memory: cross keys/values stay

    @property
    def cache_len(self) -> int | None:
        return self.decoder.cache_len

    # ---- forward -------------------------------------------------------------------------------
    def encode(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
               global_attention_mask: torch.Tensor | None = None,
               input_features: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, S), attention_mask (B, S) with 0 at padding -> encoder output (B, S, C).
        global_attention_mask (B, S): 1 at the tokens a Longformer encoder attends globally (LED).
        input_features (B, input_channels, frames): what an encoder front end reads in place of input_ids (config
        encoder_input; Whisper's log-mel spectrogram, every frame read: no attention_mask; Moonshine's waveform,
        attention_mask (B, samples) over a right-padded batch's samples)."""
        front = self.encoder_input
        if front is not None or input_features is not None:
            if front is None or input_features is None or input_ids is not None:
                raise LlmarchError(f"{self.config.name}'s encoder reads " + (
                    "input_ids (token ids): input_features are for an encoder front end (config encoder_input)"
                    if front is None else f"input_features (encoder_input={self.config.encoder_input!r}), "
                    "without input_ids"))
            return self.encoder.run(front(input_features), self.memory_mask(attention_mask),
                                    global_attention_mask=global_attention_mask)
        if not torch.compiler.is_compiling():
            check_ids(input_ids, self.config, None, vocab=self.source_vocab)
        embed = self.embed if self.encoder_embed is None else self.encoder_embed
        return self.encoder.run(embed(input_ids), attention_mask, global_attention_mask=global_attention_mask)

    def memory_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The source's padding (B, S) over the encoder output: the source tokens' attention_mask as given, or an
        encoder front end's over its frames, made from the one over its input (Moonshine's samples)."""
        front = self.encoder_input
        if attention_mask is None or front is None:
            return attention_mask
        if not front.reads_mask:
            raise LlmarchError(f"encoder_input={self.config.encoder_input!r} reads every frame of its input_features: "
                               "no attention_mask")
        return front.frame_mask(attention_mask)

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor | None,
               attention_mask: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
               input_pos: torch.Tensor | None = None, kv_len: int | None = None,
               last_only: bool = False) -> ModelOutput:
        """Decoder logits (B, T, V) and final states. memory: the encoder output, or None to use the one given to
        setup_cache. attention_mask (B, S): the source's padding. decoder_attention_mask (B, T'): the target's."""
        if not torch.compiler.is_compiling():
            check_ids(decoder_input_ids, self.decoder._stack_cfg, self.cache_len, "decoder_input_ids")
        return self._decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask, input_pos, kv_len,
                            last_only)

    def step(self, ids: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None,
             attention_mask: torch.Tensor | None, memory_mask: torch.Tensor | None = None) -> ModelOutput:
        """The decoding engine's step (generate/engine.py): decode over the memory given to setup_cache, for the
        last position, without the input checks. attention_mask: the target's padding; memory_mask: the
        source's."""
        return self._decode(ids, None, memory_mask, attention_mask, input_pos, kv_len, True)

    def _decode(self, decoder_input_ids, memory, attention_mask, decoder_attention_mask, input_pos, kv_len,
                last_only) -> ModelOutput:
        x = self.decoder.run(self.embed(decoder_input_ids), decoder_attention_mask, input_pos, kv_len,
                             last_only=last_only, memory=memory, memory_mask=attention_mask)
        h = x * self.config.d_model ** -0.5 if self.config.head_scale else x  # T5 v1.0: rescale before the tied head
        if self.head_transform is not None:
            h = self.head_transform(h)
        # T5Gemma caps the logits as Gemma 2 does (final_softcap; None leaves them)
        return ModelOutput(logits=soft_cap(self.lm_head(h), self.config.final_softcap), hidden_states=x)

    def forward(self, input_ids: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                global_attention_mask: torch.Tensor | None = None,
                input_features: torch.Tensor | None = None) -> ModelOutput:
        """input_ids (B, S): the source; decoder_input_ids (B, T): the target shifted right (starting with
        config.decoder_start_id); attention_mask (B, S): 1 for real source tokens, 0 for padding.
        encoder_hidden_states: a precomputed encode(input_ids, attention_mask), to skip the encoder.
        global_attention_mask (B, S): the source tokens a Longformer encoder attends globally (LED).
        input_features (B, input_channels, frames): the source of a model with an encoder front end, in place of
        input_ids (config encoder_input; Whisper's log-mel spectrogram; Moonshine's waveform, attention_mask then
        over its samples)."""
        if decoder_input_ids is None:
            raise LlmarchError("an encoder-decoder needs decoder_input_ids (the target shifted right)")
        memory = encoder_hidden_states
        if memory is None:
            memory = self.encode(input_ids, attention_mask, global_attention_mask, input_features)
        out = self.decode(decoder_input_ids, memory, self.memory_mask(attention_mask), decoder_attention_mask)
        out.encoder_hidden_states = memory
        return out
