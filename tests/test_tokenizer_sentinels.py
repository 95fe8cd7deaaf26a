"""Sentinel tokens (T5's <extra_id_k>) in the byte and BPE tokenizers: ids, names, save/load, fingerprints,
decoding; no change without them."""
import pytest

from llmarch import LlmarchError
from llmarch.data import ByteTokenizer, load_tokenizer, train_bpe
from llmarch.data.corpus import Document
from llmarch.data.dataset import tokenizer_for

TEXTS = [f"def f{i}(x):\n    return x * {i}  # note {i % 7}\n" for i in range(300)]


def test_byte_sentinels_follow_eos_and_mask(tmp_path):
    plain = ByteTokenizer()
    assert plain.sentinel_ids == [] and plain.vocab_size == 257 and plain.fingerprint() == "byte"
    tok = ByteTokenizer(sentinels=3)
    assert tok.sentinel_ids == [257, 258, 259] and tok.vocab_size == 260 and tok.mask_id is None
    both = ByteTokenizer(mask=True, sentinels=2)
    assert both.mask_id == 257 and both.sentinel_ids == [258, 259] and both.vocab_size == 260
    assert [both.token_text(i) for i in (65, 256, 257, 259)] == ["A", "<|endoftext|>", "<|mask|>", "<extra_id_1>"]
    assert both.decode([72, 259, 105, 257, 256]) == "Hi"  # special tokens are dropped, as the mask always was
    assert len({t.fingerprint() for t in (plain, tok, both, ByteTokenizer(mask=True))}) == 4
    both.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert (again.mask_id, again.sentinel_ids, again.fingerprint()) == (257, [258, 259], both.fingerprint())
    with pytest.raises(LlmarchError, match="sentinels must be >= 0"):
        ByteTokenizer(sentinels=-1)


def test_bpe_sentinels_are_named_special_tokens_found_on_load(tmp_path):
    plain = train_bpe(TEXTS, vocab_size=300)
    tok = train_bpe(TEXTS, vocab_size=300, mask=True, sentinels=4)
    assert plain.sentinel_ids == [] and len(set(tok.sentinel_ids)) == 4
    assert not {tok.eos_id, tok.mask_id} & set(tok.sentinel_ids)
    assert [tok.token_text(i) for i in tok.sentinel_ids] == [f"<extra_id_{k}>" for k in range(4)]
    ids = tok.encode("x = 1<extra_id_2> + 2")
    assert tok.sentinel_ids[2] in ids and tok.decode(ids) == "x = 1 + 2"
    assert tok.fingerprint() != plain.fingerprint()
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert (again.sentinel_ids, again.mask_id, again.fingerprint()) == (tok.sentinel_ids, tok.mask_id,
                                                                      tok.fingerprint())
    with pytest.raises(LlmarchError, match="more than 267 entries"):
        train_bpe(TEXTS, vocab_size=260, sentinels=10)


def test_tokenizer_for_passes_sentinels_and_caches_them_apart():
    docs = [Document(f"d{i}", t) for i, t in enumerate(TEXTS)]
    assert tokenizer_for(docs, "byte", 0, sentinels=2).sentinel_ids == [257, 258]
    assert tokenizer_for(docs, "bpe", 300).sentinel_ids == []
    assert len(tokenizer_for(docs, "bpe", 300, sentinels=3).sentinel_ids) == 3
