"""The one exception type users see: its message is printed by the CLI as a single line."""


class LlmarchError(Exception):
    """Bad input (config, checkpoint, data, prompt) described in one line."""
