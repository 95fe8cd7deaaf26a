"""Gemma 4's assistant (`model_type: gemma4_assistant`, Gemma4AssistantForCausalLM; transformers'
modeling_gemma4_assistant.py, published as google/gemma-4-*-assistant): a multi-token-prediction drafter for Gemma
4's assisted decoding, not a language model of its own. Its Gemma 4 layers have queries only (num_kv_shared_layers =
num_hidden_layers: every layer attends over the target's keys and values, the last of each layer type's, through a
mask that is bidirectional over them), and its input is pre_projection of [target embedding, target hidden state]
(2 backbone_hidden_size), its outputs the next token's logits (optionally through centroid-masked embeddings) and
post_projection's hidden state for the next draft step. llmarch's speculative decoding takes a draft with a decode
state of its own (generate/draft_model.py), so a checkpoint of it is refused in one line."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family


def _refuse(_: dict | ModelConfig) -> ModelConfig:
    raise LlmarchError("gemma4_assistant is a drafter that reads its Gemma 4 target's keys, values and hidden states "
                       "(it has no keys or values of its own): not supported; speculative decoding takes a "
                       "decoder-only draft model (generate(..., draft=model)) or prompt_lookup")


FAMILIES.register("gemma4_assistant")(Family([], _refuse, _refuse, ()))
