"""GGUF files out (`llmarch convert --to-gguf`) for llmarch's models of the families gguf_archs/ maps (their table:
docs/quantization.md), as llama.cpp's convert_hf_to_gguf.py writes them from the same Hugging Face config.json and
tensors: the family table's tensors named by the `gguf` package's name map (per-expert tensors stacked,
(E, out, in)), q/k rows permuted for llama and smollm3, 1 added to Gemma's norms, GPT-2's Conv1D weights transposed,
GPT-NeoX's, BLOOM's and Falcon's qkv rows regrouped, Mamba's A as -exp(A_log), tensors the converter splits written as
its parts (Arch.split: Qwen3-Next's in_proj_qkvz, DeepSeek's kv_b_proj into llama.cpp's k_b and v_b, gpt-oss's
interleaved gate_up into gate and up), a family's mixture-of-experts models under an architecture of their own where
llama.cpp has one (Arch.experts_arch: nemotron_h_moe), in F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (quantized by
gguf.quants.quantize), Q4_K and Q6_K (gguf_kquants.py; rows not of whole 256-blocks in Q5_0 and Q8_0, as llama.cpp
falls back), Q4_K_M (llama.cpp's mix: Q4_K, with Q6_K for the output matrix and for the attn_v and ffn_down of the
layers its use_more_bits picks) or MXFP4 experts; norms, biases and 1-D tensors stay F32, as llama.cpp keeps them;
with the metadata llama.cpp reads and the tokenizer (gguf_tokenizer.write_tokenizer: byte-level BPE, SentencePiece,
BERT's WordPiece, T5's unigram or llmarch's bytes). A model that the metadata cannot express (a Gemma 3 layer pattern
other than llama.cpp's, a missing Gemma 2 cap, RoPE scaling GGUF has no key for, a Qwen3-MoE without renormalised
top-k) is refused: the file is read back and must give the model's config."""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import LlmarchError
from .gguf import ARCHS, EXPERT_ROWS, gguf_name_of, grouped_qkv, open_gguf
from .gguf_archs import FULL, by_layer
from .gguf_kernels import KEPT_FLOAT
from .gguf_kquants import QK_K, quantize_q4_k, quantize_q6_k
from .gguf_rope import llama3_tensor
from .gguf_tokenizer import write_tokenizer

# what gguf.quants can quantize, Q4_K and Q6_K (gguf_kquants.py: the package has no K-quant quantizer), q4_k_m
# (llama.cpp's mix of the two), and mxfp4: a mixture's stacked expert matrices in MXFP4 (OCP microscaling: 32 E2M1
# values and a power-of-two scale), the rest F16, as the published gpt-oss files are
TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q6_k", "q4_k_m", "mxfp4")
# the file type each writes (llama.cpp's name for a file of Q4_K matrices beside other types is Q4_K_S/M)
FILE_TYPES = {"f32": "ALL_F32", "q4_k": "MOSTLY_Q4_K_S", "mxfp4": "MOSTLY_MXFP4_MOE"}
# a K-quant's type for rows that are not whole 256-blocks (llama.cpp's tensor_type_fallback)
FALLBACK = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}
K_QUANTIZERS = {"Q4_K": quantize_q4_k, "Q6_K": quantize_q6_k}
LAYER = re.compile(r"^blk\.(\d+)\.")
EXPERT_MATRIX = re.compile(r"_exps\.weight$")
# hf_model_type -> GGUF arch (an architecture for a family's models with experts, Arch.experts_arch, for its
# encoders alone, Arch.encoder_arch, or for its bidirectional models, Arch.bidirectional_arch, and one only read,
# Arch.read_only, aside)
GGUF_ARCH = {t: name for name, a in ARCHS.items() for t in (a.model_type, *a.also)
             if not a.read_only and name not in {v for b in ARCHS.values()
                                                 for v in (b.experts_arch, b.encoder_arch, b.bidirectional_arch)}}


def gguf_arch(cfg) -> str:
    """The GGUF architecture a model is written as: its family's, or that family's for models with experts, for
    an encoder alone (no decoder stack), or for a bidirectional model."""
    name = GGUF_ARCH[cfg.hf_model_type]
    if not cfg.causal and ARCHS[name].bidirectional_arch:
        return ARCHS[name].bidirectional_arch
    if cfg.n_experts and ARCHS[name].experts_arch:
        return ARCHS[name].experts_arch
    return ARCHS[name].encoder_arch if not cfg.n_decoder_layers and ARCHS[name].encoder_arch else name


