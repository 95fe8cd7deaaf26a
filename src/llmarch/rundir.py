"""Run directories and crash-safe writes. A training run's directory holds step-NNNNNN/ checkpoints and a
`latest` file naming the newest; every directory or file is written under a temporary name and renamed into
place, so a crash never leaves a half-written one under its final name."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import LlmarchError

CONFIG = "config.json"  # the file that makes a directory a checkpoint (checkpoint.py writes it)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory whose `latest` file names one, or a GGUF file (interop/gguf.py)."""
    path = Path(path)
    if not path.exists():
        raise LlmarchError(f"checkpoint {path} does not exist")
    if (path / CONFIG).is_file() or (path.is_file() and path.suffix == ".gguf"):
        return path
    latest = path / "latest"
    if latest.is_file():
        target = path / latest.read_text().strip()
        if (target / CONFIG).is_file():
            return target
        raise LlmarchError(f"{latest} names {target.name}, which is not a checkpoint")
    raise LlmarchError(f"{path} is not a checkpoint: no {CONFIG} (and no `latest` file)")


def atomic_directory(final: Path, write) -> None:
    """Write a directory under a temporary name beside `final`, then rename it into place, so a crash
    never leaves a half-written checkpoint under the final name."""
    if final.is_symlink():  # write where the link points, and keep the link
        final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # as mkdir would make it (mkdtemp's is private to its owner)
    try:
        write(tmp)
        move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into_place(tmp: Path, final: Path) -> None:
    """Rename a completely written directory to `final`, replacing any directory of that name (moved first to
    a fresh name of its own: a fixed one could be a directory of the user's)."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def publish(run: Path, name: str, keep: int) -> Path:
    """Name the run's newest checkpoint in its `latest` file, then remove those older than the last `keep`."""
    write_text_atomic(run / "latest", name + "\n")
    for old in sorted(p for p in run.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return run / name


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text under a temporary name beside `path`, then rename it into place: a failed write (a full
    disk) leaves any file already at `path` as it was, and no temporary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
