"""What a quantized model is: the method, the int4 group size, whether the LM head is quantized, and the dtype
the kernels compute in. Saved beside a quantized checkpoint as quantization.json (config.json stays the
ModelConfig), so `llmarch.load` rebuilds the same modules before it reads their packed tensors."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import LlmarchError

SCHEME_FILE = "quantization.json"
# int8 per output channel, round-to-nearest or GPTQ; int4 in groups: round-to-nearest, HQQ, or GPTQ (GPTQ
# calibrated on training text)
METHODS = ("int8", "int8-gptq", "int4", "int4-hqq", "int4-gptq")
GROUP_SIZES = (32, 64, 128, 256)  # the int4 CPU kernel's groups (a power of two >= 32)
COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class Scheme:
    method: str = "int8"
    group_size: int = 64  # int4 only: the input columns that share one scale and one zero
    head: bool = True  # quantize the LM head too (a tied head gets its own quantized copy)
    embeddings: bool = False  # the token embedding table to int8 per row (with a tied head, the head too)
    # the activations' dtype in the kernels: torch's CPU int8/int4 kernels are ~10-200x faster in bf16 than fp32
    # (docs/quantization.md); float32 gives results equal to the dequantized weights' up to summation order
    compute_dtype: str = "bfloat16"
    # the LM head to int8 per output channel whatever the method: as a GGUF file holds it in Q8_0 beside Q4_1
    # matrices (SmolLM2's), where an int4 copy of a 49k-row table costs 5% perplexity (docs/quantization.md)
    head_int8: bool = False
    # layers held in int8 under an int4 method (module names; an expert's as `<experts>.<gate_up|up|down>.<e>`):
    # a GGUF file's 5- to 8-bit matrices beside its 4-bit ones (Q4_K_M's Q6_K), which int4 cannot hold exactly
    int8_layers: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "int8_layers", tuple(self.int8_layers))  # a JSON list reads back as a tuple
        if self.int8_layers and not self.int4:
            raise LlmarchError("int8_layers names layers kept in int8 under an int4 method, not " + self.method)
        if self.method not in METHODS:
            raise LlmarchError(f"unknown quantization method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.int4 and self.group_size not in GROUP_SIZES:
            raise LlmarchError(f"group_size must be one of {', '.join(map(str, GROUP_SIZES))} for int4, "
                               f"got {self.group_size}")
        if self.head_int8 and not self.head:
            raise LlmarchError("head_int8=True needs head=True: it says how the head is quantized")
        if self.embeddings and not self.head:
            raise LlmarchError("embeddings=True needs head=True: a tied head cannot share an int8 table")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise LlmarchError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")

    @property
    def int4(self) -> bool:
        return self.method.startswith("int4")

    @property
    def calibrated(self) -> bool:
        """Whether quantizing needs calibration data (the model's activations on training text)."""
        return self.method.endswith("-gptq")

    @property
    def dtype(self) -> torch.dtype:
        return COMPUTE_DTYPES[self.compute_dtype]

    def save(self, directory: str | Path) -> None:
        Path(directory, SCHEME_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Scheme:
        path = Path(directory, SCHEME_FILE)
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as e:
            raise LlmarchError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


def is_quantized_dir(directory: str | Path) -> bool:
    return Path(directory, SCHEME_FILE).is_file()
