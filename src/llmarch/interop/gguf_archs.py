"""The GGUF architectures llmarch reads, each onto a Hugging Face family table (interop/<family>.py; llama onto
Mixtral's where the file has experts): what llama.cpp's converter (convert_hf_to_gguf.py) does to the tensors,
and the config.json fields its metadata gives beyond the common ones gguf.hf_config reads. Where a converter
stores nothing, the value is the one llama.cpp itself assumes (src/llama-model.cpp, llm_load_hparams), so a file
means here what it means there."""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Callable

import torch

from ..errors import LlmarchError

SLIDING, FULL = "sliding_attention", "full_attention"
_REQUIRED = object()


def field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class Meta:
    """One file's `{arch}.*` metadata, and its small tensors that are hyper-parameters (LongRoPE's factors)."""

    def __init__(self, reader, arch: str, path):
        self.reader, self.arch, self.path = reader, arch, path

    def get(self, key: str, default=_REQUIRED):
        value = field(self.reader, f"{self.arch}.{key}")
        if value is None:
            if default is _REQUIRED:
                raise LlmarchError(f"{self.path}: GGUF metadata lacks {self.arch}.{key}")
            return default
        return value

    def has(self, name: str) -> bool:
        return any(t.name == name for t in self.reader.tensors)

    def same(self, a: str, b: str) -> bool:
        """Whether tensors a and b are both in the file, of one type and shape, with equal bytes."""
        import numpy as np

        ts = {t.name: t for t in self.reader.tensors if t.name in (a, b)}
        return len(ts) == 2 and ts[a].tensor_type == ts[b].tensor_type and \
            list(ts[a].shape) == list(ts[b].shape) and np.array_equal(ts[a].data, ts[b].data)

    def tensor(self, name: str) -> list[float] | None:
        import gguf

        t = next((t for t in self.reader.tensors if t.name == name), None)
        if t is None:
            return None
        return [float(x) for x in gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1)]


def _same(hf: dict, meta: Meta) -> dict:
    return hf


# llama.cpp scales Gemma 2/3 attention by 1/sqrt(n_embd / n_head) on the 27B models, which it knows by their
# layer count, and by 1/sqrt(head_dim) on the others; the converters store no query_pre_attn_scalar
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def _query_scalar(hf: dict, arch: str) -> int:
    if hf["num_hidden_layers"] == _GEMMA_27B_LAYERS[arch]:
        return hf["hidden_size"] // hf["num_attention_heads"]
    return hf["head_dim"]


def _gemma2(hf: dict, meta: Meta) -> dict:
    """Gemma 2: both soft-caps and the window stored (llama.cpp's defaults 50, 30 and 4096 otherwise); layer i
    slides when i is even (llama.cpp's swa pattern 2, transformers' default layer_types)."""
    return {**hf, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": _query_scalar(hf, "gemma2"),
            "sliding_window": meta.get("attention.sliding_window", 4096),
            "attn_logit_softcapping": meta.get("attn_logit_softcapping", 50.0),
            "final_logit_softcapping": meta.get("final_logit_softcapping", 30.0)}


def _gemma3(hf: dict, meta: Meta) -> dict:
    """Gemma 3 (text): five sliding layers to one full (llama.cpp's pattern 6, or the file's
    sliding_window_pattern: a period, or one flag per layer), no sliding layer without a window; rope.freq_base
    and the scaling are the full layers', the sliding ones' base is rope.freq_base_swa (llama.cpp: 10k)."""
    n, window = hf["num_hidden_layers"], meta.get("attention.sliding_window", 0)
    pattern = meta.get("attention.sliding_window_pattern", 6)
    if not window:
        types = [FULL] * n
    elif isinstance(pattern, list):
        types = [SLIDING if flag else FULL for flag in pattern]
    else:
        types = [SLIDING if (i + 1) % int(pattern) else FULL for i in range(n)]
    full = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"), **(hf.pop("rope_scaling", None) or {})}
    local = {"rope_type": "default", "rope_theta": meta.get("rope.freq_base_swa", 10000.0)}
    return {**hf, "model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": _query_scalar(hf, "gemma3"), "sliding_window": window or None,
            "layer_types": types, "attn_logit_softcapping": None,
            "final_logit_softcapping": meta.get("final_logit_softcapping", None),
            "rope_parameters": {FULL: full, SLIDING: local}}


