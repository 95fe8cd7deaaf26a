"""Hugging Face interop: one small mapping module per `model_type`, each registering a Family whose
weight map and config translation drive both import (`from_hf`) and export (`to_hf`)."""
from . import (bart, bert, deepseek_v2, deepseek_v3, falcon, gemma, gpt2, gpt_neox, jamba, llama,  # noqa: F401
               longformer, mamba, marian, mistral, mixtral, qwen2, qwen3_moe, roberta,  # registers each family
               switch_transformers, t5)
from .hf import FAMILIES, from_hf, is_hf_dir, to_hf
from .mapping import export_state

__all__ = ["FAMILIES", "from_hf", "to_hf", "is_hf_dir", "export_state"]
