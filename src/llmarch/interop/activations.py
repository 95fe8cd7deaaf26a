"""transformers' activation names (a config's `hidden_act`, `activation_function` ...) and llmarch's FFN kinds, both
ways. transformers resolves the names through ACT2FN (transformers/activations.py); a family whose model does not
(openai-gpt's own ACT_FNS) passes its own table to `read_activation`."""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import LlmarchError
from ..layers.ffn import FFN_ACTIVATION

# ACT2FN name -> the ungated FFN kind computing the same function
HF_ACTIVATIONS: dict[str, str] = {
    "gelu": "gelu", "gelu_python": "gelu",  # x \u03a6(x), the erf GELU (Hendrycks & Gimpel 2016, \u00a72)
    # 0.5 x (1 + tanh(sqrt(2/\u03c0) (x + 0.044715 x^3))), its tanh approximation (ibid.), five spellings (gelu_fast
    # rounds sqrt(2/\u03c0) to 0.7978845608: equal to 1e-10)
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_python_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "gelu_accurate": "gelu_tanh",
    "quick_gelu": "quick_gelu", "relu": "relu", "relu2": "relu2", "silu": "silu", "swish": "silu",
}
# the same names read as the activation of a gated FFN: act(x W_gate) * x W_up
_GLU = {act: glu for glu, act in FFN_ACTIVATION.items() if glu in ("swiglu", "geglu", "geglu_tanh", "relu2_glu")}
HF_GATED_ACTIVATIONS: dict[str, str] = {name: _GLU[ffn] for name, ffn in HF_ACTIVATIONS.items() if ffn in _GLU}
# ungated FFN kind -> the name written on export, unless a family keeps its own spelling
HF_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "quick_gelu": "quick_gelu", "relu": "relu", "relu2": "relu2",
            "silu": "silu"}
PYTORCH_TANH = {"gelu_tanh": "gelu_pytorch_tanh"}  # the spelling several families write instead of gelu_new


def read_activation(hf: dict, family: str, key: str, default: str,
                    table: Mapping[str, str] = HF_ACTIVATIONS) -> str:
    """The FFN kind for the activation a transformers config names under `key` (`default` where absent)."""
    act = hf.get(key) or default
    if act not in table:
        raise LlmarchError(f"{family}: {key} {act!r} is not supported ({', '.join(table)})")
    return table[act]


def hf_activation(ffn: str, spelling: Mapping[str, str] = {}) -> str:
    """The transformers name to write for an ungated FFN kind (a gated one: pass its FFN_ACTIVATION); `spelling`: a
    family's own names where it writes another of the equivalent ones (e.g. `gelu_pytorch_tanh` for `gelu_tanh`).
    A kind without one comes back as it is, for the family's read-back check to refuse."""
    return spelling.get(ffn) or HF_NAMES.get(ffn, ffn)


def exportable(ffn: str) -> bool:
    """Whether `hf_activation` has a name for this ungated FFN kind."""
    return ffn in HF_NAMES


def require_hf_activation(ffn: str, model_type: str, spelling: Mapping[str, str] = {}) -> str:
    """`hf_activation`, for a family without a read-back check: a kind without a name is refused in one line."""
    if not exportable(ffn):
        raise LlmarchError(f"model_type {model_type} needs an ungated ffn ({', '.join(HF_NAMES)}), not {ffn!r}")
    return hf_activation(ffn, spelling)
