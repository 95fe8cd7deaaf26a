"""Qwen3-Next (GGUF `qwen3next`, convert_hf_to_gguf.py's Qwen3NextModel over Qwen2MoeModel): Gated DeltaNet
layers and gated full-attention layers, full attention where (i + 1) % full_attention_interval == 0, a mixture
of experts with a sigmoid-gated shared expert in every layer.

The delta net's shape goes into the `ssm.*` keys: state_size the key head dim, group_count the key heads,
time_step_rank the value heads, inner_size value heads x value head dim. The converter stores A as -exp(A_log),
dt_bias as ssm_dt.bias, the depthwise conv weight squeezed to (channels, kernel), adds 1 to every zero-centred
norm (input, post-attention, final, q and k: llama.cpp scales by the weight; the delta net's gated norm is a
plain one and stays), and writes in_proj_qkvz, whose rows run per key head [q k v z], as in_proj_qkv (all q |
all k | all v: attn_qkv) and in_proj_z (all z: attn_gate); a file of the older converter holds it whole
(ssm_in), llama.cpp's "legacy" layout, which is Hugging Face's and reads as it is. in_proj_ba keeps its rows
(per key head [b a]: ssm_ba). The router and the shared expert's gate (ffn_gate_inp, ffn_gate_inp_shexp) stay F32.

What llama.cpp (llama-model.cpp, models/qwen3next.cpp) cannot represent, and writing refuses: no experts or
dense layers (it requires ffn_gate_inp in every layer), no shared expert (its tensors are required), key and
value head dims that differ (it takes both from ssm.state_size), a layer pattern other than every n-th layer
full attention, top-k weights not renormalised (its graph always renormalises: that one the read-back check
refuses)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import FULL, Arch, Meta

LINEAR = "linear_attention"


def _delta_fields(hf: dict, meta: Meta) -> dict:
    """The hybrid's config.json fields from the keys (Qwen3-Next and Qwen3.5): layer types (llama.cpp reads
    attention.recurrent_layers before the interval; full attention every 4th layer where neither is written), the
    rotated share of a head, the delta net's shape."""
    if meta.get("nextn_predict_layers", 0):
        raise LlmarchError(f"{meta.path}: multi-token-prediction layers (nextn_predict_layers) are not supported")
    n, heads = hf["num_hidden_layers"], meta.get("ssm.time_step_rank")
    recurrent = meta.get("attention.recurrent_layers", None)
    if recurrent is None:
        every = meta.get("full_attention_interval", 4)
        recurrent = [(i + 1) % every != 0 for i in range(n)]
    return {"layer_types": [LINEAR if r else FULL for r in recurrent[:n]],
            "partial_rotary_factor": meta.get("rope.dimension_count", hf["head_dim"]) / hf["head_dim"],
            "linear_conv_kernel_dim": meta.get("ssm.conv_kernel"), "linear_key_head_dim": meta.get("ssm.state_size"),
            "linear_num_key_heads": meta.get("ssm.group_count"), "linear_num_value_heads": heads,
            "linear_value_head_dim": meta.get("ssm.inner_size") // heads}


def _experts(hf: dict, meta: Meta) -> dict:
    """Experts with a gated shared expert in every layer; where the converter wrote no widths, llama.cpp's own
    (the shared expert as wide as feed_forward_length, the experts n_ff / n_expert_used)."""
    used = meta.get("expert_used_count")
    return {"num_experts": meta.get("expert_count"), "num_experts_per_tok": used,
            "moe_intermediate_size": meta.get("expert_feed_forward_length", hf["intermediate_size"] // used),
            "shared_expert_intermediate_size": meta.get("expert_shared_feed_forward_length",
                                                        hf["intermediate_size"]),
            "decoder_sparse_step": 1, "norm_topk_prob": True}


def _qwen3next(hf: dict, meta: Meta) -> dict:
    if not meta.get("expert_count", 0):
        raise LlmarchError(f"{meta.path}: a qwen3next file without experts (llama.cpp refuses it too)")
    return {**hf, **_delta_fields(hf, meta), **_experts(hf, meta)}


def _qwen35(hf: dict, meta: Meta) -> dict:
    """Qwen3.5: the hybrid with a dense MLP (qwen35) or experts in every layer (qwen35moe); its multimodal RoPE's
    sections (rope.dimension_sections) change nothing for text, whose position ids are all the same."""
    experts = meta.arch == "qwen35moe"
    return {**hf, **_delta_fields(hf, meta), **(_experts(hf, meta) if experts else {}),
            "model_type": "qwen3_5_moe_text" if experts else "qwen3_5_text"}


def _interval(types: list[str]) -> int:
    """n where full attention sits at (i + 1) % n == 0 and the delta net elsewhere (past the last layer: none)."""
    n = types.index(FULL) + 1 if FULL in types else len(types) + 1
    if types != [FULL if (i + 1) % n == 0 else LINEAR for i in range(len(types))]:
        raise LlmarchError(f"GGUF qwen3next (llama.cpp) places full attention every n-th layer "
                           f"(full_attention_interval); this model's layer_types are {types}")
    return n


def _qwen3next_out(w, hf: dict) -> dict:
    if not hf.get("num_experts") or hf.get("decoder_sparse_step", 1) != 1:
        raise LlmarchError(f"GGUF {w.arch} (llama.cpp) needs a mixture of experts in every layer "
                           "(decoder_sparse_step 1)")
    if not hf["shared_expert_intermediate_size"]:
        raise LlmarchError(f"GGUF {w.arch} (llama.cpp) needs the gated shared expert in every layer")
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_shared_feed_forward_length(hf["shared_expert_intermediate_size"])
    return _delta_out(w, hf)


def _qwen35_out(w, hf: dict) -> dict:
    """Qwen3_5TextModel's converter: the delta net's keys and, for its interleaved multimodal RoPE (IMROPE), the
    rotated pairs' sections: pair j is section j mod 3's while j < 3 x that section's count, else the fourth
    (position 0 for text, no rotation); so the pairs go to the first three as evenly as interleaving takes them
    (Qwen3.5's own [11, 11, 10]), each of which a text token gives the same position (sections [n, 0, 0, 0]
    left two pairs in three unrotated: 0.1 logits apart in llama.cpp)."""
    if w.arch == "qwen35moe":
        _qwen3next_out(w, hf)
    else:
        _delta_out(w, hf)
    n = int(hf["head_dim"] * hf["rope_parameters"].get("partial_rotary_factor", 1.0)) // 2
    w.add_rope_dimension_sections([(n + 2) // 3, (n + 1) // 3, n // 3, 0])
    return {}


def _delta_out(w, hf: dict) -> dict:
    if hf["linear_key_head_dim"] != hf["linear_value_head_dim"]:
        raise LlmarchError(f"GGUF {w.arch} (llama.cpp) takes the delta net's key and value head dims from one key "
                           f"(ssm.state_size); this model's are {hf['linear_key_head_dim']} and "
                           f"{hf['linear_value_head_dim']}")
    w.add_ssm_conv_kernel(hf["linear_conv_kernel_dim"])
    w.add_ssm_state_size(hf["linear_key_head_dim"])
    w.add_ssm_group_count(hf["linear_num_key_heads"])
    w.add_ssm_time_step_rank(hf["linear_num_value_heads"])
    w.add_ssm_inner_size(hf["linear_value_head_dim"] * hf["linear_num_value_heads"])
    w.add_full_attention_interval(_interval(hf["layer_types"]))
    return {}


def _qkvz_sizes(hf: dict) -> tuple[int, int, int, int]:
    K, H = hf["linear_num_key_heads"], hf["linear_num_value_heads"]
    dk, dv = hf["linear_key_head_dim"], hf["linear_value_head_dim"]
    return K, dk, H // K * dv, H * dv


def _split_qkvz(t: torch.Tensor, hf: dict) -> list[torch.Tensor]:
    """in_proj_qkvz's rows [g: q_g k_g v_g z_g] per key head g -> [all q | all k | all v] and [all z]."""
    K, dk, rv, _ = _qkvz_sizes(hf)
    q, k, v, z = t.reshape(K, -1, t.shape[-1]).split([dk, dk, rv, rv], dim=1)
    return [torch.cat([q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)]), z.flatten(0, 1)]


def _join_qkvz(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    K, dk, rv, Hv = _qkvz_sizes(hf)
    qkv, z = parts
    q, k, v = qkv.split([K * dk, K * dk, Hv])
    per_head = [x.reshape(K, -1, x.shape[-1]) for x in (q, k, v, z)]
    return torch.cat(per_head, dim=1).reshape(-1, qkv.shape[-1])


_TENSORS = (
    (r"\.A_log$", lambda t, hf: -torch.exp(t), lambda t, hf: torch.log(-t)),
    (r"\.conv1d\.weight$", lambda t, hf: t.squeeze(1), lambda t, hf: t.unsqueeze(1)),
    (r"(?<!linear_attn\.)norm\.weight$", lambda t, hf: t + 1.0, lambda t, hf: t - 1.0),  # zero-centred -> llama.cpp's
)

def _tiled(hf: dict, inverse: bool) -> torch.Tensor:
    """The order of Qwen3.5's value heads in llama.cpp's files: Hugging Face's head g * r + i (key head g's i-th
    of r value heads) at i * K + g, so that llama.cpp repeats the K key heads by tiling them (its ggml_repeat)
    rather than interleaving (measured: llama.cpp decoded a file in Hugging Face's order 0.05 logits apart,
    1e-4 in this one)."""
    K, H = hf["linear_num_key_heads"], hf["linear_num_value_heads"]
    order = torch.tensor([g * (H // K) + i for i in range(H // K) for g in range(K)])
    return order.argsort() if inverse else order


def _heads(t: torch.Tensor, hf: dict, inverse: bool, size: int, start: int = 0, dim: int = 0) -> torch.Tensor:
    """t with its `size`-wide blocks of value heads (from `start` on `dim`) in _tiled's order, or back."""
    order = _tiled(hf, inverse)
    t = t.movedim(dim, 0)
    heads = t[start:start + len(order) * size].reshape(len(order), size, *t.shape[1:])[order].flatten(0, 1)
    return torch.cat([t[:start], heads, t[start + len(order) * size:]]).movedim(0, dim)


def _v_start(hf: dict) -> int:
    return 2 * hf["linear_num_key_heads"] * hf["linear_key_head_dim"]  # after all q and all k


def _qwen35_tensors() -> tuple:
    """Qwen3-Next's stored forms, and every tensor indexed by value head in _tiled's order: in_proj_qkv's and the
    convolution's value channels, in_proj_z's rows, in_proj_b's and in_proj_a's, A and dt_bias, out_proj's
    columns."""
    def heads(pattern, size, start=lambda hf: 0, dim=0, to=None, back=None):
        to = to or (lambda t: t)
        back = back or (lambda t: t)
        return (pattern,
                lambda t, hf: _heads(to(t), hf, False, size(hf), start(hf), dim),
                lambda t, hf: back(_heads(t, hf, True, size(hf), start(hf), dim)))

    dv, one = (lambda hf: hf["linear_value_head_dim"]), (lambda hf: 1)
    return (heads(r"\.in_proj_qkv\.weight$", dv, _v_start),
            heads(r"\.conv1d\.weight$", dv, _v_start, to=lambda t: t.squeeze(1), back=lambda t: t.unsqueeze(1)),
            heads(r"\.in_proj_z\.weight$", dv),
            heads(r"\.in_proj_[ab]\.weight$", one),
            heads(r"\.A_log$", one, to=lambda t: -torch.exp(t), back=lambda t: torch.log(-t)),
            heads(r"\.dt_bias$", one),
            heads(r"linear_attn\.out_proj\.weight$", dv, dim=1),
            _TENSORS[2])


ARCHS = {
    # Qwen3.5 stores the delta net's projections apart, as llama.cpp does (no split), its value heads tiled
    "qwen35": Arch("qwen3_5_text", fields=_qwen35, write=_qwen35_out, tensors=_qwen35_tensors(),
                   renamed=((".dt_bias", ".dt_proj.bias"),)),
    "qwen35moe": Arch("qwen3_5_moe_text", fields=_qwen35, write=_qwen35_out, tensors=_qwen35_tensors(),
                      renamed=((".dt_bias", ".dt_proj.bias"),)),
    "qwen3next": Arch("qwen3_next", fields=_qwen3next, write=_qwen3next_out, tensors=_TENSORS,
                      renamed=((".dt_bias", ".dt_proj.bias"),),
                      split=((r"\.in_proj_qkvz\.weight$", (".in_proj_qkv.weight", ".in_proj_z.weight"), _split_qkvz,
                              _join_qkvz),)),
}
