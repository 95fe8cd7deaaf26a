"""What one GGUF architecture is to llmarch (`Arch`), and the file's metadata as its functions read it (`Meta`)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field as dataclass_field
from typing import Callable

from ...errors import LlmarchError

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
        self.tensors = {t.name: t for t in reader.tensors}

    def get(self, key: str, default=_REQUIRED):
        value = field(self.reader, f"{self.arch}.{key}")
        if value is None:
            if default is _REQUIRED:
                raise LlmarchError(f"{self.path}: GGUF metadata lacks {self.arch}.{key}")
            return default
        return value

    def window_types(self, n: int, period: int) -> list[str] | None:
        """Each of n layers' type where the file has attention.sliding_window: sliding where
        sliding_window_pattern flags it, or (a number, else `period`, llama.cpp's default for the architecture)
        every layer but each period-th; None without a window."""
        if not self.get("attention.sliding_window", 0):
            return None
        pattern = self.get("attention.sliding_window_pattern", period)
        flags = pattern[:n] if isinstance(pattern, list) else [(i + 1) % int(pattern) != 0 for i in range(n)]
        return [SLIDING if flag else FULL for flag in flags]

    def has(self, name: str) -> bool:
        return name in self.tensors

    def same(self, a: str, b: str) -> bool:
        """Whether tensors a and b are both in the file, of one type and shape, with equal bytes."""
        import numpy as np

        ta, tb = self.tensors.get(a), self.tensors.get(b)
        return ta is not None and tb is not None and ta.tensor_type == tb.tensor_type and \
            list(ta.shape) == list(tb.shape) and np.array_equal(ta.data, tb.data)

    def rows(self, name: str) -> int | None:
        """The first dimension of a matrix as Hugging Face holds it (GGUF lists ne0, the row length, first)."""
        t = self.tensors.get(name)
        return None if t is None else int(t.shape[-1])

    def tensor(self, name: str) -> list[float] | None:
        import gguf

        t = self.tensors.get(name)
        if t is None:
            return None
        return [float(x) for x in gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1)]


def by_layer(fn, match: re.Match):
    """An Arch.tensors function for the name `match` matched: given the layer index where the regex has a group
    `layer`."""
    layer = match.groupdict().get("layer")
    return fn if layer is None else functools.partial(fn, layer=int(layer))


def _same(hf: dict, meta: Meta) -> dict:
    return hf


def _write_nothing(w, hf: dict) -> dict:
    return {}


def _nothing_more(meta: Meta) -> dict:
    return {}


def _as_is(w, cfg):
    return cfg


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
    # the GGUF architecture this family's models with experts are written as, where llama.cpp gives them one of their
    # own (nemotron_h's nemotron_h_moe); that one reads as model_type too
    experts_arch: str | None = None
    # the GGUF architecture this family's encoder-only models (no decoder stack) are written as, where llama.cpp gives
    # them one of their own (T5EncoderModel's t5encoder); that one reads as model_type too
    encoder_arch: str | None = None
    # the GGUF architecture this family's bidirectional models (causal False) are written as, where llama.cpp gives
    # them one of their own (gemma3_text's gemma-embedding, EmbeddingGemma); that one reads as model_type too
    bidirectional_arch: str | None = None
    common: Callable[[dict], dict] = lambda hf: hf  # the family's config.json -> the names _metadata writes from
    rope: bool = True  # the rope.* keys apply (not to GPT-2's learned positions)
    layer_norm: bool = False  # LayerNorm's attention.layer_norm_epsilon, not RMSNorm's (GPT-2)
    head_copy: bool = False  # the converter writes a tied head as output.weight, a copy of the embedding
    # Hugging Face tensors (regex) whose rows, q k v per head or kv group, the converter regroups as all q | all k |
    # all v (gguf.grouped_qkv), the order llama.cpp's graph splits
    qkv_per_head: str | None = None
    # (regex on Hugging Face names, the converter's transform (tensor, config.json), its inverse (tensor,
    # config.json)): values, shapes and row orders stored otherwise
    # (Gemma's norms as 1 + g, GPT-2's Conv1D weights transposed, Mamba's A as -exp(A_log) ...); a regex with a
    # group `layer` gives both the layer index third (RWKV-6's output weights divided by 2^(layer // n): by_layer)
    tensors: tuple = ()
    # Hugging Face name endings the converter renames before the name map (Mamba-2's dt_bias as dt_proj.bias)
    renamed: tuple[tuple[str, str], ...] = ()
    # (regex on Hugging Face names, the endings its parts' names take in its place, the converter's split (tensor,
    # config.json) -> parts, its inverse (parts, config.json) -> tensor): one tensor stored as several (DeepSeek's
    # kv_b_proj as k_b_proj and v_b_proj, for llama.cpp's absorbed attention; Qwen3-Next's in_proj_qkvz as
    # in_proj_qkv and in_proj_z; gpt-oss's interleaved gate_up_proj as ffn_gate_exps and ffn_up_exps); a file
    # may also hold it whole. One with no converter's split (None) is read only: a file holding several Hugging
    # Face tensors as one, each reading its part (older Phi-2 files' attn_qkv for q, k, v; the inverse slices).
    # A split whose converter's function gives None for a config is not that config's (Granite 4.0's shared MLP:
    # shared-expert tensors beside experts, the dense FFN's without); reading takes the one whose parts the file has
    split: tuple = ()
    # (regex on Hugging Face names whose group `row` is an index, the name of the one tensor the converter stacks
    # them in): tensors stored one per index in Hugging Face's layout and as rows of one in GGUF, as experts are
    # (StableLM-2-12B's q/k LayerNorm per head, `q_layernorm.norms.{h}` as attn_q_norm (heads, head_dim)); a third
    # item, the rows' names in order, where the group is a name, not a number (RWKV-6's lerps w k v r g as one
    # time_mix_lerp_fused: the writer stacks them in the rules' order, which must be that one)
    indexed: tuple[tuple[str, ...], ...] = ()
    # (regex on Hugging Face names whose group `layer` is the layer index, the GGUF key, the tensor's shape in
    # Hugging Face): per-layer scalars the converter writes as one array key over the layers, not as tensors
    # (Apertus's xIELU alpha_p as `xielu.alpha_p`, a key without the architecture's prefix)
    keyed: tuple[tuple[str, str, tuple], ...] = ()
    # RoPE scaling types beyond none and linear that `fields` reads itself (DeepSeek's YaRN)
    rope_scalings: tuple[str, ...] = ()
    # _metadata writes attention.key_length, value_length and rope.dimension_count from head_dim; False: `write`
    # does (DeepSeek's latent attention, whose lengths are the latent's)
    head_lengths: bool = True
    # the file may hold multi-token-prediction layers past the model's (GLM-4.5's NextN layers, counted in
    # block_count): their tensors are not read
    mtp: bool = False
    # Hugging Face name prefixes the converter strips before the name map (BERT's `bert.`)
    stripped: tuple[str, ...] = ()
    # Hugging Face tensors (regex) the converter leaves out of the file (BERT's masked-LM head and pooler)
    dropped: str | None = None
    # ModelConfig fields the file's metadata gives that no config.json field of the family does (an embedding model's
    # head and pooling; DeepSeek-MoE's softmax router read as GLM-4.5's family; a diffusion LM's bidirectional
    # attention), applied after the family's table
    model_in: Callable[[Meta], dict] = _nothing_more
    # the same out: (GGUFWriter, the model's ModelConfig) -> the ModelConfig the file holds (what reading it back
    # gives: a BERT's masked-LM head dropped), writing what it needs and refusing what the file cannot hold
    model_out: Callable[[object, object], object] = _as_is
    # config.json -> a regex of the family's Hugging Face names this variant has no tensors for, where the name map
    # gives another variant's tensor the same GGUF name (T5's ReLU `wi` and gated `wi_1` are both ffn_up)
    absent: Callable[[dict], str | None] = lambda hf: None
    # the `gguf` package's architecture whose tensor-name map this one's files follow, where the package has no entry
    # of its own (llama.cpp's deepseek32 names its tensors as glm-dsa does); None: its own
    names: str | None = None
    # (ending of a layer's Hugging Face tensor name, its GGUF name after `blk.N.`) for tensors that no name map of the
    # package gives for this architecture (MiniMax-01's lightning attention under llama's map), tried first
    own_names: tuple[tuple[str, str], ...] = ()
    # GGUF tensor names (regex) the file holds that the model does not read (CogVLM's vision experts, which only image
    # tokens pass through); None: every tensor is read
    unread: str | None = None
    # read only: llama.cpp's name for checkpoints llmarch has no family of their own for (Baichuan, InternLM2), whose
    # files mean a model of model_type's (their converter's layout undone by the fields above); llmarch writes that
    # family as its own architecture, not this one
    read_only: bool = False

    def name_map(self, arch: str, n_layers: int):
        """The `gguf` package's TensorNameMap (Hugging Face name -> GGUF name) for files of architecture `arch`, with
        own_names before it."""
        import gguf

        package = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[self.names or arch],
                                           n_layers)
        return _OwnNames(self.own_names, package) if self.own_names else package


class _OwnNames:
    """A name map that gives Arch.own_names' GGUF names first, else the package map's."""

    def __init__(self, own: tuple, package):
        self.own, self.package = own, package

    def get_name(self, key: str, try_suffixes=()):
        layer = re.match(r"(?:model\.layers|rwkv\.blocks)\.(\d+)\.", key)
        found = next((gguf for hf, gguf in self.own if layer and key.endswith(hf)), None)
        return f"blk.{layer[1]}.{found}" if found else self.package.get_name(key, try_suffixes=try_suffixes)
