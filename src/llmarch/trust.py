"""What llmarch reads from disk only when the user says its source is trusted (docs/security.md), and JSON
read with a one-line error; apart from dcp_json.py, so that reading a run's state files does not import
torch.distributed.checkpoint (half a second at every command's start)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import LlmarchError

TRUST_ENV = "LLMARCH_TRUST_PICKLE"


def trusted() -> bool:
    return os.environ.get(TRUST_ENV) == "1"


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LlmarchError(f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}") from None