def _phi3(hf: dict, meta: Meta) -> dict:
    """Phi-3: no key_length (head_dim is d / heads), rope.dimension_count the rotated part of a head, a window
    of 0 for none, and LongRoPE as the rope_factors_long/short tensors with rope.scaling.attn_factor."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    original = meta.get("rope.scaling.original_context_length", hf["max_position_embeddings"])
    rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    long, short = meta.tensor("rope_factors_long.weight"), meta.tensor("rope_factors_short.weight")
    if long is not None and short is not None:
        rope.update(rope_type="longrope", long_factor=long, short_factor=short,
                    original_max_position_embeddings=original)
        attn = meta.get("rope.scaling.attn_factor", None)
        if attn is not None:
            rope["attention_factor"] = float(attn)
    hf.pop("rope_scaling", None)
    return {**hf, "head_dim": head_dim, "rope_parameters": rope, "original_max_position_embeddings": original,
            "sliding_window": meta.get("attention.sliding_window", 0) or None}


def _llama(hf: dict, meta: Meta) -> dict:
    """llama with experts (ffn_gate_inp, ffn_*_exps, expert_count) is Mixtral: convert_hf_to_gguf.py writes
    MixtralForCausalLM as LlamaModel, and llama.cpp renormalises the top-k weights for it."""
    experts = meta.get("expert_count", 0)
    if not experts:
        return hf
    return {**hf, "model_type": "mixtral", "num_local_experts": experts,
            "num_experts_per_tok": meta.get("expert_used_count")}


def _qwen3moe(hf: dict, meta: Meta) -> dict:
    """Qwen3-MoE: every layer a mixture (llama.cpp has no dense layers for it, so decoder_sparse_step 1) of
    experts of width expert_feed_forward_length, top-k weights renormalised (llama.cpp's qwen3moe graph always
    does, as the released models' norm_topk_prob)."""
    return {**hf, "num_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"), "decoder_sparse_step": 1,
            "norm_topk_prob": True}


def _gemma(hf: dict, meta: Meta) -> dict:
    """Gemma (1): GeGLU with tanh-GELU; llama.cpp scales the embedding by sqrt(d) and attention by
    1/sqrt(head_dim), as transformers' Gemma does."""
    return {**hf, "hidden_activation": "gelu_pytorch_tanh"}


def _smollm3(hf: dict, meta: Meta) -> dict:
    """SmolLM3: every fourth layer without RoPE (NoPE); llama.cpp fixes that step at 4 (n_no_rope_layer_step),
    and its converter stores no per-layer list."""
    return {**hf, "no_rope_layer_interval": 4}


def _gpt2(hf: dict, meta: Meta) -> dict:
    """GPT-2 in its own config.json names: LayerNorm (attention.layer_norm_epsilon), learned positions, a
    tanh-GELU FFN of width feed_forward_length. The converter writes the tied head as a copy of the embedding
    (output.weight): a file whose head is the embedding, byte for byte, reads back tied."""
    return dict(model_type="gpt2", _name_or_path=hf["_name_or_path"], vocab_size=hf["vocab_size"],
                n_embd=hf["hidden_size"], n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
                n_inner=hf["intermediate_size"], n_positions=hf["max_position_embeddings"],
                layer_norm_epsilon=meta.get("attention.layer_norm_epsilon"), activation_function="gelu_new",
                tie_word_embeddings=hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight"),
                eos_token_id=hf["eos_token_id"])


def _gpt2_common(hf: dict) -> dict:
    """GPT-2's config.json as the common names gguf_writer._metadata writes from."""
    return {**hf, "num_hidden_layers": hf["n_layer"], "max_position_embeddings": hf["n_positions"],
            "hidden_size": hf["n_embd"], "intermediate_size": hf["n_inner"], "num_attention_heads": hf["n_head"],
            "num_key_value_heads": hf["n_head"]}


def _layer_norm_out(w, hf: dict) -> dict:
    """GPT-2's, BLOOM's and Falcon's converters: LayerNorm's epsilon."""
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    return {}


