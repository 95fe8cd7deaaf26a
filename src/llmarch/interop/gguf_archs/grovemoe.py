"""GroveMoE (GGUF `grovemoe`, llmarch's grove_moe), as convert_hf_to_gguf.py's GroveMoeModel writes it: Qwen3-MoE's
tensors and keys (q and k unpermuted, per-head attn_q_norm/attn_k_norm, the experts stacked) with the adjugate
experts stacked as ffn_gate_chexps, ffn_up_chexps, ffn_down_chexps, their width `expert_chunk_feed_forward_length`,
`experts_per_group` and `expert_group_scale` (the converter writes the remote code's fixed 2 and 0.05; its width from
head_dim, 128 in the released models: written here as the tensors' width). The router's expert_bias is not written.
A file with other groups or scale is refused, as one with dense FFN layers."""
from __future__ import annotations

from ...errors import LlmarchError
from ..grovemoe import GROUP, HIDDEN, SCALE
from .arch import Arch, Meta


def _grovemoe(hf: dict, meta: Meta) -> dict:
    group, width = meta.get("experts_per_group"), meta.get("expert_chunk_feed_forward_length")
    scale = meta.get("expert_group_scale")
    if (group, width) != (GROUP, HIDDEN) or abs(scale - SCALE) > 1e-7 or meta.has("blk.0.ffn_up.weight") \
            or hf.get("rope_scaling"):
        raise LlmarchError(f"{meta.path}: a grovemoe file needs groups of {GROUP}, adjugate experts of {HIDDEN} and "
                           f"scale {SCALE} (the remote code's), no dense FFN layers and no RoPE scaling")
    return {**hf, "model_type": "grove_moe", "num_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"), "decoder_sparse_step": 1,
            "norm_topk_prob": True}


def _grovemoe_out(w, hf: dict) -> dict:
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_chunk_feed_forward_length(HIDDEN)
    w.add_experts_per_group(GROUP)
    w.add_expert_group_scale(SCALE)
    return {}


ARCHS = {"grovemoe": Arch("grove_moe", fields=_grovemoe, write=_grovemoe_out,
                          indexed=((r"\.chunk_experts\.(?P<row>\d+)\.", ".chunk_experts."),))}
