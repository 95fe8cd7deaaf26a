"""torch.distributed.checkpoint (DCP) storage without pickle. DCP's own FileSystemWriter pickles the checkpoint's
metadata into `.metadata`, and its reader unpickles it (and loads non-tensor items with torch.load(weights_only=
False)): opening a crafted checkpoint would run its code. Here the same metadata is written as `metadata.json`, read
back by a strict JSON parser, and non-tensor items (optimizer hyper-parameters) load through torch's weights-only
loader. The shard files (`__R_N.distcp`) are DCP's own; their tensors are read with weights_only=True by DCP.

A DCP folder with only the pickled `.metadata` (written before this format, or by other tools) is read only when the
user says it is trusted: LLMARCH_TRUST_PICKLE=1 (docs/security.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (BytesStorageMetadata, ChunkStorageMetadata, Metadata,
                                                   MetadataIndex, StorageMeta, TensorProperties,
                                                   TensorStorageMetadata)

from .errors import LlmarchError
from .trust import TRUST_ENV, read_json, trusted

METADATA = "metadata.json"
PICKLED = ".metadata"
class JsonWriter(FileSystemWriter):
    """DCP's file-system writer; the metadata it pickles is replaced by metadata.json."""

    def finish(self, metadata: Metadata, results) -> None:
        super().finish(metadata, results)  # merges every process' storage entries into `metadata`
        folder = Path(self.path)
        tmp = folder / f".{METADATA}.tmp"
        tmp.write_text(json.dumps(encode(metadata)))
        os.replace(tmp, folder / METADATA)
        (folder / PICKLED).unlink(missing_ok=True)


class JsonReader(FileSystemReader):
    """DCP's file-system reader over metadata.json (or, trusted only, a pickled .metadata)."""

    def read_metadata(self, *args, **kwargs) -> Metadata:
        folder = Path(self.path)
        if not (folder / METADATA).is_file():
            if (folder / PICKLED).is_file() and trusted():
                return super().read_metadata(*args, **kwargs)
            raise untrusted(folder)
        metadata = decode(read_json(folder / METADATA), folder)
        metadata.storage_meta.load_id = self.load_id
        return metadata


class WeightsOnlyPlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor items read by torch's weights-only loader (no arbitrary objects)."""

    def load_bytes(self, read_item, value) -> None:
        try:
            obj = torch.load(value, weights_only=True)
        except Exception:  # torch's weights-only loader refused a global: a crafted or foreign item
            raise LlmarchError(f"refusing stored item {read_item.dest_index.fqn}: it is not plain data "
                               "(torch's weights-only loader refused it)") from None
        if self.flatten_state_dict:
            from torch.distributed.checkpoint._traverse import set_element

            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


def load(state: dict, folder: Path, distributed: bool = False) -> None:
    """dcp.load of `state` (filled in place) from `folder` with this module's reader and planner; whatever fails
    (a missing shard, a corrupt or crafted item) is one line naming the folder."""
    import pickle
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore")
            dcp.load(state, storage_reader=JsonReader(folder), planner=WeightsOnlyPlanner(), no_dist=not distributed)
    except (OSError, ValueError, EOFError, RuntimeError, pickle.UnpicklingError, CheckpointException,
            LlmarchError) as e:  # DCP's exception carries the reading process' traceback: keep its last line
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        detail = detail.removeprefix("llmarch.errors.LlmarchError: ").split(". ")[0]  # its first sentence
        raise LlmarchError(f"cannot read {folder} (truncated, corrupt or crafted?): {detail}") from None


def untrusted(folder: Path) -> LlmarchError:
    return LlmarchError(f"{folder} holds a pickled DCP .metadata, which can run code when read; llmarch does not "
                        f"unpickle. If you trust its source, set {TRUST_ENV}=1 (docs/security.md)")


