"""from_hf / to_hf: Hugging Face checkpoint directories (config.json, *.safetensors, possibly sharded with an
index, tokenizer.json) in and out, with our own code. Loading builds the model on the meta device and fills
each tensor from disk into freshly allocated memory, so peak memory stays near one copy of the weights."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from ..checkpoint import assemble, check_finite, state_for_saving
from ..config import ModelConfig
from ..data.tokenizer import load_tokenizer
from ..errors import LlmarchError, first_and_count
from ..models import TransformerLM
from ..models.build import empty_model
from ..registry import Registry
from .mapping import JOINS, LAYOUTS, SHAPE_TOLD, SPLITS, Rule, expand, export_state, pieces
from .safetensors_io import INDEX, SINGLE, Checkpoint
from .sentence_transformers import dense_rules, read_modules, write_modules

FAMILIES: Registry = Registry("Hugging Face model_type")
# remote-code checkpoints that name a transformers model_type whose layout they do not have, told apart by their
# config: (the model_type they name, a test of config.json's contents, the llmarch family that reads them); see
# read_hf_config
RETYPED: list[tuple[str, Callable[[dict], bool], str]] = []
GENERATION_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


@dataclass(frozen=True)
class Family:
    """One HF model_type: its weight map and config translation, both directions."""

    rules: list[Rule]
    to_config: Callable[[dict], ModelConfig]
    from_config: Callable[[ModelConfig], dict]
    ignore: tuple[str, ...] = ()  # regexes of stored tensors that are derived buffers, not weights
    canonical: Callable[[str], str] | None = None  # stored name -> the name the rules use (older layouts)
    # heads other than the LM head: ModelConfig.head -> (HF architecture, the head's extra rules)
    heads: dict[str, tuple[str, list[Rule]]] = field(default_factory=dict)
    # transformers 5 keeps a MoE layer's experts as stacked Parameters (E, out, in), as ours are (layers/moe.py),
    # and converts the per-expert tensors of the checkpoint (the rules above) into them on load: their names as the
    # model has them, paired with ours, in the order its Experts module defines them (PEFT's target_parameters
    # names, adapters/peft_experts.py, and its nesting order)
    stacked_experts: list[Rule] = field(default_factory=list)
    # what of a config the family's layout cannot hold (a phrase), or None: asked before any rule is given, so
    # to_hf and to_gguf refuse such a model before they write anything
    needs: Callable[[ModelConfig], str | None] | None = None
    # rules whose names depend on the config (StableLM-2-12B's one norm per head, named by head index)
    more_rules: Callable[[ModelConfig], list[Rule]] | None = None
    # an encoder's base model (BertModel, XLMRobertaModel: the body of a sentence-embedding model such as BGE or
    # E5) stores its names without this prefix and no head: read as head `embed` (pooling from the
    # sentence-transformers Pooling module beside it, where there is one)
    base_prefix: str | None = None
    # the checkpoint may hold a multi-token-prediction layer after the last one (model.layers.{n_layers}: DeepSeek-V3,
    # GLM-4.5), which is not loaded, as transformers does not load it
    mtp: bool = False
    # the head is tied exactly where the checkpoint stores no lm_head.weight (vision-language wrappers, whose outer
    # and text configs may disagree on tie_word_embeddings; transformers ties only a head it finds no tensor for)
    tied_by_checkpoint: bool = False
    # regexes of stored names a checkpoint may leave out, read as zeros then: buffers transformers keeps at zero when
    # they are missing (A.X-K1's published checkpoints route without e_score_correction_bias)
    zero_if_absent: tuple[str, ...] = ()

    def rules_for(self, cfg: ModelConfig) -> list[Rule]:
        problem = self.needs(cfg) if self.needs is not None else None
        if problem:
            raise LlmarchError(f"model_type {cfg.hf_model_type} needs {problem}")
        more = self.more_rules(cfg) if self.more_rules is not None else []
        return self.rules + more + (self.heads[cfg.head][1] if cfg.head in self.heads else []) + dense_rules(cfg)


# the suffix of a transformers architecture name -> our head
_ARCH_HEADS = {"ForSequenceClassification": "classify", "ForTokenClassification": "tokens",
               "ForPreTraining": "detect"}  # ELECTRA's discriminator (others' ForPreTraining heads are refused)


def _head_fields(hf_cfg: dict, family: Family) -> dict:
    """ModelConfig.head and n_labels from config.json's `architectures` and `id2label`."""
    arch = (hf_cfg.get("architectures") or [""])[0]
    # a head is "For" + a capital (BertForMaskedLM) or an LM head (BertLMHeadModel); RoFormerModel's "For" is part
    # of its name
    if family.base_prefix is not None and arch.endswith("Model") and not re.search("For[A-Z]|LMHead", arch):
        # each token's final hidden state, unless a sentence-transformers Pooling module says otherwise
        # (_as_base_model), whatever pooling a family's classifier reads (ModernBERT's classifier_pooling)
        return {"head": "embed", "head_transform": False, "head_bias": False, "pooling": "none"}
    head = next((h for suffix, h in _ARCH_HEADS.items() if arch.endswith(suffix)), "lm")
    if head == "lm":
        return {}
    if head not in family.heads:
        raise LlmarchError(f"{arch} checkpoints are not supported for model_type {hf_cfg['model_type']} "
                           f"(heads: lm{''.join(', ' + h for h in sorted(family.heads))})")
    labels = hf_cfg.get("id2label") or {}
    return {"head": head, "n_labels": len(labels) or int(hf_cfg.get("num_labels", 2))}


