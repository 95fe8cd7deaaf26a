"""The transformer language model: embed -> blocks -> final norm -> head. Causal (decoder-only: GPT-2,
LLaMA, ...) or bidirectional (encoder-only: BERT, RoBERTa) by `causal`. One Stack (stack.py) plus a token
embedding and a head."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..audio.inputs import AudioInputs
from ..errors import LlmarchError
from ..layers.codebooks import embed_streams, split_heads
from ..layers.heads import BottleneckTransform, HeadTransform, Pooler, SentenceDense, pool, summary
from ..layers.linear import Linear
from ..layers.placeholders import as_padding
from ..layers.softcap import soft_cap
from ..vision.anyres import AnyResImageInputs
from ..vision.gemma4_config import is_gemma4
from ..vision.gemma4_tower import Gemma4ImageInputs
from ..vision.inputs import ImageInputs, check_image_arguments
from ..vision.mllama_config import is_mllama
from ..vision.mllama_tower import MllamaImageInputs
from ..vision.naflex import NaFlexImageInputs
from ..vision.pixtral_config import is_pixtral
from ..vision.pixtral_tower import PixtralImageInputs
from ..vision.qwen_config import is_qwen
from ..vision.qwen_inputs import QwenImageInputs
from .init import init_weights
from .stack import Stack, check_ids


@dataclass
class ModelOutput:
    # (B, T, V) for the lm head ((B * K, T, V) with K codebooks); (B, n_labels) classify; (B, T, n_labels) tokens;
    # (B, T) detect; embed: (B, T, C) with pooling none, else (B, C) (C: embed_dense's last width where it has one)
    logits: torch.Tensor
    hidden_states: torch.Tensor  # (B, T, C): the final hidden states the head reads (after ln_final)
    encoder_hidden_states: torch.Tensor | None = None  # encoder-decoders: the encoder output (B, S, C)


def suppress(logits: torch.Tensor, ranges: list) -> torch.Tensor:
    """logits (..., V) with the ids of each [start, stop) range set to the dtype's lowest value (a new tensor, so
    autograd keeps what soft-capping saved)."""
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    for start, stop in ranges:
        mask[start:stop] = True
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


class TransformerLM(Stack):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.config = cfg
        self._logit_divisor = cfg.logit_divisor if cfg.logit_divisor != 1.0 else None  # read once: 1.0 costs nothing
        streams = max(cfg.codebooks, 1)  # K codebooks: K tables and K heads side by side (layers/codebooks.py)
        self.embed = nn.Embedding(cfg.vocab_size * streams, cfg.embed_width)
        # images as embeddings (vision/): a ViT and projector (LLaVA's), or Qwen2-VL's or Pixtral's tower of merged
        # patches, Gemma 4's pooled one; or as the memory of cross-attention layers (Llama 3.2 Vision's: `cross`)
        self.vision = None if cfg.vision is None else QwenImageInputs(cfg) if is_qwen(cfg.vision) else \
            PixtralImageInputs(cfg) if is_pixtral(cfg.vision) else \
            MllamaImageInputs(cfg) if is_mllama(cfg.vision) else \
            Gemma4ImageInputs(cfg) if is_gemma4(cfg.vision) else \
            AnyResImageInputs(cfg) if cfg.vision.get("grid_pinpoints") else \
            NaFlexImageInputs(cfg) if cfg.vision.get("naflex") else ImageInputs(cfg)
        self.audio = None if cfg.audio is None else AudioInputs(cfg)  # audio as embeddings (audio/): Qwen2-Audio's
        self._placeholders = cfg.placeholder_ids  # a list: a tensor made here would be a meta one (from_hf)
        if cfg.head == "lm":  # the head transform projects back to the embedding width (ELECTRA's generator)
            self.head_transform = None if not cfg.head_transform else BottleneckTransform(cfg) if cfg.head_mlp \
                else HeadTransform(cfg, cfg.d_model if cfg.head_extra else cfg.output_embed_width)
            width = cfg.output_embed_width if cfg.head_transform else cfg.final_width  # RemBERT's output_embedding_size
            self.lm_head = Linear(width, (cfg.head_vocab or cfg.vocab_size) * streams, bias=cfg.head_bias)
            # MobileBERT (head_extra): the transform's features past the embedding width, through a matrix of their own
            self.lm_head_extra = Linear(cfg.d_model - width, cfg.vocab_size, bias=False) if cfg.head_extra else None
            if cfg.tied_head:
                self.lm_head.weight = self.embed.weight
        elif cfg.head != "embed":  # classify: a label per sequence from the pooled token; tokens: a label per token
            transform = cfg.classifier_transform  # ModernBERT: dense -> act -> norm, in place of the pooler
            self.head_transform = HeadTransform(cfg) if transform else None
            self.pooler = Pooler(cfg) if cfg.head in ("classify", "detect") and not transform and cfg.pooler else None
            self.classifier = Linear(cfg.d_model, 1 if cfg.head == "detect" else cfg.n_labels)
        else:  # embed: the pooled state, through sentence-transformers' Dense projections where there are any
            self.sentence_dense = SentenceDense(cfg) if cfg.embed_dense else None
        if self.embed.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, self.config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None, last_only: bool = False,
                kv_len: int | None = None, token_type_ids: torch.Tensor | None = None,
                global_attention_mask: torch.Tensor | None = None,
                document_ids: torch.Tensor | None = None, task_type_ids: torch.Tensor | None = None,
                lang_ids: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None,
                prefix_mask: torch.Tensor | None = None,
                bbox: torch.Tensor | None = None, image_grid_thw: torch.Tensor | None = None,
                rope_delta: torch.Tensor | None = None, pixel_attention_mask: torch.Tensor | None = None,
                image_sizes: torch.Tensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                video_grid_thw: torch.Tensor | None = None, second_per_grid_ts: torch.Tensor | None = None,
                input_features: torch.Tensor | None = None,
                feature_attention_mask: torch.Tensor | None = None, aspect_ratio_ids: torch.Tensor | None = None,
                aspect_ratio_mask: torch.Tensor | None = None,
                cross_attention_mask: torch.Tensor | None = None) -> ModelOutput:
        """input_ids (B, T). attention_mask (B, S'): 1 for real tokens, 0 for (left) padding, over key slots
        0..S'-1 (S' >= this call's last slot + 1). input_pos (T,): cache slots of these tokens, default 0..T-1.
        last_only: compute logits for the last position only (prefill). kv_len: with a cache, the number of
        slots filled once this call's tokens are written (its last slot + 1), known to the caller as a Python
        int; attention then reads only those slots. Leave it None for a fixed-shape step (torch.compile).
        token_type_ids (B, T): segment ids, for configs with type_vocab_size (default all 0); (B, T, K) for configs
        with type_vocab_sizes (TAPAS's table structure; default all 0); with type_ids_from_tokens, token ids whose
        embeddings are added (GPT-2's family). A model with none of these ignores them, as transformers' do (a
        DeBERTa-v3 or a LLaMA given a tokenizer's pair segments), unless a layer reads them (XLNet's, Funnel's).
        task_type_ids (B, T): task ids, for configs with task_type_vocab_size (ERNIE; default all 0).
        lang_ids (B,) or (B, T): indices into `languages`, for configs with language adapters (X-MOD; default: the
        config's default_language), and into the language embeddings of configs with lang_vocab_size (XLM; default:
        none added).
        bbox (B, T, 4): each token's bounding box (x0, y0, x1, y1) on the page, for configs with box_vocab_size
        (LayoutLM's 2-D positions; default all (0, 0, 0, 0)).
        global_attention_mask (B, S'): 1 for Longformer's global tokens (attention="longformer"), over key slots.
        document_ids (B, T): packed documents, numbered per token: attention and positions stay within each
        (training on packed sequences; stack.py), in place of attention_mask.
        pixel_values (N, channels, H, W): N preprocessed images, whose features take the positions of the config's
        image token in input_ids (vision/inputs.py); pixel_attention_mask (N, H, W): their real pixels, for a tower
        with position_buckets (Idefics3's padded images; None: all real). prefix_mask (B, T): the tokens of a
        prefix-LM's prefix (PaliGemma: the image and the prompt), which attend to each other both ways; None: all
        causal.
        image_grid_thw (N, 3): Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's images, with pixel_values (P, patch_dim) their
        patches (vision/qwen_pixels.py makes both), for a prompt from slot 0: their features at the image tokens, the
        prompt's M-RoPE positions from them and any DeepStack features (image_prompt). rope_delta (B,): the later
        tokens' position shift after such a prompt (its rope_index's delta), for cached decoding.
        image_sizes (N, 2): each image's (height, width), for AnyRes images (LLaVA-NeXT: vision/anyres.py), whose
        pixel_values are (N, tiles, channels, H, W).
        pixel_values_videos (P', patch_dim), video_grid_thw (N', 3): Qwen-VL's videos (vision/qwen_video.py makes
        both), beside images or alone, at the video tokens; second_per_grid_ts (N',): Qwen2.5-VL's seconds per
        temporal patch of each video, which its temporal positions follow (vision/qwen_inputs.py).
        input_features (N, n_mels, frames): N audio clips' log-mel spectrograms, whose features take the positions of
        the config's audio token (audio/inputs.py); feature_attention_mask (N, frames): their real frames, for a tower
        that masks padding (Qwen2-Audio's; None: all real).
        aspect_ratio_ids (B, N), aspect_ratio_mask (B, N, K): Llama 3.2 Vision's images (vision/mllama_tower.py), with
        pixel_values (B, N, K, channels, H, W) each row's N images in K tiles; the cross-attention layers read their
        states, each token the tiles of the images its row's image tokens give it (image_memory), or those of
        cross_attention_mask (B, T, N, K) where given (MllamaProcessor's)."""
        cfg = self.config  # inputs no part reads would be dropped without a word: refused
        if bbox is not None and self.box_embed is None:
            raise LlmarchError(f"{cfg.name} has no box embeddings (config box_vocab_size) to read bbox")
        if lang_ids is not None and self.lang_embed is None and cfg.languages is None:
            raise LlmarchError(f"{cfg.name} has neither language embeddings (config lang_vocab_size) nor language "
                               "adapters (languages) to read lang_ids")
        if task_type_ids is not None and self.task_types is None:
            raise LlmarchError(f"{cfg.name} has no task-type embeddings (config task_type_vocab_size) to read "
                               "task_type_ids")
        check_image_arguments(pixel_values, image_grid_thw, pixel_attention_mask, image_sizes)
        rope_pos = deepstack = None
        videos = {k: v for k, v in (("pixel_values_videos", pixel_values_videos), ("video_grid_thw", video_grid_thw),
                                    ("second_per_grid_ts", second_per_grid_ts)) if v is not None}
        memory = memory_mask = None
        if getattr(self.vision, "cross", False) and pixel_values is not None:
            memory, memory_mask = self.image_memory(input_ids, pixel_values, aspect_ratio_ids, aspect_ratio_mask,
                                                    cross_attention_mask)
            embeds = self.embed_inputs(input_ids)
        elif aspect_ratio_ids is not None or aspect_ratio_mask is not None or cross_attention_mask is not None:
            raise LlmarchError("aspect_ratio_ids, aspect_ratio_mask and cross_attention_mask describe Llama 3.2 "
                               f"Vision's pixel_values: given without them, or to {cfg.name}, which has no such tower")
        elif image_grid_thw is None and not videos:
            embeds = self.embed_inputs(input_ids, pixel_values, pixel_attention_mask, image_sizes, input_features,
                                       feature_attention_mask)
        else:
            mask = None if attention_mask is None else attention_mask[:, :input_ids.shape[1]]
            audio = {k: v for k, v in (("input_features", input_features),
                                       ("feature_attention_mask", feature_attention_mask)) if v is not None}
            image = self.image_prompt(input_ids, mask, pixel_values, image_grid_thw, **videos, **audio)
            embeds, rope_pos, deepstack = image.embeds, image.rope_pos, image.deepstack
        if token_type_ids is not None and cfg.type_ids_from_tokens:  # GPT-2's family: types are token rows
            if token_type_ids.shape != input_ids.shape:
                raise LlmarchError(f"token_type_ids {tuple(token_type_ids.shape)} must have input_ids' shape "
                                   f"{tuple(input_ids.shape)}")
            check_ids(token_type_ids, cfg, self.cache_len, "token_type_ids")
            embeds = embeds + self.embed(token_type_ids)
            token_type_ids = None
        x = self.run(embeds, attention_mask, input_pos, kv_len, token_type_ids, last_only,
                     global_attention_mask=global_attention_mask, document_ids=document_ids, input_ids=input_ids,
                     task_type_ids=task_type_ids, lang_ids=lang_ids, prefix_mask=prefix_mask,
                     prompt=self._prompt(), bbox=bbox, rope_pos=rope_pos, rope_delta=rope_delta, deepstack=deepstack,
                     memory=memory, memory_mask=memory_mask)
        pad_mask = None
        if attention_mask is not None and self.config.head in ("classify", "embed"):
            pad_mask = attention_mask[:, :input_ids.shape[1]].bool()
        return ModelOutput(logits=self._head(x, pad_mask), hidden_states=x)

    def step(self, ids: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None,
             attention_mask: torch.Tensor | None, memory_mask: torch.Tensor | None = None,
             embeds: torch.Tensor | None = None, prefix_mask: torch.Tensor | None = None,
             rope_pos: torch.Tensor | None = None, rope_delta: torch.Tensor | None = None,
             deepstack: list | None = None, memory: torch.Tensor | None = None) -> ModelOutput:
        """The decoding engine's step (generate/engine.py): forward(ids, attention_mask, input_pos, last_only=True,
        kv_len) without the input checks, which read ids back to the host (a GPU sync per token) for ids that
        the model itself produced. memory (B, S, C) and memory_mask (B, T, S): an image prompt's states and the tiles
        each token sees (image_memory), for its cross-attention layers; else memory_mask is unused (encoder-decoders'
        source padding). embeds (B, T, C): the
        prompt's embeddings in place of embed(ids) (embed_inputs: with images); prefix_mask as in forward; rope_pos,
        rope_delta, deepstack: an image prompt's (image_prompt), as Stack.run takes them."""
        x = self.run(self._embed(ids) if embeds is None else embeds, attention_mask, input_pos, kv_len, last_only=True,
                     input_ids=ids, prefix_mask=prefix_mask, prompt=self._prompt(), rope_pos=rope_pos,
                     rope_delta=rope_delta, deepstack=deepstack, memory=memory,
                     memory_mask=None if memory is None else memory_mask)
        return ModelOutput(logits=self._head(x, None), hidden_states=x)

    def image_prompt(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                     input_features: torch.Tensor | None = None, feature_attention_mask: torch.Tensor | None = None,
                     **videos):
        """A Qwen-VL prompt (B, T) from slot 0 with images, videos or both (attention_mask (B, T): its real tokens;
        None: all; videos: forward's pixel_values_videos, video_grid_thw, second_per_grid_ts) -> vision/qwen_inputs.py's
        ImagePrompt: embeddings, M-RoPE positions and delta, DeepStack features. input_features,
        feature_attention_mask: audio clips beside them (Qwen2.5-Omni's thinker), at the audio tokens, which M-RoPE
        numbers as text."""
        if not isinstance(self.vision, QwenImageInputs):
            name = "image_grid_thw" if image_grid_thw is not None else "video_grid_thw"
            raise LlmarchError(f"{name} describes pixels for a Qwen-VL vision tower: {self.config.name} has none")
        if pixel_values is None and image_grid_thw is not None:
            raise LlmarchError("image_grid_thw describes pixel_values for a Qwen-VL vision tower: needs pixel_values "
                               "beside it")
        embeds = self.embed_inputs(input_ids, input_features=input_features,
                                   feature_attention_mask=feature_attention_mask)  # the ids checked
        return self.vision.prompt(embeds, input_ids, attention_mask, pixel_values, image_grid_thw, **videos)

    def image_memory(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, aspect_ratio_ids: torch.Tensor | None,
                     aspect_ratio_mask: torch.Tensor | None,
                     cross_attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Llama 3.2 Vision's images (forward's arguments) -> the image states (B, S, C) its cross-attention layers
        read and the tiles each token sees, bool (B, T, S) (vision/mllama_tower.py)."""
        if not getattr(self.vision, "cross", False):
            raise LlmarchError(f"{self.config.name} has no cross-attention image tower (Llama 3.2 Vision's)")
        check_ids(input_ids, self.config, self.cache_len)
        return self.vision.memory(input_ids, pixel_values, aspect_ratio_ids, aspect_ratio_mask, cross_attention_mask)

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                     pixel_attention_mask: torch.Tensor | None = None,
                     image_sizes: torch.Tensor | None = None, input_features: torch.Tensor | None = None,
                     feature_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The token embeddings (B, T, C) of input_ids (checked), with the images' features at the image-token
        positions where pixel_values are given (pixel_attention_mask, image_sizes: forward's), or the audio clips'
        at the audio-token positions where input_features are (feature_attention_mask: forward's)."""
        if feature_attention_mask is not None and input_features is None:
            raise LlmarchError("feature_attention_mask describes input_features (audio clips): given without them")
        if input_features is not None:
            if self.audio is None:
                raise LlmarchError(f"{self.config.name} has no audio tower (config audio) to read input_features")
            if pixel_values is not None:  # the audio path reads no pixels: refused rather than dropped unread
                raise LlmarchError("input_features (audio clips) and pixel_values (images) in one call: no model here "
                                   "reads both")
            check_ids(input_ids, self.config, self.cache_len)
            return self.audio(self._embed(input_ids), input_ids, input_features, feature_attention_mask)
        if pixel_values is None:
            if not torch.compiler.is_compiling():
                check_ids(input_ids, self.config, self.cache_len)
            return self._embed(input_ids)
        if self.vision is None:
            raise LlmarchError(f"{self.config.name} has no vision tower (config vision) to read pixel_values")
        ids = self.vision.text_ids(input_ids)
        check_ids(ids, self.config, self.cache_len)
        extra = {k: v for k, v in (("pixel_mask", pixel_attention_mask), ("image_sizes", image_sizes)) if v is not None}
        return self.vision(self._embed(ids), input_ids, pixel_values, **extra)  # _embed: placeholder_ids as padding

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        ids = as_padding(ids, self._placeholders)  # Gemma 4's image and audio tokens: embedded as padding (id 0)
        k = self.config.codebooks
        return embed_streams(self.embed, ids, k) if k else self.embed(ids)

    def _prompt(self) -> torch.Tensor | None:
        """(P, C): the prompt tokens' input (task_prompt), their embedding rows and token type 0; None: none."""
        cfg = self.config
        if not cfg.task_prompt:
            return None
        rows = self.embed.weight[cfg.task_prompt_id: cfg.task_prompt_id + cfg.task_prompt]
        return rows + self.token_types.weight[0]

    def _head(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        if cfg.head == "classify":
            if self.pooler is not None:
                return self.classifier(self.drop(self.pooler(x, pad_mask)))  # (B, n_labels)
            pooled = summary(x, pad_mask, cfg.pooling, cfg.causal)  # (B, C)
            if self.head_transform is not None:
                pooled = self.head_transform(pooled)
            return self.classifier(self.drop(pooled))  # (B, n_labels)
        if cfg.head == "detect":  # ELECTRA's discriminator: a replaced-or-not logit per token
            return self.classifier(self.pooler.each(x)).squeeze(-1)  # (B, T)
        if cfg.head == "tokens":
            if self.head_transform is not None:
                x = self.head_transform(x)
            return self.classifier(self.drop(x))  # (B, T, n_labels)
        if self.config.head == "embed":
            x = pool(x, pad_mask, self.config.pooling)  # (B, T, C) or (B, C)
            if self.sentence_dense is not None:
                x = self.sentence_dense(x)  # (B, embed_dense[-1])
            return nn.functional.normalize(x, dim=-1) if self.config.embed_normalize else x
        if self.head_transform is not None:
            x = self.head_transform(x)
        if self.config.head_scale:  # T5 v1.0 (tied head): rescale before projecting onto the embedding matrix
            x = x * self.config.d_model ** -0.5
        extra = self._modules.get("lm_head_extra")
        if extra is None:
            logits = self.lm_head(x)  # (B, T, V)
        else:  # [x_:E, x_E:] [E; D]: the tied embeddings' part and the head's own
            width = self.lm_head.in_features
            logits = self.lm_head(x[..., :width]) + extra(x[..., width:])
        if self._logit_divisor is not None:  # Granite's logits_scaling: a division, as transformers computes it
            logits = logits / self._logit_divisor
        logits = soft_cap(logits, self.config.final_softcap)  # Gemma 2 caps the logits
        if self.config.suppressed_logits:  # never predicted: ChameleonForConditionalGeneration's image tokens
            logits = suppress(logits, self.config.suppressed_logits)
        return split_heads(logits, self.config.codebooks) if self.config.codebooks else logits