def permuted(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf.py's LlamaModel.permute: per head, the two rotated halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _metadata(w, cfg, hf: dict, arch) -> None:
    """The keys every family's converter writes (TextModel.set_gguf_parameters), from config.json's fields
    (the rope.* ones where positions are rotary, RMSNorm's epsilon where the family has it; the head lengths
    unless the architecture writes its own)."""
    import gguf

    rope = hf.get("rope_parameters") or {}
    rope = rope.get(FULL, rope)  # Gemma 3: the full layers' RoPE is the file's
    w.add_name(cfg.name)
    w.add_block_count(hf["num_hidden_layers"])
    w.add_context_length(hf["max_position_embeddings"])
    w.add_embedding_length(hf["hidden_size"])
    w.add_feed_forward_length(hf["intermediate_size"])
    w.add_head_count(hf["num_attention_heads"])
    if "rms_norm_eps" in hf:
        w.add_layer_norm_rms_eps(hf["rms_norm_eps"])
    w.add_vocab_size(hf["vocab_size"])
    if not hf["num_attention_heads"]:  # Mamba: a head count of 0, as its converter writes, and nothing more
        return
    w.add_head_count_kv(hf["num_key_value_heads"])
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    if arch.head_lengths:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if not arch.rope:
        return
    if arch.head_lengths:
        w.add_rope_dimension_count(int(head_dim * rope.get("partial_rotary_factor", 1.0)))
    w.add_rope_freq_base(rope.get("rope_theta", 10000.0))
    if rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    if rope.get("rope_type") == "yarn":  # no attention factor or mscale: llama.cpp reads it otherwise
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_beta_fast(rope.get("beta_fast", 32.0))
        w.add_rope_scaling_yarn_beta_slow(rope.get("beta_slow", 1.0))


def _alike(a, b) -> bool:
    """Equal, floats up to GGUF's float32 (rel 1e-6), within lists and dicts too."""
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, int):
        return math.isclose(a, b, rel_tol=1e-6)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_alike, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_alike(a[k], b[k]) for k in a)
    return a == b


def _check_reads_back(path: Path, cfg) -> None:
    """The written file, read as from_gguf reads it, must give `cfg` again (name, eos and training terms aside)."""
    from .gguf import gguf_model_config

    try:
        back = gguf_model_config(open_gguf(path), path)
    except LlmarchError as e:  # named as what it is, not by the temporary file it was found in
        raise LlmarchError("the GGUF file would not read back: " + str(e).replace(f"{path}: ", "")) from None
    # a family written as another's architecture (Mistral as llama) reads back as that family; the router's
    # training terms (aux loss, jitter) and Mamba-2's scan chunk (a way of computing, the same values at any)
    # change no output, and GGUF has no key for them
    skip = {"name", "eos_id", "router_aux_loss_weight", "router_jitter", "ssm_chunk"}
    if cfg.hf_model_type in ARCHS[GGUF_ARCH[cfg.hf_model_type]].also:
        skip.add("hf_model_type")
    for f in dataclasses.fields(cfg):
        if f.name not in skip and not _alike(getattr(cfg, f.name), getattr(back, f.name)):
            raise LlmarchError(f"GGUF cannot express this model's {f.name}={getattr(cfg, f.name)!r} (llama.cpp's "
                               f"metadata reads back as {getattr(back, f.name)!r})")


def _stack_rows(tensors: dict[str, torch.Tensor], indexed: tuple = ()) -> dict[str, torch.Tensor]:
    """Hugging Face's per-expert tensors (`...experts.{e}.w1.weight`) as GGUF's one stacked tensor per kind,
    (E, out, in), under the name without the expert index (`...experts.w1.weight`, which the name map knows); so
    too the architecture's other per-index tensors (Arch.indexed: StableLM-2-12B's norm per head)."""
    out: dict[str, list[torch.Tensor] | torch.Tensor] = {}
    for name, t in tensors.items():  # export_state gives the experts (and heads) in order
        stacked = next((re.sub(p, to, name) for p, to, *_ in (EXPERT_ROWS, *indexed) if re.search(p, name)), None)
        if stacked is None:
            out[name] = t
        else:
            out.setdefault(stacked, []).append(t)
    return {name: torch.stack(t) if isinstance(t, list) else t for name, t in out.items()}


