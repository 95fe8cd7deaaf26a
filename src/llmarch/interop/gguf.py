"""GGUF files (llama.cpp's format: metadata key/values, then tensors, many block-quantized) read as an llmarch
model, through the same Hugging Face family tables as from_hf: the metadata becomes a config.json-like dict,
each GGUF tensor name maps to its Hugging Face name (the `gguf` package's own TensorNameMap, llama.cpp's
table), and each tensor is dequantized to fp32 by the `gguf` package (gguf.quants.dequantize: F32, F16, BF16,
Q4_0 ... Q8_0, the K-quants). Then llmarch.quant can quantize it again for its kernels.

llama.cpp's converter permutes LLaMA's q and k rows (convert_hf_to_gguf.py, LlamaModel.permute): per head it
interleaves the two rotated halves, (h, 2, d/2, K) -> (h, d/2, 2, K), for its GPT-J-style rotation; reading
undoes it, (h, d/2, 2, K) -> (h, 2, d/2, K). Qwen2/3's, Gemma 2/3's and Phi-3's converters keep the half-split
(NeoX) order. Gemma's converter adds 1 to every `*norm.weight` (Gemma's RMSNorm scales by 1 + g, llama.cpp's by
g); reading subtracts it again. The hyper-parameters a family's converter does not store take llama.cpp's own
values (llama-model.cpp), which the per-architecture functions in gguf_archs.py give. A mixture of experts is
stored stacked, one (E, out, in) tensor per kind and layer (`blk.N.ffn_gate_exps`), where Hugging Face names each
expert's: expert e's name reads row e of the stacked tensor. GPT-2's converter transposes its Conv1D weights to
(out, in); reading transposes them back. gpt-oss's converter splits its fused, interleaved gate_up_proj into
ffn_gate_exps and ffn_up_exps (Arch.split); reading joins them. YaRN is read as llama.cpp computes it (_yarn)."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import torch

from ..errors import LlmarchError, first_and_count
from .gguf_archs import ARCHS, Meta, by_layer, field
from . import gguf_blocks
from .gguf_file import GGUFFile, GGUFFormatError
from .gguf_rope import llama3_from_factors

# Hugging Face's per-expert names, which GGUF stacks (E, out, in) under the name without the index: every
# architecture's stacked rows (Arch.indexed adds its own), as (regex with the row's group, the stacked name's ending)
EXPERT_ROWS = (r"\.experts\.(?P<row>\d+)\.", ".experts.")


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix == ".gguf" and Path(path).is_file()


def open_gguf(path: str | Path):
    """The file's metadata and tensor table (gguf_file.GGUFFile), kept for the next caller while the file is
    unchanged: loading a model reads the metadata for the scheme, the config and the tensors, and a command then
    reads its tokenizer."""
    try:
        st = Path(path).stat()
    except OSError as e:
        raise LlmarchError(f"cannot read {path}: {e.strerror}") from None
    return _reader(str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _reader(path: str, inode: int, size: int, mtime_ns: int):
    """One file's reader, keyed by what changes when the file is rewritten (to_gguf reads back what it wrote)."""
    try:
        return GGUFFile(path)
    except GGUFFormatError as e:
        raise LlmarchError(f"cannot read {path} (truncated or corrupt GGUF?): {e}") from None
    except OSError as e:
        raise LlmarchError(f"cannot read {path}: {e.strerror}") from None


