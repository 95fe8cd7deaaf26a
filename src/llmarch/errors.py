"""What users see: LlmarchError, bad input described in one line (the CLI prints it and exits 2), and
LlmarchWarning, a one-line note where going on is right but the result is not quite what was asked for (the
CLI prints it as `llmarch <command>: warning: ...`; a library caller gets an ordinary Python warning)."""
import warnings


class LlmarchError(Exception):
    """Bad input (config, checkpoint, data, prompt) described in one line."""


class LlmarchWarning(UserWarning):
    """Input that was used, with a change or an assumption the user should know of, described in one line."""


def warn(message: str) -> None:
    warnings.warn(message, LlmarchWarning, stacklevel=3)


def first_and_count(names: list[str]) -> str:
    """'a' or 'a (+3 more)': one name for a one-line error, and how many others there are."""
    return names[0] + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")


def check_fields(config, positive: tuple[str, ...] = (), nonnegative: tuple[str, ...] = (),
                 below_one: tuple[str, ...] = ()) -> None:
    """A config dataclass' numbers in range, each error one line naming the field and its value: every float
    finite, every int below 2**63 in size, `positive` > 0, `nonnegative` >= 0 and `below_one` in [0, 1) (a None
    is left to its default)."""
    import dataclasses
    import math

    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise LlmarchError(f"{f.name} must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) >= 2**63:  # past a C long: torch and numpy overflow
            raise LlmarchError(f"{f.name} is out of range, got {value}")
    for names, ok, want in ((positive, lambda v: v > 0, "positive"), (nonnegative, lambda v: v >= 0, ">= 0"),
                            (below_one, lambda v: 0 <= v < 1, "in [0, 1)")):
        for name in names:
            value = getattr(config, name)
            if value is not None and not ok(value):
                raise LlmarchError(f"{name} must be {want}, got {value}")
