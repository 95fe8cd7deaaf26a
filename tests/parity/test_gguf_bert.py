"""GGUF in and out for BERT, as llama.cpp's convert_hf_to_gguf.py (BertModel) writes it: architecture bert, an
embedding model (attention.causal false, pooling_type where the model pools, the masked-LM head and pooler
dropped), tensors token_embd, position_embd, token_types, token_embd_norm, blk.N.attn_{q,k,v,output} with
biases, attn_output_norm, ffn_up/ffn_down, layer_output_norm; the WordPiece vocabulary as tokenizer.ggml.model
"bert" spelled with a phantom space (`▁word`, `piece` for `##piece`). A tiny random BERT round-trips to equal
hidden states; the vocabulary read back tokenizes as transformers' BertTokenizerFast of the original; llama.cpp
(llama-cpp-python, where installed) tokenizes alike and embeds to llmarch's output (measured within 2.1e-5; by
hand, Q8_0 and Q4_0 files within 2.2e-4 and 2.9e-4 of llmarch on the same file, outputs of scale 1.8)."""
import warnings

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import BPETokenizer, ByteTokenizer
from llmarch.errors import LlmarchError, LlmarchWarning
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer, gguf_tokenizer, write_tokenizer
from llmarch.interop.gguf_writer import to_gguf
from llmarch.models.build import with_head

from conftest import perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

CORPUS = ["The quick brown fox jumps over the lazy dog.", "Hello, world! Héllo café naïve résumé.",
          "Tokenizers split words into pieces: unbelievable, unknowable, jumping, jumped.",
          "Numbers 123 4567 and CAPS LOCK."] * 3
# punctuation, accents, words out of the vocabulary, upper case, a special token, tabs and newlines, CJK
SENTENCES = ["Hello, world!", "Héllo café naïve résumé.", "UNBELIEVABLE xyzzy qqq [MASK] the",
             "jumps\tover  the\nlazy dog's 4567 piece-words (x) 你好 ok", "Ünknöwn Éé"]


def vocabulary(directory, lowercase: bool = True):
    """transformers' BertTokenizerFast of a small WordPiece vocabulary trained on CORPUS (cased or not)."""
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase)
    trainer.train_from_iterator(CORPUS, vocab_size=200, min_frequency=1, show_progress=False)
    directory.mkdir(exist_ok=True)
    trainer.save_model(str(directory))
    return transformers.BertTokenizerFast.from_pretrained(str(directory), do_lower_case=lowercase)


def ours(hf_tokenizer) -> BPETokenizer:
    return BPETokenizer(hf_tokenizer.backend_tokenizer, eos_id=hf_tokenizer.sep_token_id)


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    return vocabulary(tmp_path_factory.mktemp("vocab"))


def tiny(tmp_path, vocab_size: int, arch: str = "BertForMaskedLM", **changes):
    """A random transformers BERT (biases and norm gains perturbed) as llmarch reads it."""
    torch.manual_seed(0)
    config_class = transformers.RobertaConfig if arch.startswith("Roberta") else transformers.BertConfig
    conf = config_class(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=64, **changes)
    hf = getattr(transformers, arch)(conf)
    return perturbed_from_hf(hf, tmp_path / "hf")


def batch(vocab_size: int):
    """Two rows, the second right-padded by 3, with token types 0 and 1."""
    torch.manual_seed(1)
    ids = torch.randint(5, vocab_size, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 9:] = 0
    types = (torch.arange(12) >= 6).long().expand(2, 12)
    return ids, mask, types


