"""OpenAI request bodies -> what the scheduler runs: each parameter checked (a bad one is an LlmarchError naming
it, which the app answers with status 400), prompts tokenized and held to the model's context."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from ..generate.penalties import Penalties

MAX_LOGPROBS = 20  # as OpenAI's API


class BadRequest(LlmarchError):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class Sampling:
    max_tokens: int | None
    temperature: float
    top_p: float | None
    top_k: int | None
    seed: int | None
    n: int
    stop: list[str]
    stream: bool
    include_usage: bool
    logprobs: int | None  # alternatives per token; None: no logprobs
    echo: bool
    penalties: Penalties | None = None  # presence_penalty, frequency_penalty, repetition_penalty; None: none


# a seed and the n - 1 after it (choice c samples with seed + c) are torch generator seeds, at most 2^64 - 1; the
# bound leaves room for any n
MAX_SEED = 2**63 - 1

def _number(body: dict, name: str, default, kind, low=None, high=None, low_open=False):
    value = body.get(name, default)
    if value is None or value is default:
        return value
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        span = f" in {'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]" if low is not None else ""
        raise BadRequest(f"{name} must be {'an integer' if kind is int else 'a number'}{span}, got {value!r}", name)
    return kind(value)


def _bool(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool) and value is not None:
        raise BadRequest(f"{name} must be true or false, got {value!r}", name)
    return bool(value)


def sampling(body: dict, chat: bool, vocab: int) -> Sampling:
    """The sampling parameters both endpoints share, plus completions' logprobs/echo or chat's
    logprobs/top_logprobs; a parameter asking for what this server does not do is refused (unsupported)."""
    unsupported(body)
    max_tokens = _number(body, "max_completion_tokens" if chat and "max_completion_tokens" in body
                         else "max_tokens", None if chat else 16, int, 0)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop must be a string or a list of up to 4 non-empty strings", "stop")
    if chat:
        logprobs = _number(body, "top_logprobs", 0, int, 0, MAX_LOGPROBS) if _bool(body, "logprobs") else None
        echo = False
    else:
        logprobs = _number(body, "logprobs", None, int, 0, MAX_LOGPROBS)
        echo = _bool(body, "echo")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("stream_options must be an object", "stream_options")
    # OpenAI's presence and frequency penalties in its range [-2, 2]; repetition_penalty (CTRL's, not OpenAI's
    # but vLLM's and llama.cpp's server's) any positive number
    penalties = Penalties(_number(body, "repetition_penalty", 1.0, float, 0, low_open=True),
                          _number(body, "presence_penalty", 0.0, float, -2, 2),
                          _number(body, "frequency_penalty", 0.0, float, -2, 2), _logit_bias(body, vocab))
    return Sampling(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, float, 0, 2),
                    top_p=_number(body, "top_p", None, float, 0, 1, low_open=True),
                    top_k=_number(body, "top_k", None, int, 1), seed=_number(body, "seed", None, int, 0, MAX_SEED),
                    n=_number(body, "n", 1, int, 1), stop=stop, stream=_bool(body, "stream"),
                    include_usage=bool(options.get("include_usage")), logprobs=logprobs, echo=echo,
                    penalties=penalties if penalties.active else None)


def _logit_bias(body: dict, vocab: int) -> tuple[tuple[int, float], ...]:
    """OpenAI's logit_bias: {"token id": bias in [-100, 100]} -> (id, bias) pairs."""
    bias = body.get("logit_bias") or {}
    if not isinstance(bias, dict):
        raise BadRequest("logit_bias must be an object of token ids and biases", "logit_bias")
    pairs = []
    for key, value in bias.items():
        if not (key.isdigit() and int(key) < vocab):
            raise BadRequest(f"logit_bias: {key!r} is not a token id of this model's vocabulary (0..{vocab - 1})",
                             "logit_bias")
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and -100 <= value <= 100
        if not ok:
            raise BadRequest(f"logit_bias: token {key}'s bias must be a number in [-100, 100], got {value!r}",
                             "logit_bias")
        pairs.append((int(key), float(value)))
    return tuple(pairs)


# what a request may ask for that changes its answer, and this server does not do: refused, not ignored
UNSUPPORTED = {
    "tools": "this server does not call tools",
    "functions": "this server does not call functions",
    "suffix": "this server does not insert text before a suffix",
    "audio": "this server answers in text only",
}


def unsupported(body: dict) -> None:
    for name, why in UNSUPPORTED.items():
        if body.get(name):
            raise BadRequest(f"{name}: {why}", name)
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise BadRequest("response_format: this server answers in free text only (type 'text'); it does not "
                         "constrain output to JSON", "response_format")
    best_of = body.get("best_of")
    if best_of is not None and best_of != body.get("n", 1):
        raise BadRequest("best_of: this server returns every choice it draws; ask for n instead", "best_of")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise BadRequest("modalities: this server answers in text only", "modalities")


def check_model(body: dict, served: str) -> None:
    model = body.get("model")
    if model is not None and model != served:
        raise BadRequest(f"model {model!r} is not served here; this server serves {served!r}", "model")


def completion_prompts(body: dict, tokenizer) -> list[list[int]]:
    """prompt: a string, a list of strings, a list of token ids or a list of such lists -> token-id lists."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompt = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise BadRequest("prompt must be a string, a list of strings or a list of token ids", "prompt")
    out = []
    for p in prompt:
        if isinstance(p, str):
            out.append(tokenizer.encode(p))
        elif isinstance(p, list) and all(isinstance(t, int) and 0 <= t < tokenizer.vocab_size for t in p):
            out.append(list(p))
        else:
            raise BadRequest("each prompt must be a string or a list of token ids in the vocabulary", "prompt")
    return out


def max_new(ids: list[int], s: Sampling, context: int, param: str = "prompt") -> int:
    """The new tokens a prompt gets: max_tokens (default: up to the context), at most what the context has left
    (as `llmarch generate` does). A prompt that fills the context leaves no room for one."""
    if not ids:
        raise BadRequest("the prompt is empty (no tokens)", param)
    room = context - len(ids)
    if room < 0 or (room == 0 and s.max_tokens != 0):
        raise BadRequest(f"the prompt has {len(ids)} tokens; this model's context is {context} tokens", param)
    return room if s.max_tokens is None else min(s.max_tokens, room)
