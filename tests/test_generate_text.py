"""generate_text (generate/text.py): prompts in, text out; streamed pieces are the same text as it arrives."""
import pytest

from llmarch import LlmarchError
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.generate import generate_text

from conftest import tiny


def test_streamed_pieces_are_the_text_generated_after_the_prompt():
    model, tok = tiny(vocab_size=257), ByteTokenizer()
    full = generate_text(model, tok, ["def f"], 12)[0]
    pieces: list[str] = []
    generate_text(model, tok, ["def f"], 12, stream=pieces.append)
    assert full.startswith("def f") and len(full) > len("def f")
    # the streamed text may hold back a final incomplete multi-byte character, nothing else
    assert full[len("def f"):].startswith("".join(pieces)) and "".join(pieces)


def test_a_batch_gives_one_text_per_prompt_and_streams_one_prompt_only():
    model, tok = tiny(vocab_size=257), ByteTokenizer()
    texts = generate_text(model, tok, ["a", "bc"], 4)
    assert [t[:len(p)] for t, p in zip(texts, ["a", "bc"])] == ["a", "bc"]
    with pytest.raises(LlmarchError, match="one prompt"):
        generate_text(model, tok, ["a", "bc"], 4, stream=print)
    with pytest.raises(LlmarchError, match="beam"):
        generate_text(model, tok, ["a"], 4, num_beams=2, stream=print)
