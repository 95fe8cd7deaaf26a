"""EXAONE 3.0 and 3.5 (GGUF `exaone`, convert_hf_to_gguf.py's ExaoneModel): LLaMA's graph and keys under EXAONE's
GPT-2-like tensor names (the gguf package's map knows them), q and k as Hugging Face holds them (llama.cpp turns
exaone's RoPE in halves: a file with them permuted as llama's decoded 7e-3 apart, measured), LLaMA 3's RoPE scaling
as `rope_freqs`."""
from __future__ import annotations

from .arch import Arch

ARCHS = {"exaone": Arch("exaone")}
