"""gpt-oss (GGUF "gpt-oss", llama.cpp's LLM_ARCH_OPENAI_MOE): attention sinks, sliding-window layers alternating
with full ones, YaRN, and a mixture of clamped-SwiGLU experts with biases behind a biased router.

What convert_hf_to_gguf.py's GptOssModel writes from the dequantised Hugging Face layout: the sinks as
`attn_sinks.weight`; gate_up_proj (E, C, 2I), gate and up interleaved along its last dim, split into
ffn_gate_exps and ffn_up_exps (E, I, C) and its bias into their (E, I) biases; down_proj (E, I, C) transposed to
ffn_down_exps (E, C, I); the router as ffn_gate_inp with its bias. Metadata: expert_count, expert_used_count,
expert_feed_forward_length, attention.sliding_window, and YaRN's keys (gguf.py's _yarn). The published
checkpoints' experts are MXFP4, which the converter repacks as GGUF MXFP4 blocks; the gguf package dequantizes them.

What llama.cpp fixes (src/models/openai-moe-iswa.cpp, llama-graph.cpp): layer i slides when i is even (its swa
pattern 2, transformers' default layer_types); the SwiGLU's alpha 1.702 and limit 7.0 are constants; the top-k
router logits go through a softmax (SOFTMAX_WEIGHT, = renormalised top-k probabilities); output.weight is required
(a tied head is read back as tied where it equals the embedding). A model otherwise is refused by the writer's
read-back check."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta


def _gpt_oss(hf: dict, meta: Meta) -> dict:
    n = hf["num_hidden_layers"]
    return {**hf, "num_local_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count"),
            "intermediate_size": meta.get("expert_feed_forward_length"),
            "sliding_window": meta.get("attention.sliding_window"),
            "layer_types": [SLIDING if i % 2 == 0 else FULL for i in range(n)],
            "swiglu_alpha": 1.702, "swiglu_limit": 7.0,
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _gpt_oss_out(w, hf: dict) -> dict:
    """GptOssModel.set_gguf_parameters: the experts' keys (TextModel's count and used count, their width) and the
    window, which llama.cpp requires."""
    if SLIDING not in hf["layer_types"]:
        raise LlmarchError("GGUF gpt-oss (llama.cpp) slides on every even layer; this model has no sliding layer")
    w.add_expert_count(hf["num_local_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["intermediate_size"])
    w.add_sliding_window(hf["sliding_window"])
    return {}


def _split_gate_up(t: torch.Tensor, hf: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, C, 2I) with g0 u0 g1 u1 ... along the last dim -> gate and up, each (E, I, C) as ggml's (out, in)."""
    return t[..., ::2].transpose(-1, -2).contiguous(), t[..., 1::2].transpose(-1, -2).contiguous()


def _join_gate_up(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    gate, up = parts
    return torch.stack((gate.transpose(-1, -2), up.transpose(-1, -2)), dim=-1).flatten(-2)


def _split_bias(t: torch.Tensor, hf: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return t[..., ::2].contiguous(), t[..., 1::2].contiguous()


def _join_bias(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    gate, up = parts
    return torch.stack((gate, up), dim=-1).flatten(-2)


_EXPERTS = r"\.experts\.gate_up_proj"
_SPLIT = ((_EXPERTS + "$", (".experts.gate_proj.weight", ".experts.up_proj.weight"), _split_gate_up,
           _join_gate_up),
          (_EXPERTS + "_bias$", (".experts.gate_proj.bias", ".experts.up_proj.bias"), _split_bias, _join_bias))
_DOWN_TRANSPOSED = ((r"\.experts\.down_proj$", lambda t, hf: t.transpose(-1, -2).contiguous(),
                     lambda t, hf: t.transpose(-1, -2)),)
# the converter's names: the sinks and down_proj's weight get `.weight`, down_proj_bias becomes down_proj.bias
_RENAMED = ((".self_attn.sinks", ".self_attn.sinks.weight"), (".experts.down_proj", ".experts.down_proj.weight"),
            (".experts.down_proj_bias", ".experts.down_proj.bias"))

ARCHS = {
    # llama.cpp's gpt-oss requires output.weight: a tied head is written as a copy of the embedding (head_copy)
    "gpt-oss": Arch("gpt_oss", fields=_gpt_oss, write=_gpt_oss_out, tensors=_DOWN_TRANSPOSED, split=_SPLIT,
                    renamed=_RENAMED, head_copy=True),
}
