"""Sentence-transformers folders (Reimers & Gurevych 2019): a Hugging Face checkpoint whose modules.json lists, after
the Transformer (the checkpoint itself), the modules that turn its hidden states into one vector a text:
- Pooling (its folder's config.json: pooling_mode_cls_token, _mean_tokens or _lasttoken): ModelConfig.pooling;
- Dense (in_features, out_features, bias, activation_function; its weights linear.weight and linear.bias in its
  folder's model.safetensors): embed_dense (the out_features in order), embed_dense_bias, embed_dense_act
  (EmbeddingGemma: 768 -> 3072 -> 768, identity, no bias; Vera et al. 2025, §2);
- Normalize: embed_normalize.
The Dense weights are named by the folder sentence-transformers numbers the k-th one (k + 2: 0 is the Transformer,
1 the Pooling), `2_Dense/linear.weight`, whatever folder a checkpoint keeps them in; to_hf writes the modules back
under those folders so that the folder reads the same."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import LlmarchError
from .mapping import Rule
from .safetensors_io import SafetensorsFile

_PREFIX = "sentence_transformers.models."
MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "last"}
ACTS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh"}


def dense_name(k: int, end: str = "weight") -> str:
    return f"{k + 2}_Dense/linear.{end}"


def dense_rules(cfg) -> list[Rule]:
    """The rules of the Dense projections' weights (and biases)."""
    ends = ("weight", "bias") if cfg.embed_dense_bias else ("weight",)
    return [Rule.of(dense_name(k, end), f"sentence_dense.layers.{k}.{end}")
            for k in range(len(cfg.embed_dense or ())) for end in ends]


def _modules(path: Path) -> list[dict]:
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return []
    return [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def sentence_pooling(path: Path) -> str | None:
    """cls, mean or last: what the Pooling module pools by; None where there is none or it pools otherwise."""
    folder = next((m.get("path") for m in _modules(path) if str(m.get("type", "")).endswith("Pooling")), None)
    try:
        pooling = json.loads((path / folder / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return None
    chosen = [ours for key, ours in MODES.items() if isinstance(pooling, dict) and pooling.get(key)]
    return chosen[0] if len(chosen) == 1 else None


def read_modules(path: Path, d_model: int) -> tuple[dict, dict]:
    """(the ModelConfig fields of the modules after the Transformer, {Dense weight name: (its file, its key)})."""
    fields, tensors, widths, biases, acts = {}, {}, [], set(), set()
    pooling = sentence_pooling(path)
    if pooling is not None:
        fields["pooling"] = pooling
    for module in _modules(path):
        kind = str(module.get("type", ""))
        if kind.endswith("Normalize"):
            fields["embed_normalize"] = True
        if not kind.endswith("Dense"):
            continue
        folder = path / str(module.get("path", ""))
        try:
            conf = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            raise LlmarchError(f"{folder}: a sentence-transformers Dense module without a readable "
                               "config.json") from None
        act = ACTS.get(conf.get("activation_function", "torch.nn.modules.activation.Tanh"))
        if act is None or conf.get("in_features") != (widths[-1] if widths else d_model):
            raise LlmarchError(f"{folder}: a Dense module of {conf.get('in_features')} inputs with activation "
                               f"{conf.get('activation_function')} is not supported (identity or tanh, reading the "
                               f"{widths[-1] if widths else d_model}-wide vector before it)")
        if not (folder / "model.safetensors").is_file():
            raise LlmarchError(f"{folder} holds no model.safetensors (a Dense module's weights are read from it only)")
        file, k = SafetensorsFile(folder / "model.safetensors"), len(widths)
        bias = bool(conf.get("bias", True))
        for end in ("weight", "bias") if bias else ("weight",):
            if f"linear.{end}" not in file.entries:
                raise LlmarchError(f"{folder / 'model.safetensors'} has no linear.{end}")
            tensors[dense_name(k, end)] = (file, f"linear.{end}")
        widths.append(int(conf["out_features"]))
        biases.add(bias)
        acts.add(act)
    if widths:
        if len(biases) > 1 or len(acts) > 1:
            raise LlmarchError(f"{path}: Dense modules that differ in bias or activation are not supported")
        if fields.get("pooling") is None:
            raise LlmarchError(f"{path}: Dense modules after a pooling llmarch does not read (cls, mean or last)")
        fields.update(embed_dense=widths, embed_dense_bias=biases.pop(), embed_dense_act=acts.pop())
    return fields, tensors


def write_modules(cfg, path: Path, tensors: dict) -> None:
    """modules.json and the modules' folders for an embed head that pools: Pooling, the Dense projections (their
    weights from `tensors`, by dense_name), Normalize."""
    from safetensors.torch import save_file

    modules = [dict(idx=0, name="0", path="", type=_PREFIX + "Transformer"),
               dict(idx=1, name="1", path="1_Pooling", type=_PREFIX + "Pooling")]
    (path / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": cfg.d_model, **{key: cfg.pooling == ours for key, ours in MODES.items()}}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    widths = [cfg.d_model, *(cfg.embed_dense or ())]
    act = next(name for name, ours in ACTS.items() if ours == cfg.embed_dense_act)
    for k, (a, b) in enumerate(zip(widths, widths[1:])):
        folder = dense_name(k).split("/")[0]
        (path / folder).mkdir(exist_ok=True)
        conf = dict(in_features=a, out_features=b, bias=cfg.embed_dense_bias, activation_function=act)
        (path / folder / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
        ends = ("weight", "bias") if cfg.embed_dense_bias else ("weight",)
        save_file({f"linear.{end}": tensors[dense_name(k, end)].contiguous() for end in ends},
                  str(path / folder / "model.safetensors"), metadata={"format": "pt"})
        modules.append(dict(idx=k + 2, name=str(k + 2), path=folder, type=_PREFIX + "Dense"))
    if cfg.embed_normalize:
        n = len(modules)
        modules.append(dict(idx=n, name=str(n), path=f"{n}_Normalize", type=_PREFIX + "Normalize"))
        (path / f"{n}_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
