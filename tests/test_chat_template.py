"""Chat templates (serve/chat_template.py): a Hugging Face tokenizer's Jinja template rendered as transformers
renders it, in a sandbox; the plain default for llmarch's own models; malformed messages named."""
import json

import pytest

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.serve.chat_template import ChatTemplate

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


class WithFiles(ByteTokenizer):
    def __init__(self, files):
        super().__init__()
        self.side_files = {k: v.encode() for k, v in files.items()}


def test_hf_template_from_tokenizer_config():
    tok = WithFiles({"tokenizer_config.json": json.dumps({"chat_template": CHATML, "eos_token": "<|im_end|>"})})
    text = ChatTemplate(tok).render([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_template_file_wins_and_variables():
    source = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}"
    tok = WithFiles({"chat_template.jinja": source, "tokenizer_config.json": json.dumps(
        {"chat_template": CHATML, "bos_token": {"content": "<s>"}, "eos_token": "</s>"})})
    assert ChatTemplate(tok).render([{"role": "user", "content": "a"}]) == "<s>[user]a</s>"


def test_default_template():
    assert ChatTemplate(ByteTokenizer()).render([{"role": "system", "content": "s"},
                                                 {"role": "user", "content": "u"}]) == "system: s\nuser: u\nassistant:"


def test_sandbox_and_raise_exception():
    sneaky = WithFiles({"chat_template.jinja": "{{ messages.__class__.__mro__ }}"})
    with pytest.raises(LlmarchError, match="refuses"):
        ChatTemplate(sneaky).render([{"role": "user", "content": "a"}])
    strict = WithFiles({"chat_template.jinja": "{{ raise_exception('only user turns') }}"})
    with pytest.raises(LlmarchError, match="only user turns"):
        ChatTemplate(strict).render([{"role": "user", "content": "a"}])


@pytest.mark.parametrize("messages, match", [([], "non-empty"), ([{"role": "robot", "content": "a"}], "role"),
                                             ([{"role": "user"}], "content")])
def test_malformed_messages(messages, match):
    with pytest.raises(LlmarchError, match=match):
        ChatTemplate(ByteTokenizer()).render(messages)
