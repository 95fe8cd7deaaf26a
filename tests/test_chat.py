"""Chat templates rendered as transformers' apply_chat_template renders them; conversations cut into prompt and
assistant segments."""
import json

import pytest

from llmarch.data.chat import (DEFAULT_TEMPLATE, ChatTemplate, encode_conversation, load_conversations,
                               template_for)
from llmarch.data.tokenizer import ByteTokenizer, load_tokenizer
from llmarch.errors import LlmarchError

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
          "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}")
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""
TOOLS = ("{%- set ns = namespace(n=0) -%}{%- for m in messages -%}{%- set ns.n = ns.n + 1 -%}"
         "{{ ns.n }}:{{ m | tojson }}\n{%- endfor -%}{%- if add_generation_prompt %}>{% endif -%}")
TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL, "zephyr": ZEPHYR, "namespace": TOOLS,
             "default": DEFAULT_TEMPLATE}
CONVERSATION = [{"role": "user", "content": "What is 2+2? <b>é</b>"}, {"role": "assistant", "content": " 4 "},
                {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]


def hf_tokenizer(template, tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    vocab = {"<s>": 0, "<|endoftext|>": 1, "<unk>": 2}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="<|endoftext|>",
                                              unk_token="<unk>")
    hf.chat_template = template
    hf.save_pretrained(tmp_path)
    return hf


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_renders_as_transformers(name, generation_prompt, tmp_path):
    hf = hf_tokenizer(TEMPLATES[name], tmp_path)
    ours = template_for(load_tokenizer(tmp_path))
    for messages in (CONVERSATION[:1], CONVERSATION[:3], CONVERSATION):
        expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        assert ours.render(messages, add_generation_prompt=generation_prompt) == expected


def test_template_errors_are_one_line(tmp_path):
    hf_tokenizer(MISTRAL, tmp_path)
    ours = template_for(load_tokenizer(tmp_path))
    with pytest.raises(LlmarchError, match="must alternate"):
        ours.render([{"role": "assistant", "content": "hi"}])
    with pytest.raises(LlmarchError, match="does not parse"):
        ChatTemplate("{% for %}")


def test_assistant_segments_and_mask():
    tok = ByteTokenizer()
    template = template_for(tok)
    ids, mask = encode_conversation(tok, template, CONVERSATION)
    assert tok.decode(ids) == template.render(CONVERSATION).replace("<|endoftext|>", "")
    answers = [tok.decode([i for i, m in zip(ids, mask) if m])]
    assert answers == [" 4 \n6\n"]
    assert sum(i == tok.eos_id for i, m in zip(ids, mask) if m) == 2  # each reply ends in end-of-text


def test_segments_of_chatml():
    template = ChatTemplate(CHATML)
    pieces = template.segments(CONVERSATION)
    assert [t for t, a in pieces if a] == [" 4 <|im_end|>\n", "6<|im_end|>\n"]
    assert "".join(t for t, _ in pieces) == template.render(CONVERSATION)


def test_bad_conversations(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(LlmarchError, match="no assistant turn"):
        load_conversations(path)
    path.write_text(json.dumps({"messages": "hi"}) + "\n")
    with pytest.raises(LlmarchError, match="non-empty list"):
        load_conversations(path)


def test_sentencepiece_conversation_tokens_are_transformers(tmp_path):
    """A SentencePiece-style tokenizer (Prepend and Replace to \u2581, as Llama 2's and Mistral's tokenizer.json):
    the conversation's ids are transformers' apply_chat_template(tokenize=True) ids, the prompt the model reads
    at inference is a prefix of them, and the assistant's tokens are its replies. Tokenized segment by segment
    (before), every reply began with an extra \u2581 token."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tk = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    tk.train_from_iterator(["the cat sat on the mat. what is 2+2? and 3+3? 4 6"] * 20, trainers.BpeTrainer(
        vocab_size=160, special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                              unk_token="<unk>")
    hf.chat_template = MISTRAL.replace("{{ message['content'] + eos_token}}", "{{ ' ' + message['content'] + ' ' "
                                       "+ eos_token}}")  # Llama 2's spacing: "[/INST] reply </s>"
    hf.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": hf.eos_token_id}))
    tok = load_tokenizer(tmp_path)
    template = template_for(tok)
    messages = [{"role": "user", "content": "what is 2+2?"}, {"role": "assistant", "content": "the cat"},
                {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]
    ids, mask = encode_conversation(tok, template, messages)
    assert ids == hf.apply_chat_template(messages, tokenize=True, return_dict=False)
    prompt = hf.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True, return_dict=False)
    assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])
    replies = [tk.id_to_token(i) for i, m in zip(ids, mask) if m]
    assert replies == ["\u2581", "t", "h", "e", "\u2581", "c", "a", "t", "\u2581", "</s>", "\u2581", "6", "\u2581",
                       "</s>"]  # " the cat </s>", " 6 </s>": one space token before each reply, not two