# ---- Metadata <-> JSON --------------------------------------------------------------------------------------
def encode(md: Metadata) -> dict:
    entries = {}
    for fqn, m in md.state_dict_metadata.items():
        if isinstance(m, TensorStorageMetadata):
            entries[fqn] = {"dtype": str(m.properties.dtype).removeprefix("torch."), "size": list(m.size),
                            "chunks": [[list(c.offsets), list(c.sizes)] for c in m.chunks]}
        else:
            entries[fqn] = {"bytes": True}
    storage = [{"fqn": i.fqn, "offset": None if i.offset is None else list(i.offset), "index": i.index,
                "path": s.relative_path, "start": s.offset, "length": s.length,
                "transforms": list(s.transform_descriptors or [])}
               for i, s in md.storage_data.items()]
    planner = {k: list(v) for k, v in (md.planner_data or {}).items()}
    return {"format": "llmarch-dcp-json", "version": md.version, "entries": entries, "storage": storage,
            "planner": planner}


def decode(data, folder: Path) -> Metadata:
    """metadata.json back to DCP's Metadata, every field checked: a malformed file is a one-line error."""
    def bad(what: str) -> LlmarchError:
        return LlmarchError(f"{folder / METADATA} is malformed: {what}")

    def ints(x, what: str) -> list[int]:
        if not isinstance(x, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x):
            raise bad(f"{what} must be a list of non-negative integers")
        return x

    if not isinstance(data, dict) or data.get("format") != "llmarch-dcp-json":
        raise bad("not an llmarch DCP metadata file")
    entries, storage, planner = data.get("entries"), data.get("storage"), data.get("planner")
    if not isinstance(entries, dict) or not isinstance(storage, list) or not isinstance(planner, dict):
        raise bad("entries, storage and planner must be a mapping, a list and a mapping")
    state = {}
    for fqn, e in entries.items():
        if not isinstance(e, dict):
            raise bad(f"entry {fqn}")
        if e.get("bytes") is True:
            state[fqn] = BytesStorageMetadata()
            continue
        dtype = getattr(torch, str(e.get("dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise bad(f"entry {fqn} has dtype {e.get('dtype')!r}")
        chunks = e.get("chunks")
        if not isinstance(chunks, list) or not all(isinstance(c, list) and len(c) == 2 for c in chunks):
            raise bad(f"entry {fqn} has malformed chunks")
        state[fqn] = TensorStorageMetadata(
            TensorProperties(dtype=dtype), torch.Size(ints(e.get("size"), f"{fqn}'s size")),
            [ChunkStorageMetadata(torch.Size(ints(o, "a chunk offset")), torch.Size(ints(s, "a chunk size")))
             for o, s in chunks])
    storage_data = {}
    for s in storage:
        if not isinstance(s, dict) or not isinstance(s.get("fqn"), str) or not isinstance(s.get("path"), str):
            raise bad("a storage entry lacks its fqn or path")
        path = s["path"]
        if Path(path).name != path or path.startswith("."):  # a file of this folder, never ../ or /
            raise bad(f"storage path {path!r} leaves the folder")
        start, length = ints([s.get("start"), s.get("length")], "a storage start and length")
        index = s.get("index")
        if index is not None and not isinstance(index, int):
            raise bad("a storage index must be an integer")
        offset = None if s.get("offset") is None else torch.Size(ints(s["offset"], "a storage offset"))
        transforms = s.get("transforms") or None
        if transforms is not None and not all(isinstance(t, str) for t in transforms):
            raise bad("storage transforms must be strings")
        storage_data[MetadataIndex(s["fqn"], offset, index)] = _StorageInfo(path, start, length, transforms)
    planner_data = {}
    for k, v in planner.items():
        if not isinstance(v, list) or not all(isinstance(p, (str, int)) for p in v):
            raise bad(f"planner path of {k}")
        planner_data[k] = tuple(v)
    return Metadata(state_dict_metadata=state, planner_data=planner_data, storage_data=storage_data,
                    storage_meta=StorageMeta(), version=data.get("version"))
