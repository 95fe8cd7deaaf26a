"""Chat messages -> prompt text with the checkpoint's chat template: the Jinja template a Hugging Face tokenizer
comes with (chat_template.jinja, or tokenizer_config.json's `chat_template`), rendered in jinja2's immutable
sandbox (a template is data from the checkpoint: it may not touch Python objects), with the variables
transformers gives it (messages, add_generation_prompt, bos_token, eos_token, raise_exception, strftime_now).
llmarch's own models, trained on plain text, get a plain transcript (DEFAULT_TEMPLATE)."""
from __future__ import annotations

import json
from datetime import datetime

from ..errors import LlmarchError

DEFAULT_TEMPLATE = ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}assistant:{% endif %}")
ROLES = ("system", "developer", "user", "assistant", "tool")


def template_source(tokenizer) -> tuple[str, dict]:
    """(the template text, the special tokens it may name) of a tokenizer; the default for one without."""
    files = getattr(tokenizer, "side_files", {})
    config = json.loads(files["tokenizer_config.json"]) if "tokenizer_config.json" in files else {}
    template = files["chat_template.jinja"].decode() if "chat_template.jinja" in files else None
    if template is None and "chat_template.json" in files:
        template = json.loads(files["chat_template.json"]).get("chat_template")
    template = template or config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        template = next((t["template"] for t in template if t.get("name") == "default"), template[0]["template"])
    tokens = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token")}
    return template or DEFAULT_TEMPLATE, tokens


def _token_text(value) -> str:
    return value.get("content", "") if isinstance(value, dict) else value or ""


class ChatTemplate:
    def __init__(self, tokenizer):
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        source, self.tokens = template_source(tokenizer)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt))
        try:
            self.template = env.from_string(source)
        except TemplateError as e:
            raise LlmarchError(f"the checkpoint's chat template does not parse: {e}") from None
        self.is_default = source == DEFAULT_TEMPLATE

    def render(self, messages: list[dict], add_generation_prompt: bool = True,
               media: tuple[str, ...] = ("image",)) -> str:
        """media: the kinds of non-text parts the caller has made (check_messages)."""
        from jinja2.exceptions import TemplateError

        messages = check_messages(messages, media)
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        **self.tokens)
        except TemplateError as e:
            raise LlmarchError(f"the chat template refuses these messages: {e}") from None


def check_messages(messages, media: tuple[str, ...] = ("image",)) -> list[dict]:
    """OpenAI chat messages ({"role", "content"}: a string, or a list of {"type": "text", "text"} parts) ->
    plain {"role", "content"} dicts; LlmarchError naming what is wrong. Content with {"type": "image"} parts
    (images.py makes them of image_url parts) stays a list of parts, as transformers gives it to the template; so
    does {"type": "audio"} and {"type": "video"} where `media` names them (media.py's KINDS: `llmarch chat`'s and
    the server's clips and videos)."""
    if not isinstance(messages, list) or not messages:
        raise LlmarchError("messages must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise LlmarchError(f"messages[{i}] needs a role, one of {', '.join(ROLES)}")
        content = m.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and (p.get("type") == "text" and isinstance(p.get("text"), str)
                                                or p.get("type") in media) for p in content):
                raise LlmarchError(f"messages[{i}].content parts must be text, image_url, video_url or input_audio "
                                   "parts")
            if all(p["type"] == "text" for p in content):
                content = "".join(p["text"] for p in content)
        elif not isinstance(content, str):
            raise LlmarchError(f"messages[{i}].content must be a string or a list of text parts")
        out.append({**m, "content": content})
    return out


def _raise(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)