def test_bert_round_trips_through_gguf_as_an_embedding_model(hf_tok, tmp_path):
    model = tiny(tmp_path, len(hf_tok))
    path = tmp_path / "bert.gguf"
    with pytest.warns(LlmarchWarning, match="no masked-LM head"):
        to_gguf(model, path, "f32", ours(hf_tok))
    reader = gguf.GGUFReader(str(path))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    assert meta["general.architecture"] == "bert" and meta["bert.attention.causal"] is False
    assert meta["tokenizer.ggml.token_type_count"] == 2 and "bert.pooling_type" not in meta
    assert meta["bert.attention.layer_norm_epsilon"] == pytest.approx(1e-12)
    per_layer = [f"attn_{p}.{w}" for p in ("q", "k", "v", "output", "output_norm") for w in ("weight", "bias")]
    per_layer += [f"{p}.{w}" for p in ("ffn_up", "ffn_down", "layer_output_norm") for w in ("weight", "bias")]
    assert {t.name for t in reader.tensors} == {
        "token_embd.weight", "position_embd.weight", "token_types.weight", "token_embd_norm.weight",
        "token_embd_norm.bias", *(f"blk.{i}.{n}" for i in range(2) for n in per_layer)}  # no MLM head, no pooler
    tokens, vocab = meta["tokenizer.ggml.tokens"], hf_tok.get_vocab()
    assert tokens[vocab["[CLS]"]] == "[CLS]" and tokens[vocab["hello"]] == "\u2581hello"
    assert tokens[vocab["##ed"]] == "ed" and meta["tokenizer.ggml.bos_token_id"] == vocab["[CLS]"]

    back = llmarch.from_gguf(path)
    assert (back.config.head, back.config.pooling, back.config.causal) == ("embed", "none", False)
    ids, mask, types = batch(len(hf_tok))
    with torch.no_grad():
        want = model(ids, attention_mask=mask, token_type_ids=types).hidden_states
        got = back(ids, attention_mask=mask, token_type_ids=types).logits
    assert got.shape == want.shape and (got - want).abs().max() <= 1e-4
    with pytest.raises(LlmarchError, match="cannot generate"):
        llmarch.generate(back, ids[:1], max_new_tokens=2)


@pytest.mark.parametrize("pooling,code", [("cls", 2), ("mean", 1)])
def test_pooling_goes_out_as_pooling_type_and_comes_back(pooling, code, hf_tok, tmp_path):
    """An llmarch embedding model's pooling is the file's pooling_type; mean pools over real tokens only."""
    model = with_head(tiny(tmp_path, len(hf_tok)), "embed", pooling=pooling).eval()
    path = tmp_path / f"{pooling}.gguf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no head dropped: no warning
        to_gguf(model, path, "f32", ours(hf_tok))
    assert gguf.GGUFReader(str(path)).fields["bert.pooling_type"].contents() == code
    back = llmarch.from_gguf(path)
    assert back.config.pooling == pooling
    ids, mask, _ = batch(len(hf_tok))
    with torch.no_grad():
        got = back(ids, attention_mask=mask).logits
        hidden = model(ids, attention_mask=mask).hidden_states
    real = hidden[1, :9].mean(0) if pooling == "mean" else hidden[1, 0]
    assert got.shape == (2, 64) and (got[1] - real).abs().max() <= 1e-4
    # `llmarch embed` pools as the file says unless told otherwise
    from llmarch.cli import main

    (tmp_path / "in.txt").write_text("\n".join(SENTENCES[:2]) + "\n")
    assert main(["embed", "--checkpoint", str(path), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "e.npy")]) == 0
    tok = checkpoint_tokenizer(path)
    with torch.no_grad():
        want = torch.cat([back(torch.tensor([tok.encode(t)])).logits for t in SENTENCES[:2]]).numpy()
    assert np.abs(np.load(tmp_path / "e.npy") - want).max() <= 1e-4