def _split(name: str, t: torch.Tensor, arch, hf: dict) -> list[tuple[str, torch.Tensor]]:
    """A tensor as the converter stores it: whole, or as the parts of Arch.split, each under its own name (not by
the read-only splits, whose `to` is None, nor by one whose `to` gives None for this config)."""
    for pattern, ends, to, _ in arch.split:
        if to is not None and re.search(pattern, name) and (parts := to(t.float(), hf)) is not None:
            return [(re.sub(pattern, end, name), part.contiguous()) for end, part in zip(ends, parts)]
    return [(name, t)]


def _kind(dtype: str, name: str, cfg):
    import gguf

    if dtype == "mxfp4":
        return gguf.GGMLQuantizationType.MXFP4 if EXPERT_MATRIX.search(name) else gguf.GGMLQuantizationType.F16
    if dtype == "q4_k_m":
        return getattr(gguf.GGMLQuantizationType, _q4_k_m(name, cfg.n_layers, cfg.tie_embeddings, cfg.n_experts))
    return getattr(gguf.GGMLQuantizationType, dtype.upper())


def _q4_k_m(name: str, n_layers: int, tied: bool, n_experts: int) -> str:
    """The type Q4_K_M gives a tensor (llama.cpp's llama_tensor_get_type): Q6_K for the output matrix (the token
    embedding where it is the output too, a tied head), and for attn_v and every ffn_down (experts' and shared
    experts' too) in the first and last eighth of the layers and every third layer between (use_more_bits,
    counted here by the layer in the name); with 8 experts attn_v and attn_k Q8_0; the rest Q4_K. Not followed:
    llama.cpp's Q5_K for a fused attn_qkv and for attn_output with 8 experts (Q4_K here: llmarch writes no Q5_K),
    Falcon's Q8_0 output (Q6_K here), and T5's enc./dec. layers, counted together there (Q4_K here)."""
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        return "Q6_K"
    m = LAYER.match(name)
    if m is None:
        return "Q4_K"
    if n_experts == 8 and re.search(r"\.attn_[kv]\.weight$", name):
        return "Q8_0"
    if not re.search(r"\.(attn_v\.weight|ffn_down)", name):
        return "Q4_K"
    i, n = int(m.group(1)), n_layers
    return "Q6_K" if i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2 else "Q4_K"


def _array(t: torch.Tensor, name: str, kind):
    """One tensor as the writer takes it: (array, raw_dtype or None). The router stays F32 (llama.cpp's
    quantizer leaves ffn_gate_inp alone: a small matrix whose rounding would change which experts run), and so
    do Mamba's A, D, conv and gated-norm weights (llama.cpp's SSM kernels read them as F32 only: an F16 one
    fails an assert), every bias (the converter keeps all but `.weight` tensors F32; gpt-oss's experts' biases are
    (E, out)), and learned positions and token types (the converter keeps them F32; llama.cpp's bert adds an F16
    token-type row to its activations not at all)."""
    import gguf

    array = t.detach().float().cpu().numpy()
    if array.ndim == 1 or kind == gguf.GGMLQuantizationType.F32 or KEPT_FLOAT.search(name):
        return array, None
    if kind == gguf.GGMLQuantizationType.F16 or array.shape[-1] % 32:  # Q8_0 ... MXFP4: blocks of 32 in a row
        return array.astype(np.float16), None
    if kind.name in K_QUANTIZERS:
        if array.shape[-1] % QK_K:  # rows not of whole 256-blocks: as llama.cpp's quantizer falls back
            return _array(t, name, getattr(gguf.GGMLQuantizationType, FALLBACK[kind.name]))
        return K_QUANTIZERS[kind.name](array), kind
    return gguf.quants.quantize(array, kind), kind


