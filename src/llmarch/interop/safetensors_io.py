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
        header.pop("__metadata__", None)
        self.data_start = 8 + n
        self.entries: dict[str, dict] = header
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            if entry["dtype"] not in DTYPES:
                raise LlmarchError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
            if self.data_start + end > size:
                raise LlmarchError(f"{path} is truncated: tensor {name} ends at byte {self.data_start + end}, "
                                   f"the file has {size}")
            if end - begin != _numel(entry["shape"]) * DTYPES[entry["dtype"]].itemsize:
                raise LlmarchError(f"{path}: tensor {name} has {end - begin} bytes for shape {entry['shape']}")

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


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class Checkpoint:
    """The tensors of a checkpoint directory: one model.safetensors, or shards listed by an index."""

    def __init__(self, directory: Path, canonical=None):
        index = directory / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise LlmarchError(f"cannot read {index}: {e}") from None
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

    def names(self) -> set[str]:
        """Canonical names of the stored tensors."""
        return set(self.stored)

    def file(self, name: str) -> tuple[SafetensorsFile, str]:
        """The file holding a (canonical) tensor, and the name it is stored under there."""
        return self.where[self.stored[name]], self.stored[name]
