"""GLM-5 (`model_type: glm_moe_dsa`; Zhipu AI 2026): DeepSeek-V3.2's layout (deepseek_v32.py) under GLM's name,
with two differences. Its lightning indexer rotates the first qk_rope_head_dim dims of its q and k in interleaved
pairs, as the attention does, so the import reorders those rows of wq_b, wk and k_norm (layout `dsa_pairs`) and the
model is V3.2's. And indexer_types may mark layers `shared`: they have no indexer and attend to the keys the last
earlier `full` layer selected (our layer types `full` and `shared`, the latter with dsa_shared; transformers' code
cites arXiv 2603.12201). Without indexer_types, the pattern comes from index_topk_pattern ('F'/'S' per layer) or
index_topk_freq and index_skip_topk_offset, as transformers derives it. Multi-token-prediction layers past the last
are not loaded."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE
from .deepseek_v32 import dsa_config, dsa_hf, dsa_rules
from .hf import FAMILIES, Family


def indexer_types(hf: dict) -> list[str]:
    """Each layer's indexer, `full` or `shared`, as GlmMoeDsaConfig derives them."""
    types = hf.get("indexer_types")
    if types is None and hf.get("index_topk_pattern") is not None:
        pattern = hf["index_topk_pattern"]
        types = [{"F": "full", "S": "shared"}.get(c, c) for c in pattern] if isinstance(pattern, str) else pattern
    if types is None:
        freq, offset = max(int(hf.get("index_topk_freq", 1)), 1), int(hf.get("index_skip_topk_offset", 2))
        types = ["full" if max(i - offset + 1, 0) % freq == 0 else "shared" for i in range(hf["num_hidden_layers"])]
    types = list(types)
    if len(types) != hf["num_hidden_layers"] or set(types) - {"full", "shared"} or types[:1] != ["full"]:
        raise LlmarchError(f"{hf['model_type']}: indexer_types {types} must name each layer full or shared, the "
                           "first full")
    return types


def to_config(hf: dict) -> ModelConfig:
    types = indexer_types(hf)
    shared = dict(layer_types=types, layer_overrides={"shared": {"dsa_shared": True}}) if "shared" in types else {}
    return dsa_config(hf, 32, **shared)


def from_config(cfg: ModelConfig) -> dict:
    types = ["shared" if cfg.for_layer(i).dsa_shared else "full" for i in range(cfg.n_layers)]
    return dsa_hf(cfg, architectures=["GlmMoeDsaForCausalLM"], indexer_types=types)


FAMILIES.register("glm_moe_dsa")(Family(dsa_rules("dsa_pairs"), to_config, from_config, IGNORE, mtp=True))