@functools.cache
def _writer_class():
    """gguf.GGUFWriter that also packs an empty typed array (GGUF allows one; the package refuses it): a
    merge-less byte vocabulary's tokenizer.ggml.merges, which llama.cpp requires of every gpt2 vocabulary."""
    import gguf

    class Writer(gguf.GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if vtype == gguf.GGUFValueType.ARRAY and sub_type is not None and len(val) == 0:
                head = self._pack("I", vtype) if add_vtype else b""
                return head + self._pack("I", sub_type) + self._pack("Q", 0)
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer


def write_out(w, tensors: dict) -> None:
    """The writer's last tensors (name -> array) added, then its header, metadata and tensors written, closed."""
    for name, array in tensors.items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def to_gguf(model, path: str | Path, dtype: str = "f16", tokenizer=None) -> None:
    """Write `model` as a GGUF file of tensor type `dtype` (TYPES: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k,
    q6_k, q4_k_m;
    mxfp4 for a mixture's experts), with `tokenizer` (a BPETokenizer: byte-level, or SentencePiece-style as
    gguf_tokenizer builds one; or llmarch's ByteTokenizer) if given; without one llama.cpp will not load the file
    (llmarch will)."""
    import gguf

    from .hf import FAMILIES
    from .mapping import export_state

    if dtype not in TYPES:
        raise LlmarchError(f"unknown GGUF type {dtype!r}; choose one of: {', '.join(TYPES)}")
    from ..quant.dequantize import export_view

    state, cfg = export_view(model)  # a quantized model (a QLoRA result): the float model it stands for
    if cfg.hf_model_type not in GGUF_ARCH:
        raise LlmarchError(f"GGUF export supports hf_model_type {', '.join(GGUF_ARCH)}; this model has "
                           f"{cfg.hf_model_type!r}")
    arch_name = gguf_arch(cfg)
    arch = ARCHS[arch_name]
    rules = FAMILIES[cfg.hf_model_type].rules_for(cfg)  # first: it refuses what the family cannot hold (needs)
    hf = arch.common(FAMILIES[cfg.hf_model_type].from_config(cfg))  # what convert_hf_to_gguf.py would read
    tensors = _stack_rows(export_state(state, rules, cfg), arch.indexed)
    names = arch.name_map(arch_name, max(cfg.n_layers, cfg.n_decoder_layers))
    if dtype == "mxfp4" and not cfg.n_experts:
        raise LlmarchError("GGUF type mxfp4 holds a mixture's experts in MXFP4; this model has no experts")
    w = _writer_class()(str(path), arch_name)
    _metadata(w, cfg, hf, arch)
    extra = arch.write(w, hf)
    if "rope_freqs.weight" not in extra and (freqs := llama3_tensor(hf, cfg.rotary_dim)) is not None:
        extra["rope_freqs.weight"] = freqs  # LLaMA 3.1's scaling, as the converter writes it (gguf_rope.py)
    kept = arch.model_out(w, cfg)
    w.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES.get(dtype, f"MOSTLY_{dtype.upper()}")))
    if tokenizer is not None:
        write_tokenizer(w, tokenizer, cfg.vocab_size)
    keyed: dict[str, dict[int, float]] = {}  # Arch.keyed: key -> layer -> value
    for name, t in tensors.items():
        if arch.dropped and re.search(arch.dropped, name):
            continue
        if found := next(((key, m) for p, key, _ in arch.keyed if (m := re.search(p, name))), None):
            keyed.setdefault(found[0], {})[int(found[1]["layer"])] = float(t.reshape(-1)[0])
            continue
        if arch.permuted_qk and ".q_proj." in name:
            t = permuted(t, cfg.n_heads)
        if arch.permuted_qk and ".k_proj." in name:
            t = permuted(t, cfg.n_kv_heads)
        if arch.qkv_per_head and re.search(arch.qkv_per_head, name):
            t = grouped_qkv(t, cfg.n_heads, cfg.n_kv_heads, to_gguf=True)
        for pattern, to, _ in arch.tensors:  # reading undoes these first (GGUFTensors.read)
            if m := re.search(pattern, name):
                t = by_layer(to, m)(t.float(), hf)
        for name, t in _split(name, t, arch, hf):
            gguf_name = gguf_name_of(names, name, arch.renamed, arch.stripped)
            if gguf_name is None:  # before the header: nothing is written yet
                raise LlmarchError(f"GGUF {arch_name} (llama.cpp) has no tensor for {name}")
            array, raw = _array(t, gguf_name, _kind(dtype, gguf_name, cfg))
            w.add_tensor(gguf_name, array, raw_dtype=raw)
            if gguf_name == "token_embd.weight" and arch.head_copy and cfg.tie_embeddings:
                w.add_tensor("output.weight", array, raw_dtype=raw)
    for key, values in keyed.items():
        w.add_array(key, [values[i] for i in sorted(values)])
    write_out(w, extra)
    try:
        _check_reads_back(Path(path), kept)
    except LlmarchError:
        Path(path).unlink(missing_ok=True)
        raise
