"""Chat templates and conversations. A checkpoint's own template (chat_template.jinja, or tokenizer_config.json's
or chat_template.json's `chat_template`) is rendered with jinja2 in its sandbox, set up as transformers'
apply_chat_template sets it up (ImmutableSandboxedEnvironment, trim_blocks and lstrip_blocks, loop controls,
a tojson that does not escape HTML, raise_exception, strftime_now; the tokenizer's special tokens as
variables), so the same conversation renders to the same text. A tokenizer without a template (llmarch's
own) gets DEFAULT_TEMPLATE.

For training, a conversation is cut into segments by rendering its prefixes: what the template adds for
assistant turn i is render(messages[:i+1]) minus render(messages[:i], add_generation_prompt=True), so the loss
can fall on exactly the tokens the model writes at inference (Ouyang et al. 2022 train on completions only)."""
from __future__ import annotations

import bisect
import json
from datetime import datetime
from pathlib import Path

from ..errors import LlmarchError
from .tokenizer import EOS, ByteTokenizer

# the default for llmarch's own models: role headers, each turn closed by end-of-text, so generation stops there
DEFAULT_TEMPLATE = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token"
                    " + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _environment():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
    return env


class ChatTemplate:
    """A jinja chat template with the special tokens it may name (bos_token, eos_token, ...) as text."""

    def __init__(self, source: str, special: dict[str, str] | None = None):
        import jinja2

        self.source, self.special = source, dict(special or {})
        try:
            self.template = _environment().from_string(source)
        except jinja2.exceptions.TemplateError as e:
            raise LlmarchError(f"the chat template does not parse: {e}") from None

    def render(self, messages: list[dict], add_generation_prompt: bool = False, **extra) -> str:
        import jinja2

        try:
            return self.template.render(messages=messages, tools=None, documents=None,
                                        add_generation_prompt=add_generation_prompt, **self.special, **extra)
        except jinja2.exceptions.TemplateError as e:
            raise LlmarchError(f"the chat template fails to render: {e}") from None

    def segments(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered conversation as (text, written by the assistant) pieces, in order."""
        out, done = [], ""
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], add_generation_prompt=True)
            full = self.render(messages[:i + 1])
            if not (prompt.startswith(done) and full.startswith(prompt)):
                raise LlmarchError("the chat template renders a conversation's earlier turns differently once later "
                                   "ones follow, so assistant turns cannot be told apart from it")
            out += [(prompt[len(done):], False), (full[len(prompt):], True)]
            done = full
        rest = self.render(messages)
        if not rest.startswith(done):
            raise LlmarchError("the chat template renders a conversation's turns differently once later ones follow")
        out.append((rest[len(done):], False))
        return [(text, assistant) for text, assistant in out if text]


def _special_text(value) -> str | None:
    """A special token in tokenizer_config.json: a string or an AddedToken dict ({"content": ...})."""
    return value.get("content") if isinstance(value, dict) else value


def template_for(tok) -> ChatTemplate:
    """The tokenizer's checkpoint's own template with its special tokens, else DEFAULT_TEMPLATE with <|endoftext|>."""
    files = getattr(tok, "side_files", {})
    config = json.loads(files["tokenizer_config.json"]) if "tokenizer_config.json" in files else {}
    special = {name: _special_text(config[name]) for name in SPECIAL_NAMES if config.get(name) is not None}
    source = None
    if "chat_template.jinja" in files:
        source = files["chat_template.jinja"].decode()
    elif "chat_template.json" in files:
        source = json.loads(files["chat_template.json"]).get("chat_template")
    else:
        source = config.get("chat_template")
    if isinstance(source, list):  # named templates: [{"name": "default", "template": ...}, ...]
        source = next((t["template"] for t in source if t.get("name") == "default"), None)
    if source is None:
        eos = special.get("eos_token") or (tok.token_text(tok.eos_id) if not isinstance(tok, ByteTokenizer) else EOS)
        return ChatTemplate(DEFAULT_TEMPLATE, {**special, "eos_token": eos})
    return ChatTemplate(source, special)


def encode_text(tok, text: str) -> list[int]:
    """Token ids of rendered chat text, its special tokens' text as their ids: as transformers tokenizes a
    rendered chat (no BOS/EOS added around it; the template writes its own)."""
    if isinstance(tok, ByteTokenizer):
        pieces = text.split(EOS)
        ids = []
        for i, piece in enumerate(pieces):
            ids += tok.encode(piece) + ([tok.eos_id] if i < len(pieces) - 1 else [])
        return ids
    return [i for i, _ in tok.encode_offsets(text)]


def encode_conversation(tok, template: ChatTemplate, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """(token ids, whether each is the assistant's): the rendered conversation tokenized whole, as transformers'
    apply_chat_template(tokenize=True) tokenizes it and as the model reads it, each token the assistant's where
    its first character lies in an assistant segment (ChatTemplate.segments). Segments tokenized apart are not
    those tokens: a SentencePiece tokenizer prepends its "\u2581" to every piece, so Llama 2's "[/INST] The"
    trained the reply on an extra space token."""
    segments = template.segments(messages)
    if isinstance(tok, ByteTokenizer):  # a token per byte (and EOS per its text): apart or whole, the same ids
        ids, mask = [], []
        for text, assistant in segments:
            piece = encode_text(tok, text)
            ids += piece
            mask += [assistant] * len(piece)
        return ids, mask
    ends, owners, at = [], [], 0  # each segment's end (characters) and whether the assistant wrote it
    for text, assistant in segments:
        at += len(text)
        ends.append(at)
        owners.append(assistant)
    text = "".join(text for text, _ in segments)
    pairs = tok.encode_offsets(text)  # (id, its first character), nothing added around the text
    return [i for i, _ in pairs], [owners[min(bisect.bisect_right(ends, start), len(ends) - 1)] for _, start in pairs]


def check_messages(messages, where: str) -> list[dict]:
    """A conversation: a list of {role, content} with string content and at least one assistant turn."""
    if not isinstance(messages, list) or not messages:
        raise LlmarchError(f"{where}: 'messages' must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise LlmarchError(f"{where}: every message needs a string 'role' and 'content'")
    if not any(m["role"] == "assistant" for m in messages):
        raise LlmarchError(f"{where}: the conversation has no assistant turn")
    return messages


def load_conversations(path: str | Path) -> list[list[dict]]:
    """A .jsonl of {"messages": [{"role": ..., "content": ...}, ...]}, one conversation a line."""
    from .corpus import jsonl_records

    path = Path(path)
    if not path.is_file():
        raise LlmarchError(f"{path} is not a file")
    return [check_messages(row.get("messages"), f"{path}:{n}") for n, row in jsonl_records(path)]