def write_like_llama_cpp(hf, hf_tokenizer, path) -> None:
    """convert_hf_to_gguf.py's BertModel on a transformers BertModel, as far as this one needs: set_gguf_parameters'
    keys, set_vocab's phantom-space vocabulary and gguf.SpecialVocab's ids, the pooler left out."""
    c, vocab = hf.config, hf_tokenizer.get_vocab()
    w = gguf.GGUFWriter(str(path), "bert")
    for key, value in dict(block_count=c.num_hidden_layers, context_length=c.max_position_embeddings,
                           embedding_length=c.hidden_size, feed_forward_length=c.intermediate_size,
                           head_count=c.num_attention_heads, layer_norm_eps=c.layer_norm_eps, causal_attention=False,
                           token_type_count=c.type_vocab_size, tokenizer_model="bert", tokenizer_pre="default",
                           bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"], unk_token_id=vocab["[UNK]"],
                           sep_token_id=vocab["[SEP]"], pad_token_id=vocab["[PAD]"], mask_token_id=vocab["[MASK]"],
                           add_bos_token=True, add_eos_token=True, add_sep_token=True).items():
        getattr(w, f"add_{key}")(value)
    tokens = sorted(vocab, key=vocab.get)
    control = set(hf_tokenizer.all_special_tokens)
    w.add_token_list([t if t in control else t[2:] if t.startswith("##") else "\u2581" + t for t in tokens])
    w.add_token_types([3 if t in control else 1 for t in tokens])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, c.num_hidden_layers)
    for name, t in hf.state_dict().items():
        if not name.startswith("pooler.") and not name.endswith("position_ids"):
            w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_converter_style_file_reads_as_transformers_bert(hf_tok, tmp_path):
    """A file written as llama.cpp's converter writes a transformers BertModel: llmarch's output is the model's
    last_hidden_state, its tokenizer transformers'; llama.cpp embeds it to the same states."""
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=len(hf_tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64), add_pooling_layer=True).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:  # biases and norms away from 0 and 1, so a misplaced one shows
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "conv.gguf"
    write_like_llama_cpp(hf, hf_tok, path)
    model, tok = llmarch.from_gguf(path), checkpoint_tokenizer(path)
    ids, mask, types = batch(len(hf_tok))
    with torch.no_grad():
        want = hf(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = model(ids, attention_mask=mask, token_type_ids=types).logits
    assert (got - want)[mask.bool()].abs().max() <= 1e-4
    assert [tok.encode(t) for t in SENTENCES] == [hf_tok(t)["input_ids"] for t in SENTENCES]
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    lc = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=64, n_threads=1, verbose=False)
    try:
        theirs = np.array(lc.embed(SENTENCES[0], normalize=False))
    finally:
        lc.close()
    with torch.no_grad():
        want = hf(torch.tensor([hf_tok(SENTENCES[0])["input_ids"]])).last_hidden_state[0].numpy()
    assert theirs.shape == want.shape and np.abs(theirs - want).max() <= 1e-4


def test_convert_writes_a_hugging_face_bert_with_its_tokenizer(hf_tok, tmp_path):
    """`llmarch convert --to-gguf` on a transformers BertForMaskedLM directory with its tokenizer: the encoder
    and the WordPiece vocabulary ([SEP] the tokenizer's end of text: BERT's have no eos token)."""
    from llmarch.cli import main

    model = tiny(tmp_path, len(hf_tok))
    hf_tok.save_pretrained(tmp_path / "hf")
    path = tmp_path / "c.gguf"
    assert main(["convert", "--to-gguf", str(tmp_path / "hf"), "--out", str(path), "--gguf-type", "f32"]) == 0
    tok = checkpoint_tokenizer(path)
    assert [tok.encode(t) for t in SENTENCES] == [hf_tok(t)["input_ids"] for t in SENTENCES]
    ids, mask, _ = batch(len(hf_tok))
    with torch.no_grad():
        got = llmarch.from_gguf(path)(ids, attention_mask=mask).logits
        assert (got - model(ids, attention_mask=mask).hidden_states).abs().max() <= 1e-4


def tokenizer_round_trip(tok, path, vocab_size):
    """tok written as a bert vocabulary and read back (gguf_tokenizer), without a model."""
    w = gguf.GGUFWriter(str(path), "bert")
    write_tokenizer(w, tok, vocab_size)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return gguf_tokenizer(gguf.GGUFReader(str(path)), path)


@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_vocabulary_tokenizes_as_transformers_after_gguf(lowercase, hf_tok, tmp_path):
    """Uncased and cased vocabularies (the file has no casing flag: upper-case pieces tell a cased one)."""
    hf = hf_tok if lowercase else vocabulary(tmp_path / "cased", lowercase=False)
    back = tokenizer_round_trip(ours(hf), tmp_path / "t.gguf", len(hf))
    for text in SENTENCES:
        assert back.encode(text) == hf(text)["input_ids"], text
    assert back.decode(back.encode(SENTENCES[1])) == hf.decode(hf(SENTENCES[1])["input_ids"], skip_special_tokens=True)
    assert back.mask_id == hf.mask_token_id and back.eos_id == hf.sep_token_id


def test_wordpiece_whose_casing_the_vocabulary_contradicts_is_refused(tmp_path):
    """A lower-casing tokenizer over a cased vocabulary would read back as a cased one: refused."""
    cased = vocabulary(tmp_path / "cased", lowercase=False)
    cased.backend_tokenizer.normalizer = __import__("tokenizers").normalizers.BertNormalizer(lowercase=True)
    with pytest.raises(LlmarchError, match="no casing flag"):
        tokenizer_round_trip(ours(cased), tmp_path / "t.gguf", len(cased))


