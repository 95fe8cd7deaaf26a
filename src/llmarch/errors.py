"""The one exception type users see: its message is printed by the CLI as a single line."""


class LlmarchError(Exception):
    """Bad input (config, checkpoint, data, prompt) described in one line."""


def first_and_count(names: list[str]) -> str:
    """'a' or 'a (+3 more)': one name for a one-line error, and how many others there are."""
    return names[0] + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")


def warn(message: str) -> None:
    """A one-line warning on stderr, where going on is right but the user should know (a damaged cache rebuilt)."""
    import sys

    print(f"llmarch: warning: {message}", file=sys.stderr, flush=True)
