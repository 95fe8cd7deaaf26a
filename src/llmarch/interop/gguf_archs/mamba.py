"""The state-space families: Mamba, Mamba-2, and Jamba (Mamba and attention layers, some with experts)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta


def _mamba(hf: dict, meta: Meta) -> dict:
    """Mamba (convert_hf_to_gguf.py's MambaModel): no attention or FFN keys of its own (head count and FFN
    length 0), the SSM's in `ssm.*`; biases as the tensors present. With ssm.dt_b_c_rms, Falcon Mamba (the converter
    writes FalconMambaForCausalLM as MambaModel): RMS norms without gains over dt, B and C, whose epsilon llama.cpp
    takes from the layers' (layer_norm_rms_epsilon; FalconMamba's own mixer_rms_eps is not in the file)."""
    d, inner = hf["hidden_size"], meta.get("ssm.inner_size")
    if inner % d:
        raise LlmarchError(f"{meta.path}: ssm.inner_size {inner} is not a multiple of embedding_length {d}")
    if meta.get("ssm.dt_b_c_rms", False):
        hf = {**hf, "model_type": "falcon_mamba", "mixer_rms_eps": hf["rms_norm_eps"]}
    return {**hf, "state_size": meta.get("ssm.state_size"), "conv_kernel": meta.get("ssm.conv_kernel"),
            "expand": inner // d, "time_step_rank": meta.get("ssm.time_step_rank"),
            "layer_norm_epsilon": hf["rms_norm_eps"], "use_bias": meta.has("blk.0.ssm_in.bias"),
            "use_conv_bias": meta.has("blk.0.ssm_conv1d.bias")}


def _mamba_common(hf: dict) -> dict:
    """The attention and FFN keys as Mamba's converter writes them (none: 0), the context as the model has it
    (the converter's 2^20 where it has none)."""
    return {**hf, "max_position_embeddings": hf.get("max_position_embeddings", 1 << 20), "intermediate_size": 0,
            "num_attention_heads": 0, "num_key_value_heads": 0, "rms_norm_eps": hf["layer_norm_epsilon"]}


def _mamba_out(w, hf: dict) -> dict:
    if hf.get("use_bias"):  # llama.cpp's mamba graph has no in/out projection biases
        raise LlmarchError("GGUF mamba (llama.cpp) has no in_proj/out_proj biases (use_bias)")
    w.add_ssm_conv_kernel(hf["conv_kernel"])
    w.add_ssm_inner_size(hf["expand"] * hf["hidden_size"])
    w.add_ssm_state_size(hf["state_size"])
    w.add_ssm_time_step_rank(hf["time_step_rank"])
    w.add_ssm_dt_b_c_rms(hf["model_type"] == "falcon_mamba")  # FalconMamba's norms on dt, B and C
    return {}


def _mamba2(hf: dict, meta: Meta) -> dict:
    """Mamba-2 (Mamba2Model): as Mamba, with `ssm.time_step_rank` the head count and `ssm.group_count` the
    groups of B and C; the scan's chunk length is not stored (it changes no value: llmarch's default)."""
    out = _mamba(hf, meta)
    heads = out.pop("time_step_rank")
    return {**out, "num_heads": heads, "head_dim": out["expand"] * hf["hidden_size"] // heads,
            "n_groups": meta.get("ssm.group_count", 1)}


def _mamba2_common(hf: dict) -> dict:
    return {**_mamba_common(hf), "time_step_rank": hf["num_heads"]}


def _mamba2_out(w, hf: dict) -> dict:
    _mamba_out(w, hf)
    w.add_ssm_group_count(hf["n_groups"])
    return {}


def _every(layers: list[int], n: int, what: str, meta: Meta) -> tuple[int, int]:
    """(period, offset) of the layer indices `layers` (each `period` layers from `offset`), as Jamba's config
    gives them; one layer: a period of n."""
    offset = layers[0]
    period = layers[1] - offset if len(layers) > 1 else n
    if layers != list(range(offset, n, period)):
        raise LlmarchError(f"{meta.path}: the {what} layers {layers} are not every n-th layer from one")
    return period, offset


def _jamba(hf: dict, meta: Meta) -> dict:
    """Jamba (JambaModel): attention where the per-layer `attention.head_count_kv` is not 0, Mamba (with its dt,
    B and C norms) elsewhere; a mixture of experts in the layers whose `ffn_*_exps` the file holds, a dense
    SwiGLU elsewhere; the top-k weights unrenormalised (llama.cpp's jamba)."""
    n = hf["num_hidden_layers"]
    kv = hf["num_key_value_heads"]
    kv = kv if isinstance(kv, list) else [kv] * n
    attn = [i for i, k in enumerate(kv) if k]
    if not attn:
        raise LlmarchError(f"{meta.path}: a jamba file with no attention layer (attention.head_count_kv all 0)")
    period, offset = _every(attn, n, "attention", meta)
    out = {**hf, "num_key_value_heads": kv[attn[0]], "attn_layer_period": period, "attn_layer_offset": offset,
           "mamba_d_state": meta.get("ssm.state_size"), "mamba_d_conv": meta.get("ssm.conv_kernel"),
           "mamba_expand": meta.get("ssm.inner_size") // hf["hidden_size"],
           "mamba_dt_rank": meta.get("ssm.time_step_rank"),
           "mamba_conv_bias": meta.has("blk.0.ssm_conv1d.bias"), "mamba_proj_bias": meta.has("blk.0.ssm_in.bias")}
    moe = [i for i in range(n) if meta.has(f"blk.{i}.ffn_gate_exps.weight")]
    if moe:
        period, offset = _every(moe, n, "mixture-of-experts", meta)
        out.update(num_experts=meta.get("expert_count"), num_experts_per_tok=meta.get("expert_used_count"),
                   expert_layer_period=period, expert_layer_offset=offset)
    return out


def _jamba_common(hf: dict) -> dict:
    """The KV-head count per layer, 0 for the Mamba ones, as JambaModel writes it."""
    n, period, offset = hf["num_hidden_layers"], hf["attn_layer_period"], hf["attn_layer_offset"]
    kv = [hf["num_key_value_heads"] if i >= offset and (i - offset) % period == 0 else 0 for i in range(n)]
    return {**hf, "num_key_value_heads": kv}


def _jamba_out(w, hf: dict) -> dict:
    if hf.get("mamba_proj_bias"):  # as Mamba's: llama.cpp's graph has no in/out projection biases
        raise LlmarchError("GGUF jamba (llama.cpp) has no Mamba in_proj/out_proj biases (mamba_proj_bias)")
    w.add_ssm_conv_kernel(hf["mamba_d_conv"])
    w.add_ssm_inner_size(hf["mamba_expand"] * hf["hidden_size"])
    w.add_ssm_state_size(hf["mamba_d_state"])
    w.add_ssm_time_step_rank(hf["mamba_dt_rank"])
    if hf.get("num_experts", 1) > 1:
        w.add_expert_count(hf["num_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
    return {}


# Mamba's converter stores A = -exp(A_log), what the recurrence multiplies by, and the depthwise conv weight
# (inner, 1, k) squeezed to (inner, k); Mamba-2's also A and D as (heads, 1) and the gated norm's weight as
# (groups, inner / groups).
_CONV = (r"\.conv1d\.weight$", lambda t, hf: t.squeeze(1), lambda t, hf: t.unsqueeze(1))


_MAMBA_TENSORS = ((r"\.A_log$", lambda t, hf: -torch.exp(t), lambda t, hf: torch.log(-t)), _CONV)


def mamba2_tensors(mixer: str, groups: str) -> tuple:
    """Mamba2Model's stored forms, for a Mamba-2 mixer named `mixer` in Hugging Face's names whose config.json
    gives the groups of B and C as `groups` (Mamba-2's `mixer` and n_groups; the Granite 4.0 and Bamba hybrids'
    `mamba` and mamba_n_groups)."""
    return ((r"\.A_log$", lambda t, hf: -torch.exp(t)[:, None], lambda t, hf: torch.log(-t[:, 0])),
            (r"\.D$", lambda t, hf: t[:, None], lambda t, hf: t[:, 0]),
            (rf"\.{mixer}\.norm\.weight$", lambda t, hf: t.reshape(hf[groups], -1), lambda t, hf: t.reshape(-1)),
            _CONV)


ARCHS = {
    # Falcon Mamba too; its mixer's epsilon must be the layers' (GGUF out's read-back refuses another)
    "mamba": Arch("mamba", fields=_mamba, common=_mamba_common, write=_mamba_out, rope=False,
                  tensors=_MAMBA_TENSORS, also=("falcon_mamba",)),
    "jamba": Arch("jamba", fields=_jamba, common=_jamba_common, write=_jamba_out, rope=False,
                  tensors=_MAMBA_TENSORS),
    "mamba2": Arch("mamba2", fields=_mamba2, common=_mamba2_common, write=_mamba2_out, rope=False,
                   tensors=mamba2_tensors("mixer", "n_groups"), renamed=((".dt_bias", ".dt_proj.bias"),)),
}
