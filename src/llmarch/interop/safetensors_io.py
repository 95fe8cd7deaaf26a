"""Reading safetensors files ourselves, tensor by tensor, straight into preallocated memory.
Plain reads (not mmap) keep the file's pages out of our resident set, so loading a checkpoint costs about
one copy of the weights; and every offset is checked against the file size, so a truncated or corrupted
file is a one-line error naming the file and tensor. Format: 8-byte little-endian header length, a JSON
header {name: {dtype, shape, data_offsets: [begin, end]}}, then the data."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from ..errors import LlmarchError

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


class SafetensorsFile:
    def __init__(self, path: Path):
        self.path = path
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError("shorter than its 8-byte header length")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise ValueError(f"header length {n} exceeds the file size {size}")
                header = json.loads(f.read(n))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise LlmarchError(f"cannot read {path} (truncated or corrupt?): {e}") from None
        if not isinstance(header, dict):
            raise LlmarchError(f"{path}: the header is a JSON {type(header).__name__}, not an object of tensors")
        header.pop("__metadata__", None)
        self.data_start = 8 + n
        self.entries: dict[str, dict] = header
        for name, entry in header.items():
            _check_entry(path, name, entry)
            begin, end = entry["data_offsets"]
            if self.data_start + end > size:
                raise LlmarchError(f"{path} is truncated: tensor {name} ends at byte {self.data_start + end}, "
                                   f"the file has {size}")
            if end - begin != _numel(entry["shape"]) * DTYPES[entry["dtype"]].itemsize:
                raise LlmarchError(f"{path}: tensor {name} has {end - begin} bytes for shape {entry['shape']}")
        _check_packed(path, header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def dtype(self, name: str) -> torch.dtype:
        return DTYPES[self.entries[name]["dtype"]]

    def read_into(self, name: str, out: torch.Tensor) -> None:
        """Fill a contiguous CPU tensor of the stored dtype and shape with the stored bytes."""
        begin, end = self.entries[name]["data_offsets"]
        with self.path.open("rb") as f:
            f.seek(self.data_start + begin)
            if f.readinto(memoryview(out.view(-1).view(torch.uint8).numpy())) != end - begin:
                raise LlmarchError(f"{self.path} is truncated inside tensor {name}")

    def read(self, name: str) -> torch.Tensor:
        out = torch.empty(self.shape(name), dtype=self.dtype(name))
        self.read_into(name, out)
        return out


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_entry(path: Path, name: str, entry) -> None:
    """One header entry has the format's shape: {dtype: known name, shape: [n >= 0, ...],
    data_offsets: [begin, end] with 0 <= begin <= end}."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise LlmarchError(f"{path}: header entry {name} is not an object with dtype, shape and data_offsets")
    if not isinstance(entry["dtype"], str) or entry["dtype"] not in DTYPES:
        raise LlmarchError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(map(_is_count, shape)):
        raise LlmarchError(f"{path}: tensor {name} has shape {shape!r}, not a list of sizes >= 0")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets))
            or offsets[0] > offsets[1]):
        raise LlmarchError(f"{path}: tensor {name} has data_offsets {offsets!r}, not [begin, end] "
                           "with 0 <= begin <= end")


def _check_packed(path: Path, header: dict) -> None:
    """The tensors' bytes follow one another from the start of the data, as the format requires: two
    tensors sharing bytes would read each other's values without any error."""
    at = 0
    for name, entry in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if begin != at:
            raise LlmarchError(f"{path}: tensor {name} starts at data byte {begin}, the tensors before it end at {at} "
                               "(overlapping or with a gap)")
        at = end


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _read_weight_map(index: Path) -> dict[str, str]:
    """The index's weight_map: tensor name -> a shard file in the same directory."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LlmarchError(f"cannot parse {index}: {e}") from None
    except (KeyError, TypeError):
        raise LlmarchError(f"{index} has no weight_map") from None
    if not isinstance(weight_map, dict):
        raise LlmarchError(f"{index}: weight_map is a JSON {type(weight_map).__name__}, not an object "
                           "of tensor name -> file")
    for name, file in weight_map.items():
        if not isinstance(file, str) or Path(file).name != file:
            raise LlmarchError(f"{index} maps tensor {name} to {file!r}, not a file name in its directory")
    return weight_map


class Checkpoint:
    """The tensors of a checkpoint directory: one model.safetensors, or shards listed by an index."""

    def __init__(self, directory: Path, canonical=None):
        index = directory / INDEX
        if index.is_file():
            weight_map = _read_weight_map(index)
            files = {f: SafetensorsFile(directory / f) for f in sorted(set(weight_map.values()))}
            self.where = {name: files[f] for name, f in weight_map.items()}
        else:
            paths = sorted(directory.glob("*.safetensors"))
            if not paths:
                raise LlmarchError(f"{directory} has no *.safetensors weights")
            self.where = {}
            for p in paths:
                st = SafetensorsFile(p)
                self.where.update({name: st for name in st.entries})
        for name, st in self.where.items():
            if name not in st.entries:
                raise LlmarchError(f"{index} maps tensor {name} to {st.path.name}, which does not hold it")
        # canonical name -> stored name, for families whose older checkpoints name tensors differently
        self.stored = {(canonical(n) if canonical else n): n for n in self.where}
        self.beside: dict[str, tuple[SafetensorsFile, str]] = {}

    def add(self, name: str, file: SafetensorsFile, key: str) -> None:
        """A tensor kept in a file beside the checkpoint's (a sentence-transformers Dense module's), as `name`."""
        self.beside[name] = (file, key)

    def names(self) -> set[str]:
        """Canonical names of the stored tensors."""
        return set(self.stored) | set(self.beside)

    def file(self, name: str) -> tuple[SafetensorsFile, str]:
        """The file holding a (canonical) tensor, and the name it is stored under there."""
        if name in self.beside:
            return self.beside[name]
        return self.where[self.stored[name]], self.stored[name]