def read_hf_config(path: Path) -> dict:
    """config.json of a checkpoint directory `path`, or the config file `path` itself."""
    file = path / "config.json" if path.is_dir() else path
    try:
        hf_cfg = json.loads(file.read_text())
    except OSError:
        raise LlmarchError(f"{path} has no config.json" if file != path else f"cannot read {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LlmarchError(f"cannot parse {file}: {e}") from None
    if not isinstance(hf_cfg, dict):
        raise LlmarchError(f"{file} holds a JSON {type(hf_cfg).__name__}, not an object")
    for theirs, test, ours in RETYPED:
        if hf_cfg.get("model_type") == theirs and test(hf_cfg):
            return {**hf_cfg, "model_type": ours}
    return hf_cfg


def is_hf_config(path: str | Path) -> bool:
    """A config.json (or a directory holding one) that names a Hugging Face model_type."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        return False
    try:
        hf_cfg = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(hf_cfg, dict) and "model_type" in hf_cfg


def is_hf_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and is_hf_config(path)


def hf_model_config(hf_cfg: dict, source: str | Path = "config.json") -> ModelConfig:
    """Our ModelConfig for a Hugging Face config.json's contents; a field the family needs that is missing or
    of the wrong type is a one-line error naming it. eos_id: config.json's eos_token_id where it is one id."""
    family = FAMILIES[str(hf_cfg.get("model_type"))]
    try:
        cfg = family.to_config(hf_cfg)
    except KeyError as e:
        raise LlmarchError(f"{source} lacks {e.args[0]}, which model_type {hf_cfg['model_type']} needs") from None
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise LlmarchError(f"{source} has a field of the wrong type or value for model_type "
                           f"{hf_cfg['model_type']}: {e}") from None
    head = _head_fields(hf_cfg, family)
    eos = hf_cfg.get("eos_token_id")
    if cfg.eos_id is None and isinstance(eos, int) and not isinstance(eos, bool):
        head["eos_id"] = eos
    return cfg.replace(**head) if head else cfg


def from_hf(path: str | Path, dtype: torch.dtype | None = None,
            device: str | torch.device | None = None) -> TransformerLM:
    """An llmarch model from a Hugging Face checkpoint directory. dtype: None keeps the stored dtype."""
    path = Path(path)
    if not path.is_dir():
        raise LlmarchError(f"{path} is not a directory")
    hf_cfg = read_hf_config(path)
    family = FAMILIES[str(hf_cfg.get("model_type"))]
    cfg = hf_model_config(hf_cfg, path / "config.json")
    beside = {}
    if cfg.head == "embed" and family.base_prefix is not None:
        family, cfg, beside = _as_base_model(family, cfg, path)
    ckpt = Checkpoint(path, family.canonical)
    for name, (file, key) in beside.items():
        ckpt.add(name, file, key)
    if family.tied_by_checkpoint and cfg.head == "lm":
        cfg = cfg.replace(tie_embeddings="lm_head.weight" not in ckpt.names())
    return build_from(cfg, family, ckpt, path, dtype or _one_dtype(ckpt, hf_cfg, path), device)


def _as_base_model(family: Family, cfg: ModelConfig, path: Path) -> tuple[Family, ModelConfig, dict]:
    """An encoder's base model: its names given the family's prefix, its pooler (a classifier's, unused) not
    read, and the sentence-transformers modules beside it (modules.json), if any: its pooling, Dense projections
    (their tensors, by name, returned) and Normalize (sentence_transformers.py)."""
    prefix, stored = family.base_prefix, family.canonical or str  # the family's own renaming first (ESM's)

    def canonical(name: str) -> str:
        name = stored(name)
        return name if name.startswith(prefix) else prefix + name

    family = replace(family, canonical=canonical, ignore=family.ignore + (r"\.pooler\.",))
    fields, tensors = read_modules(path, cfg.d_model)
    return family, cfg.replace(**fields) if fields else cfg, tensors


def _one_dtype(ckpt: Checkpoint, hf_cfg: dict, path: Path) -> torch.dtype | None:
    """The dtype a checkpoint loads in when none is asked for: its float tensors' own where they agree; where
    they mix (fp32 norms beside bf16 matrices, as some exports store them), config.json's dtype, else fp32, as
    transformers casts them to one."""
    stored = set()
    for name in ckpt.names():
        f, key = ckpt.file(name)
        stored.add(f.dtype(key))
    floats = {d for d in stored if d.is_floating_point}
    if len(floats) <= 1:
        return None
    declared = str(hf_cfg.get("dtype") or hf_cfg.get("torch_dtype") or "")
    return getattr(torch, declared) if declared in ("float32", "float16", "bfloat16") else torch.float32


def build_from(cfg: ModelConfig, family: Family, ckpt, source: Path, dtype: torch.dtype | None,
               device: str | torch.device | None, take: Callable | None = None) -> TransformerLM:
    """The model of `cfg` with its tensors read through the family's rules from `ckpt`, which gives tensors by
    Hugging Face name (safetensors_io.Checkpoint, or a GGUF file's, interop/gguf.py). take(model, name, tensor):
    consumes a tensor as it is read (True), e.g. into a quantized layer (gguf_kernels.py), so the full-precision
    state is never all held at once; False leaves it to the state loaded at the end."""
    model = empty_model(cfg)
    saved = state_for_saving(model)
    wanted = {k: v.shape for k, v in saved.items()}
    state, used, taken = {}, set(), set()
    absent = [re.compile(p) for p in family.zero_if_absent]
    rules = expand(family.rules_for(cfg), cfg)
    for rule in rules:
        if rule.ours in wanted and absent and not set(rule.hf) & ckpt.names() \
                and all(any(p.search(n) for p in absent) for n in rule.hf):
            state[rule.ours] = torch.zeros(wanted[rule.ours], dtype=dtype or torch.float32, device=device)
        elif rule.ours in wanted:
            kind = saved[rule.ours].dtype  # an integer buffer (DeepSeek-V4's tid2eid table) keeps its type
            integer = not kind.is_floating_point
            tensor = _read(ckpt, rule, wanted[rule.ours], cfg, kind if integer else dtype, device, integer)
            if take is not None and take(model, rule.ours, tensor):
                check_finite({rule.ours: tensor}, source)  # assemble checks the rest
                taken.add(rule.ours)
            else:
                state[rule.ours] = tensor
            used.update(rule.hf)
    missing = sorted(set(wanted) - set(state) - taken)
    if missing:
        raise LlmarchError(f"no mapping fills {missing[0]} (model_type {cfg.hf_model_type})")
    ignore = [re.compile(p) for p in family.ignore]
    if cfg.tied_head:  # a tied head may be stored too (BERT's cls.predictions.decoder.weight); it holds the embedding
        heads = {"lm_head.weight"} | {n for rule in rules if rule.ours == "lm_head.weight" for n in rule.hf}
        ignore += [re.compile(f"^{re.escape(n)}$") for n in heads]
    if family.mtp:
        ignore.append(re.compile(rf"^model\.layers\.{cfg.n_layers}\."))
    extra = sorted(n for n in ckpt.names() - used if not any(p.search(n) for p in ignore))
    if extra:
        raise LlmarchError(f"{source}: unexpected tensor {first_and_count(extra)} that the model has no place for")
    return assemble(model, state, device).eval()


def _read(ckpt: Checkpoint, rule: Rule, shape, cfg, dtype, device, integer: bool = False) -> torch.Tensor:
    for name in rule.hf:
        if name not in ckpt.names():
            prefix, _, bare = name.partition(".")
            if bare and bare in ckpt.names():  # BertModel, LlamaModel: the body alone, saved without its prefix
                raise LlmarchError(f"checkpoint is missing tensor {name}: it holds {bare} without the `{prefix}.` "
                                   "prefix, as a model saved without its head does (BertModel rather than "
                                   "BertForMaskedLM), which its config.json's architectures should name")
            raise LlmarchError(f"checkpoint is missing tensor {name}")
    first, key = ckpt.file(rule.hf[0])
    if rule.layout in SPLITS:  # read whole, our share of its rows taken
        out = SPLITS[rule.layout][0](first.read(key), cfg).to(dtype or first.dtype(key))
        if tuple(out.shape) != tuple(shape):
            raise LlmarchError(f"tensor {rule.hf[0]} has shape {first.shape(key)}, which does not hold the config's "
                               f"{rule.ours} of {tuple(shape)}")
        return out.to(device) if device is not None else out
    if rule.layout in JOINS:  # read whole, then joined into ours
        to_ours, to_hf = JOINS[rule.layout]
        parts = []
        for name, want in zip(rule.hf, to_hf(torch.empty(shape, device="meta"), cfg)):
            f, key = ckpt.file(name)
            if f.shape(key) != tuple(want.shape):
                raise LlmarchError(f"tensor {name} has shape {f.shape(key)}, the config expects {tuple(want.shape)}")
            parts.append(f.read(key))
        out = to_ours(parts, cfg).to(dtype or parts[0].dtype)
        return out.to(device) if device is not None else out
    out = torch.empty(shape, dtype=dtype or first.dtype(key))
    for name, piece, layout in zip(rule.hf, pieces(out, cfg, rule), rule.layouts()):
        to_ours, _, hf_shape = LAYOUTS[layout]
        f, key = ckpt.file(name)
        if not f.dtype(key).is_floating_point and not integer:
            raise LlmarchError(f"tensor {name} is stored as {f.dtype(key)}, not a floating-point type")
        expected = tuple(hf_shape(tuple(piece.shape)))
        if f.shape(key) != expected and layout in SHAPE_TOLD:
            layout = SHAPE_TOLD[layout]
            to_ours, _, hf_shape = LAYOUTS[layout]
            expected = tuple(hf_shape(tuple(piece.shape)))
        if f.shape(key) != expected:
            raise LlmarchError(f"tensor {name} has shape {f.shape(key)}, the config expects {expected}")
        if layout == "same" and f.dtype(key) == piece.dtype:
            f.read_into(key, piece)  # straight from disk into place: no temporary copy
        else:
            piece.copy_(to_ours(f.read(key), cfg))
    return out.to(device) if device is not None else out


def to_hf(model: TransformerLM, path: str | Path, tokenizer_from: str | Path | None = None,
          max_shard_bytes: int = 5 * 2**30, labels: list[str] | None = None) -> None:
    """Write `model` as a Hugging Face checkpoint directory that `transformers` loads (shards past
    max_shard_bytes). tokenizer_from: a directory with a tokenizer.json (an llmarch checkpoint or a Hugging Face
    directory) or a tokenizer (a .gguf file's: gguf_tokenizer.checkpoint_tokenizer), written alongside as
    transformers reads it, with the
    files it came with (tokenizer_config.json, chat template, generation_config.json) and its special-token ids
    in config.json.
    labels: class names of a classifier head (id2label), default LABEL_0, LABEL_1, ...
    A quantized model (a QLoRA result) exports as the float model it stands for: its int4 / int8 weights
    dequantized and its adapters merged into them (quant/dequantize.py), the model itself unchanged."""
    from ..quant.dequantize import export_view

    cfg = model.config
    if cfg.hf_model_type is None:
        raise LlmarchError("the model's config has no hf_model_type; set it to one of: "
                           + ", ".join(FAMILIES.names()))
    family = FAMILIES[cfg.hf_model_type]
    if cfg.head != "lm" and cfg.head not in family.heads:
        raise LlmarchError(f"model_type {cfg.hf_model_type} has no Hugging Face layout for the {cfg.head} head")
    ours, cfg = export_view(model)
    rules = family.rules_for(cfg)
    unmapped = sorted(set(ours) - {r.ours for r in expand(rules, cfg)})
    if unmapped:
        raise LlmarchError(f"model_type {cfg.hf_model_type} has no Hugging Face name for {first_and_count(unmapped)}")
    tok = _tokenizer_of(tokenizer_from)  # a damaged one fails before anything is written
    hf_cfg = family.from_config(cfg)  # so does a config the family refuses to write (a rescaled RWKV-6's)
    tensors = export_state(ours, rules, cfg)
    beside = {name: tensors.pop(name) for name in [n for n in tensors if "/" in n]}  # sentence-transformers' Dense
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    shards, current, size = [], {}, 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t.cpu()
        size += nbytes
    shards.append(current)
    dtype = next(iter(tensors.values())).dtype
    if len(shards) == 1:
        save_file(shards[0], str(path / SINGLE), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / fname), metadata={"format": "pt"})
            weight_map.update({name: fname for name in shard})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (path / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    if cfg.head == "embed":  # an encoder alone (T5EncoderModel): no labels; its pooling as sentence-transformers'
        hf_cfg.update(architectures=[family.heads[cfg.head][0]])
        if cfg.pooling != "none":
            write_modules(cfg, path, beside)
    elif cfg.head != "lm":
        names = labels or [f"LABEL_{i}" for i in range(cfg.n_labels)]
        if len(names) != cfg.n_labels:
            raise LlmarchError(f"{len(names)} label names for a head with n_labels={cfg.n_labels}")
        hf_cfg.update(architectures=[family.heads[cfg.head][0]], id2label=dict(enumerate(names)),
                      label2id={name: i for i, name in enumerate(names)})
    hf_cfg.setdefault("dtype", str(dtype).removeprefix("torch."))
    if hf_cfg.get("eos_token_id") is None and cfg.eos_id is not None:
        hf_cfg["eos_token_id"] = cfg.eos_id
    if tok is not None:
        _export_tokenizer(tok, path, hf_cfg)
    (path / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")


def _tokenizer_of(source):
    """The tokenizer to write beside an export: a tokenizer itself (a .gguf file's, as gguf_tokenizer reads it), or
    a checkpoint directory's tokenizer.json; None where the source has none."""
    if source is None or hasattr(source, "save_hf"):
        return source
    return load_tokenizer(source) if (Path(source) / "tokenizer.json").is_file() else None


def _export_tokenizer(tok, path: Path, hf_cfg: dict) -> None:
    """The tokenizer's files as transformers reads them; its special-token ids fill those config.json lacks;
    a generation_config.json with them where none came (transformers' generate stops at its eos_token_id)."""
    tok.save_hf(path)
    for name, value in tok.hf_token_ids().items():
        if hf_cfg.get(name) is None:
            hf_cfg[name] = value
    generation = path / "generation_config.json"
    if not generation.is_file():
        ids = {k: hf_cfg[k] for k in GENERATION_IDS if hf_cfg.get(k) is not None}
        generation.write_text(json.dumps(ids, indent=2) + "\n")