def _gptneox(hf: dict, meta: Meta) -> dict:
    """GPT-NeoX: LayerNorm (attention.layer_norm_epsilon), the parallel residual unless use_parallel_residual is
    false, RoPE on rope.dimension_count dims of each head, biases where the file has them. The FFN is exact GELU,
    as the checkpoints were trained (llama.cpp's gptneox graph runs ggml_gelu, the tanh approximation)."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    return {**hf, "hidden_act": "gelu", "layer_norm_eps": meta.get("attention.layer_norm_epsilon"),
            "use_parallel_residual": meta.get("use_parallel_residual", True), "rope_parameters": rope,
            "attention_bias": meta.has("blk.0.attn_qkv.bias")}


def _gptneox_common(hf: dict) -> dict:
    return {**hf, "num_key_value_heads": hf["num_attention_heads"]}


def _gptneox_out(w, hf: dict) -> dict:
    """GPTNeoXModel.set_gguf_parameters: LayerNorm's epsilon and the residual's kind."""
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_parallel_residual(hf["use_parallel_residual"])
    return {}


def _bloom(hf: dict, meta: Meta) -> dict:
    """BLOOM: LayerNorm (attention.layer_norm_epsilon), ALiBi (llama.cpp's bias bound 8, the paper's slopes), the
    head tied to the embedding (the converter writes it as a copy)."""
    return {**hf, "layer_norm_epsilon": meta.get("attention.layer_norm_epsilon"),
            "seq_length": hf["max_position_embeddings"],
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _bloom_common(hf: dict) -> dict:
    return {**hf, "num_hidden_layers": hf["n_layer"], "num_attention_heads": hf["n_head"],
            "num_key_value_heads": hf["n_head"], "intermediate_size": 4 * hf["hidden_size"],
            "max_position_embeddings": hf["seq_length"]}


def _falcon(hf: dict, meta: Meta) -> dict:
    """Falcon, always a parallel block in llama.cpp: two norms (attn_norm, attn_norm_2: Falcon-40B's new
    architecture) or one shared (Falcon-7B, multi-query; Falcon2-11B's new architecture with one norm); RoPE on
    every dim; biases where the file has them; exact GELU, as trained (llama.cpp runs the tanh approximation)."""
    kv, two = hf["num_key_value_heads"], meta.has("blk.0.attn_norm_2.weight")
    return {**hf, "num_kv_heads": kv, "new_decoder_architecture": two or kv not in (1, hf["num_attention_heads"]),
            "multi_query": kv == 1, "parallel_attn": True, "num_ln_in_parallel_attn": 2 if two else 1,
            "bias": meta.has("blk.0.attn_qkv.bias"), "activation": "gelu", "ffn_hidden_size": hf["intermediate_size"],
            "layer_norm_epsilon": meta.get("attention.layer_norm_epsilon"),
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _falcon_out(w, hf: dict) -> dict:
    """FalconModel.set_gguf_parameters' LayerNorm epsilon. llama.cpp's falcon has no biases (llama-cpp-python
    0.3.36 refuses a file with them), so a model with biases is refused here."""
    if hf["bias"]:
        raise LlmarchError("GGUF falcon has no biases (llama.cpp loads none); this Falcon has bias=True")
    return _layer_norm_out(w, hf)


def _falcon_common(hf: dict) -> dict:
    return {**hf, "num_key_value_heads": hf["num_kv_heads"], "intermediate_size": hf["ffn_hidden_size"]}


def _write_nothing(w, hf: dict) -> dict:
    return {}


def _experts_out(w, hf: dict) -> dict:
    """The MoE keys convert_hf_to_gguf.py writes (TextModel: expert_count, expert_used_count; Qwen3MoeModel
    also expert_feed_forward_length), where the model has experts."""
    if hf.get("num_local_experts"):
        w.add_expert_count(hf["num_local_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
    if hf.get("moe_intermediate_size"):
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    return {}


def _gemma2_out(w, hf: dict) -> dict:
    """Gemma2Model.set_gguf_parameters: both caps and the window (a missing cap reads back as llama.cpp's
    default, which the read-back check in gguf_writer.py refuses)."""
    for key, add in (("attn_logit_softcapping", w.add_attn_logit_softcapping),
                     ("final_logit_softcapping", w.add_final_logit_softcapping)):
        if hf.get(key) is not None:
            add(hf[key])
    if hf.get("sliding_window") is not None:
        w.add_sliding_window(hf["sliding_window"])
    return {}


def _gemma3_out(w, hf: dict) -> dict:
    """Gemma3Model.set_gguf_parameters: the final cap if any, the window; the sliding layers' RoPE base where
    it is not llama.cpp's 10k."""
    if hf.get("final_logit_softcapping") is not None:
        w.add_final_logit_softcapping(hf["final_logit_softcapping"])
    if SLIDING in hf["layer_types"]:
        w.add_sliding_window(hf["sliding_window"])
    local = hf["rope_parameters"][SLIDING]["rope_theta"]
    if local != 10000.0:
        w.add_rope_freq_base_swa(local)
    return {}


def _phi3_out(w, hf: dict) -> dict:
    """Phi3MiniModel: the original context, a window of 0 for none, LongRoPE's factors as tensors."""
    import numpy as np

    rope = hf["rope_parameters"]
    w.add_rope_scaling_orig_ctx_len(hf["original_max_position_embeddings"])
    w.add_sliding_window(hf.get("sliding_window") or 0)
    if rope.get("rope_type") != "longrope":
        return {}
    if rope.get("attention_factor") is not None:
        w.add_rope_scaling_attn_factors(rope["attention_factor"])
    return {"rope_factors_long.weight": np.asarray(rope["long_factor"], dtype=np.float32),
            "rope_factors_short.weight": np.asarray(rope["short_factor"], dtype=np.float32)}


def _mamba(hf: dict, meta: Meta) -> dict:
    """Mamba (convert_hf_to_gguf.py's MambaModel): no attention or FFN keys of its own (head count and FFN
    length 0), the SSM's in `ssm.*`; biases as the tensors present."""
    d, inner = hf["hidden_size"], meta.get("ssm.inner_size")
    if inner % d:
        raise LlmarchError(f"{meta.path}: ssm.inner_size {inner} is not a multiple of embedding_length {d}")
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
    w.add_ssm_dt_b_c_rms(False)  # FalconMamba's norms on dt, B and C; Mamba has none
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


# Tensors a converter stores otherwise than Hugging Face: (regex on Hugging Face names, to GGUF (tensor,
# config.json), from GGUF). Gemma's adds 1 to every *norm.weight (its RMSNorm scales by 1 + g, llama.cpp's by g);
# GPT-2's stores its Conv1D weights, (in, out), transposed to (out, in).
_NORM_PLUS_ONE = ((r"norm\.weight$", lambda t, hf: t + 1.0, lambda t: t - 1.0),)
_CONV1D_TRANSPOSED = ((r"\.(c_attn|c_proj|c_fc)\.weight$", lambda t, hf: t.t(), lambda t: t.t().contiguous()),)
# Mamba's converter stores A = -exp(A_log), what the recurrence multiplies by, and the depthwise conv weight
# (inner, 1, k) squeezed to (inner, k); Mamba-2's also A and D as (heads, 1) and the gated norm's weight as
# (groups, inner / groups).
_CONV = (r"\.conv1d\.weight$", lambda t, hf: t.squeeze(1), lambda t: t.unsqueeze(1))
_MAMBA_TENSORS = ((r"\.A_log$", lambda t, hf: -torch.exp(t), lambda t: torch.log(-t)), _CONV)
_MAMBA2_TENSORS = ((r"\.A_log$", lambda t, hf: -torch.exp(t)[:, None], lambda t: torch.log(-t[:, 0])),
                   (r"\.D$", lambda t, hf: t[:, None], lambda t: t[:, 0]),
                   (r"\.mixer\.norm\.weight$", lambda t, hf: t.reshape(hf["n_groups"], -1), lambda t: t.reshape(-1)),
                   _CONV)


@dataclass(frozen=True)
class Arch:
    model_type: str  # the llmarch/HF family that reads it
    permuted_qk: bool = False  # llama.cpp permuted q and k on conversion (LlamaModel.permute)
    fields: Callable[[dict, Meta], dict] = _same  # the config.json fields beyond the common ones
    consumed: frozenset = dataclass_field(default_factory=frozenset)  # tensors read as hyper-parameters
    write: Callable[[object, dict], dict] = _write_nothing  # config.json -> its own metadata; extra tensors
    # more families written as this architecture (as convert_hf_to_gguf.py writes them); `fields` tells a file
    # of one from the others where llama.cpp can (Mixtral's experts), else it reads as model_type (Mistral)
    also: tuple[str, ...] = ()
    common: Callable[[dict], dict] = lambda hf: hf  # the family's config.json -> the names _metadata writes from
    rope: bool = True  # the rope.* keys apply (not to GPT-2's learned positions)
    layer_norm: bool = False  # LayerNorm's attention.layer_norm_epsilon, not RMSNorm's (GPT-2)
    head_copy: bool = False  # the converter writes a tied head as output.weight, a copy of the embedding
    # Hugging Face tensors (regex) whose rows, q k v per head or kv group, the converter regroups as all q | all k |
    # all v (gguf.grouped_qkv), the order llama.cpp's graph splits
    qkv_per_head: str | None = None
    # (regex on Hugging Face names, the converter's transform, its inverse): values and shapes stored otherwise
    # (Gemma's norms as 1 + g, GPT-2's Conv1D weights transposed, Mamba's A as -exp(A_log) ...)
    tensors: tuple = ()
    # Hugging Face name endings the converter renames before the name map (Mamba-2's dt_bias as dt_proj.bias)
    renamed: tuple[tuple[str, str], ...] = ()


ARCHS = {
    "llama": Arch("llama", permuted_qk=True, fields=_llama, write=_experts_out, also=("mixtral", "mistral")),
    "qwen3moe": Arch("qwen3_moe", fields=_qwen3moe, write=_experts_out),
    "gemma": Arch("gemma", fields=_gemma, tensors=_NORM_PLUS_ONE),
    "olmo2": Arch("olmo2"),
    "gpt2": Arch("gpt2", fields=_gpt2, write=_layer_norm_out, common=_gpt2_common, rope=False, layer_norm=True,
                 head_copy=True, tensors=_CONV1D_TRANSPOSED),
    "gptneox": Arch("gpt_neox", fields=_gptneox, write=_gptneox_out, common=_gptneox_common, layer_norm=True,
                    qkv_per_head=r"\.query_key_value\.(weight|bias)$"),
    "bloom": Arch("bloom", fields=_bloom, write=_layer_norm_out, common=_bloom_common, rope=False, layer_norm=True,
                  head_copy=True, qkv_per_head=r"\.query_key_value\.(weight|bias)$"),
    "falcon": Arch("falcon", fields=_falcon, write=_falcon_out, common=_falcon_common, layer_norm=True,
                   head_copy=True, qkv_per_head=r"\.query_key_value\.(weight|bias)$"),
    "smollm3": Arch("smollm3", permuted_qk=True, fields=_smollm3),
    "qwen2": Arch("qwen2"),
    "qwen3": Arch("qwen3"),
    "gemma2": Arch("gemma2", fields=_gemma2, write=_gemma2_out, tensors=_NORM_PLUS_ONE),
    "gemma3": Arch("gemma3_text", fields=_gemma3, write=_gemma3_out, tensors=_NORM_PLUS_ONE),
    "mamba": Arch("mamba", fields=_mamba, common=_mamba_common, write=_mamba_out, rope=False,
                  tensors=_MAMBA_TENSORS),
    "jamba": Arch("jamba", fields=_jamba, common=_jamba_common, write=_jamba_out, rope=False,
                  tensors=_MAMBA_TENSORS),
    "mamba2": Arch("mamba2", fields=_mamba2, common=_mamba2_common, write=_mamba2_out, rope=False,
                   tensors=_MAMBA2_TENSORS, renamed=((".dt_bias", ".dt_proj.bias"),)),
    "phi3": Arch("phi3", fields=_phi3, consumed=frozenset({"rope_factors_long.weight", "rope_factors_short.weight"}),
                 write=_phi3_out),
}