def hf_config(reader, path) -> dict:
    """A Hugging Face config.json's fields from the GGUF metadata (llama.cpp's key names: `{arch}.block_count`,
    `{arch}.attention.head_count`, ...), then the architecture's own (gguf_archs.py)."""
    arch = field(reader, "general.architecture")
    if arch not in ARCHS:
        raise LlmarchError(f"{path}: GGUF architecture {arch!r} is not supported; supported: {', '.join(ARCHS)}")
    meta = Meta(reader, arch, path)
    get = meta.get
    names = meta.tensors
    scaling = get("rope.scaling.type", "none")
    own = ARCHS[arch].rope_scalings  # read by the architecture's `fields` itself (DeepSeek's YaRN)
    if scaling not in ("none", "linear", "yarn", *own):
        raise LlmarchError(f"{path}: RoPE scaling {scaling!r} is not supported in GGUF {arch} files "
                           f"({', '.join(dict.fromkeys(('none', 'linear', 'yarn', *own)))})")
    d, heads = get("embedding_length"), get("attention.head_count")
    embed = names.get("token_embd.weight")
    hf = dict(model_type=ARCHS[arch].model_type, _name_or_path=field(reader, "general.name", arch),
              vocab_size=int(embed.shape[-1]) if embed is not None else get("vocab_size", None),
              hidden_size=d, intermediate_size=get("feed_forward_length"), num_hidden_layers=get("block_count"),
              num_attention_heads=heads, num_key_value_heads=get("attention.head_count_kv", heads),
              # Mamba: no heads; step35: a count per layer
              head_dim=get("attention.key_length", d // heads if isinstance(heads, int) and heads else None),
              rms_norm_eps=None if ARCHS[arch].layer_norm else get("attention.layer_norm_rms_epsilon"),
              rope_theta=get("rope.freq_base", 10000.0), max_position_embeddings=get("context_length"),
              tie_word_embeddings="output.weight" not in names, attention_bias="blk.0.attn_q.bias" in names,
              eos_token_id=field(reader, "tokenizer.ggml.eos_token_id"))
    if "rope_freqs.weight" in names and "rope_freqs.weight" not in ARCHS[arch].consumed:  # LLaMA 3.1's scaling
        dim = get("rope.dimension_count", hf["head_dim"])
        if llama3 := llama3_from_factors(meta.tensor("rope_freqs.weight"), hf["rope_theta"], dim,
                                         hf["max_position_embeddings"], path):
            hf["rope_scaling"] = llama3
    if scaling == "linear":
        hf["rope_scaling"] = {"rope_type": "linear", "factor": get("rope.scaling.factor")}
    if scaling == "yarn" and "yarn" not in own:
        hf["rope_scaling"] = _yarn(meta, hf["max_position_embeddings"])
    if hf["vocab_size"] is None:
        raise LlmarchError(f"{path}: GGUF metadata gives no vocabulary size")
    return ARCHS[arch].fields(hf, meta)


def _yarn(meta: Meta, context: int) -> dict:
    """YaRN as llama.cpp computes it (ggml's rope_yarn): the ramp between the dims that turn beta_fast and
    beta_slow times over the original context, its ends floored and ceiled to whole dims (transformers'
    truncate: true; ggml_rope_yarn_corr_dims), cos and sin scaled by 1 + 0.1 ln(factor). Its other knobs
    (an attention factor, a log multiplier, an extrapolation factor) change that in ways llmarch does not follow.
    No original context: llama.cpp's default, the training context."""
    for knob in ("attn_factor", "yarn_attn_factor", "yarn_log_multiplier", "yarn_ext_factor"):
        if meta.get(f"rope.scaling.{knob}", None) is not None:
            raise LlmarchError(f"{meta.path}: YaRN with rope.scaling.{knob} is not supported")
    return {"rope_type": "yarn", "factor": meta.get("rope.scaling.factor"),
            "original_max_position_embeddings": meta.get("rope.scaling.original_context_length", context),
            "beta_fast": meta.get("rope.scaling.yarn_beta_fast", 32.0),
            "beta_slow": meta.get("rope.scaling.yarn_beta_slow", 1.0), "truncate": True}


def gguf_model_config(reader, path, hf: dict | None = None):
    """The ModelConfig of a GGUF file: its config.json-like dict (hf_config, unless given) through the family's
    table, then the fields only GGUF metadata gives (Arch.model_in: an embedding model's head and pooling)."""
    from .hf import hf_model_config

    hf = hf_config(reader, path) if hf is None else hf
    arch = field(reader, "general.architecture")
    cfg = hf_model_config(hf, path)
    more = ARCHS[arch].model_in(Meta(reader, arch, path))
    return cfg.replace(**more) if more else cfg


def gguf_name_of(name_map, hf: str, renamed: tuple = (), stripped: tuple = ()) -> str | None:
    """A Hugging Face tensor's GGUF name by the `gguf` package's map; BLOOM's converter strips `transformer.`
    first, and the map knows its names so; `renamed`: the architecture's (ending, the ending the map knows);
    `stripped`: its other prefixes the converter strips (BERT's `bert.`)."""
    suffixes = (".weight", ".bias")
    for end, known in renamed:
        if hf.endswith(end):
            hf = hf[:-len(end)] + known
            if known.endswith(".scale"):  # a renamed tensor stored beside a known one (gemma4's ffn_gate_inp.scale)
                suffixes += (".scale",)
    for name in (hf, *(hf.removeprefix(p) for p in ("transformer.", *stripped))):
        found = name_map.get_name(name, try_suffixes=suffixes)
        if found is not None:
            return found
    return None


def grouped_qkv(t: torch.Tensor, n_heads: int, n_kv_heads: int, to_gguf: bool) -> torch.Tensor:
    """Fused q, k, v rows: Hugging Face's per kv-head group, [g0: q_0..q_{G-1} k v, g1: ...] (Falcon; GPT-NeoX's
    and BLOOM's q k v per head are groups of one) <-> GGUF's all q | all k | all v, as the converters regroup
    them for llama.cpp's graphs (GPTNeoXModel, BloomModel, FalconModel.modify_tensors)."""
    K, G = n_kv_heads, n_heads // n_kv_heads
    rest = t.shape[1:]
    D = t.shape[0] // (n_heads + 2 * K)
    if to_gguf:
        g = t.reshape(K, G + 2, D, *rest)
        return torch.cat([g[:, :G].reshape(-1, *rest), g[:, G].reshape(-1, *rest), g[:, G + 1].reshape(-1, *rest)])
    q, k, v = t.split([n_heads * D, K * D, K * D])
    parts = [q.reshape(K, G, D, *rest), k.reshape(K, 1, D, *rest), v.reshape(K, 1, D, *rest)]
    return torch.cat(parts, dim=1).reshape(t.shape)


class GGUFTensors:
    """A GGUF file's tensors by Hugging Face name, with the interface hf.build_from reads (safetensors_io's
    Checkpoint): names(), file(name) -> (self, key), shape/dtype/read/read_into(key)."""

    def __init__(self, reader, arch: str, hf_names: list[str], n_heads: int, n_kv_heads: int, n_layers: int,
                 path, hf: dict | None = None):
        self.path, self.hf = path, hf  # hf: the file's config.json fields, which Arch.split's joins read
        self.tensors = {t.name: t for t in reader.tensors}
        name_map = ARCHS[arch].name_map(arch, n_layers)
        self.to_gguf, self.row, self.parts = {}, {}, {}
        names = ARCHS[arch].renamed, ARCHS[arch].stripped
        self.keyed = {}  # Arch.keyed: a per-layer scalar from its array key
        for hf_name in hf_names:  # the names the family's rules read
            if found := next(((key, shape, m) for p, key, shape in ARCHS[arch].keyed if (m := re.search(p, hf_name))),
                             None):
                key, shape, m = found
                values = field(reader, key)
                if values is not None and int(m["layer"]) < len(values):
                    self.keyed[hf_name] = torch.tensor(float(values[int(m["layer"])])).reshape(shape)
                continue
            gguf_name = gguf_name_of(name_map, hf_name, *names)
            for pattern, stacked, *rows in (EXPERT_ROWS, *ARCHS[arch].indexed):  # one row of a stacked tensor
                if gguf_name not in self.tensors and (m := re.search(pattern, hf_name)):
                    gguf_name = gguf_name_of(name_map, re.sub(pattern, stacked, hf_name), *names)
                    self.row[hf_name] = rows[0].index(m["row"]) if rows else int(m["row"])
            if gguf_name in self.tensors:
                self.to_gguf[hf_name] = gguf_name
            elif parts := self._stored_split(name_map, hf_name, ARCHS[arch].split, names):
                self.parts[hf_name] = parts
        stored = set(self.to_gguf.values()) | {p for parts, _ in self.parts.values() for p in parts}
        unmatched = sorted(set(self.tensors) - stored - ARCHS[arch].consumed - {"rope_freqs.weight"})
        if ARCHS[arch].unread:
            unmatched = [u for u in unmatched if not re.search(ARCHS[arch].unread, u)]
        if ARCHS[arch].mtp:  # the layers past the model's are multi-token prediction, not read
            unmatched = [u for u in unmatched if not ((m := re.match(r"blk\.(\d+)\.", u)) and int(m[1]) >= n_layers)]
        if unmatched:
            raise LlmarchError(f"{path}: GGUF tensor {first_and_count(unmatched)} has no place in a {arch} model")
        heads = {"q_proj": n_heads, "k_proj": n_kv_heads} if ARCHS[arch].permuted_qk else {}
        self.heads = {hf: h for hf in self.to_gguf for proj, h in heads.items() if f".{proj}." in hf}
        pattern = ARCHS[arch].qkv_per_head
        self.per_head = {hf for hf in self.to_gguf if pattern and re.search(pattern, hf)}
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.transforms = {hf: (by_layer(to, m), by_layer(back, m)) for hf in self.names()
                           for pattern, to, back in ARCHS[arch].tensors if (m := re.search(pattern, hf))}
        self.stacked = {}  # the last two stacked expert tensors dequantized: a rule reads gate, up, gate, up ...

    def _stored_split(self, name_map, hf: str, split: tuple, names: tuple):
        """(the GGUF names of its parts, the join) of a tensor the converter split (Arch.split), if the file holds
        every part; else None."""
        for pattern, ends, _, join in split:
            if re.search(pattern, hf):
                parts = [gguf_name_of(name_map, re.sub(pattern, end, hf), *names) for end in ends]
                if all(p in self.tensors for p in parts):
                    return parts, join
        return None

    def names(self) -> set[str]:
        return set(self.to_gguf) | set(self.parts) | set(self.keyed)

    def types(self, name: str) -> list[str]:
        """The GGML type of each stored tensor that makes up `name` (one, or a split tensor's parts)."""
        if name in self.keyed:
            return ["F32"]
        stored = self.parts[name][0] if name in self.parts else [self.to_gguf[name]]
        return [self.tensors[g].tensor_type.name for g in stored]

    def file(self, name: str):
        return self, name

    def _shape(self, gguf_name: str) -> tuple[int, ...]:
        return tuple(int(n) for n in reversed(self.tensors[gguf_name].shape))  # GGUF lists ne0 first

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.keyed:
            return tuple(self.keyed[name].shape)
        if name in self.parts:  # the shape the join gives
            parts, join = self.parts[name]
            shape = tuple(join([torch.empty(self._shape(p), device="meta") for p in parts], self.hf).shape)
        else:
            shape = self._shape(self.to_gguf[name])
        if name in self.row:  # one row, as read takes it before the inverse
            shape = shape[1:]
        if name in self.transforms:  # the shape the inverse gives (GPT-2's transposed, Mamba's conv weight's 1)
            return tuple(self.transforms[name][1](torch.empty(shape, device="meta"), self.hf).shape)
        return shape

    def dtype(self, name: str) -> torch.dtype:
        return torch.float32

    def _values(self, t):
        return dequantized(t, self.path)

    def read(self, name: str) -> torch.Tensor:
        if name in self.keyed:
            return self.keyed[name].clone()
        if name in self.parts:  # a tensor the converter split: its parts joined
            parts, join = self.parts[name]
            w = join([self._values(self.tensors[p]) for p in parts], self.hf)
        elif name in self.row:
            t = self.tensors[self.to_gguf[name]]
            if t.name not in self.stacked:
                self.stacked = {**dict(list(self.stacked.items())[-1:]), t.name: self._values(t)}
            w = self.stacked[t.name][self.row[name]].clone()
        else:
            w = self._values(self.tensors[self.to_gguf[name]])
        if name in self.transforms:
            w = self.transforms[name][1](w, self.hf)
        if name in self.per_head:  # q | k | v back to Hugging Face's groups
            w = grouped_qkv(w, self.n_heads, self.n_kv_heads, to_gguf=False)
        if name in self.heads:  # undo llama.cpp's q/k permutation
            w = unpermuted(w, self.heads[name])
        return w

    def read_into(self, name: str, out: torch.Tensor) -> None:
        out.copy_(self.read(name))


def unpermuted(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py's LlamaModel.permute) undone: per head, the interleaved
    rotated halves back to Hugging Face's order."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def dequantized(t, path) -> torch.Tensor:
    """A GGUF tensor of file `path` as fp32, in Hugging Face's dimension order (GGUF lists ne0 first)."""
    import gguf

    fast = gguf_blocks.dequantize(t.data, t.tensor_type.name)
    if fast is not None:
        return fast.reshape(tuple(map(int, reversed(t.shape))))
    try:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        raise LlmarchError(f"{path}: tensor {t.name} has type {t.tensor_type.name}, which the gguf "
                           "package cannot dequantize") from None
    return torch.from_numpy(values.astype("float32", copy=False).reshape(tuple(map(int, reversed(t.shape)))).copy())


def from_gguf(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device | None = None,
              take=None):
    """An llmarch model from a .gguf file (weights dequantized to fp32, or `dtype`); take: hf.build_from's."""
    from .hf import build_from

    cfg, family, tensors = gguf_plan(path)
    return build_from(cfg, family, tensors, Path(path), dtype, device, take)


def gguf_plan(path: str | Path):
    """What loading a .gguf file reads, before it reads a tensor: (the model's config, its Hugging Face family,
    the file's tensors by Hugging Face name)."""
    from .hf import FAMILIES
    from .mapping import expand

    path = Path(path)
    if not path.is_file():
        raise LlmarchError(f"{path} does not exist")
    reader = open_gguf(path)
    hf = hf_config(reader, path)
    cfg = gguf_model_config(reader, path, hf)
    family = FAMILIES[cfg.hf_model_type]
    absent = ARCHS[field(reader, "general.architecture")].absent(hf)
    hf_names = [name for rule in expand(family.rules_for(cfg), cfg) for name in rule.hf
                if not (absent and re.search(absent, name))]
    tensors = GGUFTensors(reader, field(reader, "general.architecture"), hf_names, cfg.n_heads, cfg.n_kv_heads,
                          max(cfg.n_layers, cfg.n_decoder_layers), path, hf)
    return cfg, family, tensors