def test_llama_cpp_tokenizes_and_embeds_as_llmarch(hf_tok, tmp_path):
    """llama.cpp on the written files (F32, and F16 with positions and token types kept F32, as the converter
    keeps them: llama.cpp's bert cannot add an F16 token-type row): its WPM tokens are the read-back tokenizer's,
    and its embeddings (each token's with pooling none; CLS, mean) are llmarch's on the same file within 1e-4
    (measured: 2.1e-5 F32, 1.1e-5 F16, 2-core CPU)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    base = tiny(tmp_path, len(hf_tok))
    for pooling, dtype in (("none", "f32"), ("cls", "f16"), ("mean", "f16")):
        path = tmp_path / f"{pooling}.gguf"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LlmarchWarning)
            to_gguf(with_head(base, "embed", pooling=pooling).eval(), path, dtype, ours(hf_tok))
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
        assert types["position_embd.weight"] == types["token_types.weight"] == "F32"
        assert types["blk.0.attn_q.weight"] == dtype.upper()
        model, tok = llmarch.from_gguf(path), checkpoint_tokenizer(path)
        lc = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=64, n_threads=1, verbose=False)
        try:
            for text in SENTENCES:
                assert lc.tokenize(text.encode(), add_bos=True, special=True) == tok.encode(text), text
            text = SENTENCES[1]
            theirs = np.array(lc.embed(text, normalize=False))
        finally:
            lc.close()
        with torch.no_grad():
            mine = model(torch.tensor([tok.encode(text)])).logits[0].numpy()
        assert theirs.shape == mine.shape and np.abs(theirs - mine).max() <= 1e-4


def test_what_gguf_bert_cannot_hold_is_refused(hf_tok, tmp_path):
    """A classifier head, a RoBERTa model, a byte vocabulary (GGUF bert with a gpt2 one is how RoBERTa is
    converted), relative positions: one-line errors, and no file."""
    cases = [(tiny(tmp_path / "c", len(hf_tok), "BertForSequenceClassification"), ours(hf_tok), "classify head"),
             (tiny(tmp_path / "r", 300, "RobertaForMaskedLM"), ByteTokenizer(), "this model has 'roberta'"),
             (tiny(tmp_path / "b", 300), ByteTokenizer(), "'gpt2' vocabulary")]
    for model, tok, problem in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LlmarchWarning)
            with pytest.raises(LlmarchError, match=problem):
                to_gguf(model, tmp_path / "x.gguf", "f16", tok)
        assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(LlmarchError, match="position_embedding_type 'relative_key'"):
        tiny(tmp_path / "p", 100, position_embedding_type="relative_key")


@pytest.mark.parametrize("key,value,problem", [("bert.attention.causal", True, "causal true"),
                                               ("bert.pooling_type", 4, "reranker")])
def test_bert_files_llmarch_cannot_read_are_refused(key, value, problem, hf_tok, tmp_path):
    model = with_head(tiny(tmp_path, len(hf_tok)), "embed", pooling="cls")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ours(hf_tok))
    gguf.GGUFReader(str(path), "r+").fields[key].parts[-1][0] = value  # edited in place
    with pytest.raises(LlmarchError, match=problem):
        llmarch.from_gguf(path)


def test_a_bert_with_a_byte_vocabulary_is_refused_naming_no_temporary_file(tmp_path):
    """llmarch's byte tokenizer is written as a 'gpt2' vocabulary, which GGUF bert does not take: refused when the
    file is read back, and the message names the problem, not the file it was found in (convert writes to a
    temporary file first, whose name the message carried)."""
    torch.manual_seed(0)
    model = llmarch.build("bert-tiny", vocab_size=258, n_layers=1, d_model=32, n_heads=2, context_length=32)
    path = tmp_path / ".x.gguf.tmp-abc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LlmarchWarning)
        with pytest.raises(LlmarchError) as e:
            to_gguf(model, path, "f32", ByteTokenizer(mask=True))
    assert "'gpt2' vocabulary" in str(e.value) and ".tmp" not in str(e.value)
    assert not path.exists()
