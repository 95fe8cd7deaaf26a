"""FlauBERT (`model_type: flaubert`; Le et al. 2020, "FlauBERT: Unsupervised Language Model Pre-training for French"):
XLM's model (xlm.py: the same names under `transformer.`, the same heads and refusals) with `pre_norm` (each block's
LayerNorms before attention and the FFN, and no final norm after the last block, as transformers runs them) and
`layerdrop` (Fan et al. 2019: whole layers skipped at random in training only; inference runs every layer, as llmarch
does, so it is not read and is written back as 0)."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES
from .xlm import family, xlm_config, xlm_hf


def to_config(hf: dict) -> ModelConfig:
    return xlm_config(hf).replace(norm_placement="pre" if hf.get("pre_norm", False) else "post", final_norm=False)


def from_config(cfg: ModelConfig) -> dict:
    return {**xlm_hf(cfg, "Flaubert"), "pre_norm": cfg.norm_placement == "pre", "layerdrop": 0.0}


FAMILIES.register("flaubert")(family(to_config, from_config, "Flaubert"))
