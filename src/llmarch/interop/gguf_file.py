"""A GGUF file's metadata and tensor table, parsed once into Python values, its tensors left in the file
(memory-mapped). The layout is llama.cpp's (docs/gguf.md there): magic, version, tensor and key counts, the
key/value pairs, one record per tensor (name, dims ne0 first, type, offset), then the tensor data at the file's
alignment.

Why not `gguf.GGUFReader`, which the tensors' dequantization still comes from (gguf.quants): the reader builds a
numpy view for every part of every value and every string of an array, so opening SmolLM2's file (49,152 tokens
and 48,900 merges) took 3.3 s of a 6.2 s load on the 2-core VM, and this parse takes a fraction of a second. Its
objects keep the reader's shape: `fields[key].contents()`, and `tensors` of (name, tensor_type, shape, n_elements,
n_bytes, data_offset, data), `data` as the reader gives it (elements for float and integer types, each row's
bytes for quantized ones). Little-endian files only, as llama.cpp writes them."""
from __future__ import annotations

import math
import mmap
import struct
from typing import Any, NamedTuple

import numpy as np

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
STRING, ARRAY = 8, 9
# GGUF value types other than string and array: (struct format, numpy dtype)
SCALARS = {0: ("<B", np.uint8), 1: ("<b", np.int8), 2: ("<H", np.uint16), 3: ("<h", np.int16),
           4: ("<I", np.uint32), 5: ("<i", np.int32), 6: ("<f", np.float32), 7: ("<?", np.bool_),
           10: ("<Q", np.uint64), 11: ("<q", np.int64), 12: ("<d", np.float64)}
UINT32 = 4


class GGUFFormatError(ValueError):
    """The file does not follow the format; the message says where."""


class Field:
    """One metadata value: contents() is the Python value (a list for an array, nested for an array of arrays),
    as GGUFReader's fields give. A string that is not UTF-8 fails when its field is read, not when the file is
    opened (a file whose description is damaged still loads)."""

    __slots__ = ("name", "type", "value", "bad")

    def __init__(self, name: str, type: int, value: Any, bad: int | None):
        self.name, self.type, self.value, self.bad = name, type, value, bad

    def contents(self) -> Any:
        if self.bad is not None:
            raise GGUFFormatError(f"metadata {self.name!r}: the string at byte {self.bad} is not UTF-8")
        return _plain(self.value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list) and value and isinstance(value[0], (list, np.ndarray)):
        return [_plain(v) for v in value]
    return value


class _NotUtf8(bytes):
    """A string's bytes that do not decode; the field that holds it says so when read."""


class Tensor(NamedTuple):
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: np.ndarray  # dims, ne0 (the row length) first
    n_elements: int
    n_bytes: int
    data_offset: int
    data: np.ndarray


class _Cursor:
    """Reads the header's values in order, each bounds-checked against the file."""

    def __init__(self, buf):
        self.buf, self.at = buf, 0
        self.bad: int | None = None  # where the current value's first non-UTF-8 string starts

    def take(self, fmt: str):
        try:
            (value,) = struct.unpack_from(fmt, self.buf, self.at)
        except struct.error:
            raise GGUFFormatError(f"the header ends early, at byte {self.at}") from None
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        end = self.at + n
        if end > len(self.buf):
            raise GGUFFormatError(f"a string of {n} bytes at byte {self.at} runs past the end of the file")
        raw = self.buf[self.at:end]
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            if self.bad is None:
                self.bad = self.at
            s = _NotUtf8(raw)
        self.at = end
        return s

    def value(self, kind: int):
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            sub, n = self.take("<I"), self.take("<Q")
            if sub == STRING:
                return [self.string() for _ in range(n)]
            if sub == ARRAY:
                return [self.value(ARRAY) for _ in range(n)]
            dtype = _scalar(sub)[1]
            size = np.dtype(dtype).itemsize * n
            if self.at + size > len(self.buf):
                raise GGUFFormatError(f"an array of {n} values at byte {self.at} runs past the end of the file")
            out = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.at)
            self.at += size
            return out
        return self.take(_scalar(kind)[0])


def _scalar(kind: int):
    if kind not in SCALARS:
        raise GGUFFormatError(f"unknown metadata value type {kind}")
    return SCALARS[kind]


class GGUFFile:
    """The file at path: `fields` (key -> Field, in file order) and `tensors` (Tensor, in file order).
    Raises GGUFFormatError naming what is wrong for a file that is not GGUF, is truncated or is inconsistent."""

    def __init__(self, path: str):
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        with open(path, "rb") as f:
            try:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                raise GGUFFormatError("the file is empty") from None
        buf = self._map
        if buf[:4] != MAGIC:
            raise GGUFFormatError("no GGUF magic at its start")
        c = _Cursor(buf)
        c.at = 4
        version = c.take("<I")
        if version not in VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            raise GGUFFormatError("big-endian GGUF files are not supported" if swapped in VERSIONS else
                                  f"GGUF version {version} (this reader knows {', '.join(map(str, VERSIONS))})")
        self.version = version
        n_tensors, n_fields = c.take("<Q"), c.take("<Q")
        self.fields: dict[str, Field] = {}
        for _ in range(n_fields):
            key = c.string()
            if c.bad is not None:
                raise GGUFFormatError(f"the metadata key at byte {c.bad} is not UTF-8")
            if key in self.fields:
                raise GGUFFormatError(f"metadata {key!r} appears twice")
            kind = c.take("<I")
            self.fields[key] = Field(key, kind, c.value(kind), c.bad)
            c.bad = None
        records = []
        for _ in range(n_tensors):
            name = c.string()
            if c.bad is not None:
                raise GGUFFormatError(f"the tensor name at byte {c.bad} is not UTF-8")
            n_dims = c.take("<I")
            if n_dims > 8:
                raise GGUFFormatError(f"tensor {name!r} claims {n_dims} dimensions")
            dims = [c.take("<Q") for _ in range(n_dims)]
            records.append((name, dims, c.take("<I"), c.take("<Q")))
        align = self.fields.get("general.alignment")
        alignment = DEFAULT_ALIGNMENT if align is None else align.value
        if align is not None and (align.type != UINT32 or alignment == 0 or alignment & (alignment - 1)):
            raise GGUFFormatError(f"general.alignment {alignment!r} is not a power of two held as uint32")
        self.data_offset = -(-c.at // alignment) * alignment
        self.tensors: list[Tensor] = []
        seen = set()
        for name, dims, raw_type, offset in records:
            if name in seen:
                raise GGUFFormatError(f"tensor {name!r} appears twice")
            seen.add(name)
            try:
                kind = GGMLQuantizationType(raw_type)
            except ValueError:
                raise GGUFFormatError(f"tensor {name!r} has unknown tensor type {raw_type}") from None
            block, type_size = GGML_QUANT_SIZES[kind]
            n = math.prod(dims)  # Python ints: a product past 2**64 cannot wrap round and pass the bounds check
            if block > 1 and not dims:
                raise GGUFFormatError(f"tensor {name!r} of {kind.name} blocks has no dimensions")
            if dims and dims[0] % block:
                raise GGUFFormatError(f"tensor {name!r}: rows of {dims[0]} are no whole {kind.name} blocks of "
                                      f"{block}")
            n_bytes = n // block * type_size
            start = self.data_offset + offset
            if start + n_bytes > len(buf):
                raise GGUFFormatError(f"tensor {name!r} runs past the end of the file")
            shape = tuple(reversed(dims))
            if block == 1 and kind.name in ("F32", "F16", "F64", "I8", "I16", "I32", "I64"):
                dtype = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8,
                         "I16": np.int16, "I32": np.int32, "I64": np.int64}[kind.name]
                data = np.frombuffer(buf, dtype=dtype, count=n, offset=start).reshape(shape)
            else:  # each row's bytes, as GGUFReader lays them out (gguf.quants.dequantize takes this)
                row_bytes = shape[-1] // block * type_size if shape else type_size
                data = np.frombuffer(buf, dtype=np.uint8, count=n_bytes, offset=start).reshape(
                    *shape[:-1], row_bytes)
            self.tensors.append(Tensor(name, kind, np.array(dims, dtype=np.uint64), n, n_bytes, start, data))
