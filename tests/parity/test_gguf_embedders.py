"""GGUF embedding models of gguf_archs/embedders.py (jina-bert-v2, nomic-bert-moe, neo-bert), checked against
llama.cpp (llama-cpp-python, where installed): a tiny random llmarch model of each (1-D parameters perturbed) written
as F32 with mean pooling and its vocabulary (WordPiece; XLM-R's kind of SentencePiece unigram for nomic-bert-moe),
read back to the same pooled embeddings on a right-padded batch, tokenized by llama.cpp as by llmarch (accents,
punctuation, words out of the vocabulary) and embedded by llama.cpp to llmarch's pooled, normalised embeddings of
two texts of different lengths (llmarch pads the shorter) within 1e-5 (measured: 6e-8, 4.4e-7, 6e-8); `llmarch embed
--checkpoint FILE.gguf` writes the same. No transformers reference exists for these models (remote code only):
llama.cpp is the reference. Broken on purpose, the gaps were 2.9e-4 (jina: ALiBi one-sided), 7.9e-4 (nomic: top-k
weights renormalised) and 1.4e-3 (neo: q and k rows not reordered from adjacent RoPE pairs)."""
import json

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import HF_TOKEN_IDS, BPETokenizer
from llmarch.embed import embed
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.interop.gguf_writer import to_gguf
from llmarch.interop.hf import hf_model_config
from llmarch.models.build import with_head

from conftest import perturbed
from test_gguf_bert import CORPUS, ours, vocabulary
from test_gguf_older import rewrite

gguf = pytest.importorskip("gguf")

TEXTS = ["Hello, world! Héllo café naïve résumé.", "The quick brown fox jumps over the lazy dog's 4567 words."]
STRINGS = ["Hello, world!", "Héllo café naïve résumé.", "UNBELIEVABLE xyzzy (x) piece-words; ok?", "Ünknöwn Éé"]
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             max_position_embeddings=128)
ROPE = {"rope_type": "default", "rope_theta": 500.0}
CASES = {  # GGUF architecture -> (llmarch's config.json-like fields of its family, its vocabulary's fixture)
    "jina-bert-v2": (dict(model_type="jina_bert_v2", type_vocab_size=2, **SMALL), "wordpiece"),
    "nomic-bert-moe": (dict(model_type="nomic_bert_moe", type_vocab_size=1, num_experts=4, moe_top_k=2,
                            moe_every_n_layers=2, pad_token_id=1, rope_parameters=ROPE, **SMALL), "unigram"),
    "neo-bert": (dict(model_type="neobert", norm_eps=1e-5, rope_theta=500.0, max_length=128,
                      **{**SMALL, "intermediate_size": 144}), "wordpiece"),
}


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    return ours(vocabulary(tmp_path_factory.mktemp("vocab")))


@pytest.fixture(scope="module")
def unigram():
    """XLM-R's kind of vocabulary: a SentencePiece unigram model (<s> <pad> </s> <unk> first, ▁ for spaces) whose
    texts go as <s> A </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tk.train_from_iterator([t + " " for t in CORPUS + TEXTS for _ in range(3)], trainer)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    ids = {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    return BPETokenizer(tk, eos_id=2, side_files={HF_TOKEN_IDS: json.dumps(ids).encode()})


@pytest.fixture(scope="module", params=sorted(CASES))
def written(request, tmp_path_factory):
    """(arch, llmarch's model with mean pooling, the F32 file written from it, the tokenizer written with it)."""
    arch = request.param
    fields, vocabulary_kind = CASES[arch]
    tok = request.getfixturevalue(vocabulary_kind)
    torch.manual_seed(0)
    cfg = hf_model_config({**fields, "vocab_size": tok.vocab_size})
    model = perturbed(with_head(llmarch.build(cfg), "embed", pooling="mean"))
    path = tmp_path_factory.mktemp(arch) / "m.gguf"
    to_gguf(model, path, "f32", tok)
    return arch, model, path, tok


def llama_cpp(path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    return llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=128, n_batch=128, n_threads=1, verbose=False)


def test_read_back_tokenize_and_embed_as_llama_cpp(written, tmp_path):
    arch, model, path, tok = written
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == arch
    back = llmarch.from_gguf(path)
    assert (back.config.head, back.config.pooling, back.config.causal) == ("embed", "mean", False)
    torch.manual_seed(1)
    ids = torch.randint(5, tok.vocab_size, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    with torch.no_grad():
        assert (back(ids, attention_mask=mask).logits - model(ids, attention_mask=mask).logits).abs().max() <= 1e-5
    file_tok = checkpoint_tokenizer(path)
    mine = embed(back, file_tok, TEXTS, normalize=True)
    lc = llama_cpp(path)
    try:
        for s in STRINGS:
            assert lc.tokenize(s.encode(), add_bos=True, special=True) == file_tok.encode(s) == tok.encode(s), s
        theirs = np.array(lc.embed(TEXTS, normalize=True))
    finally:
        lc.close()
    assert len(file_tok.encode(TEXTS[0])) != len(file_tok.encode(TEXTS[1]))  # the batch is padded
    assert theirs.shape == mine.shape == (2, 64)
    assert np.abs(theirs - mine).max() <= 1e-5, (arch, np.abs(theirs - mine).max())
    from llmarch.cli import main

    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["embed", "--checkpoint", str(path), "--input", str(tmp_path / "in.txt"), "--normalize",
                 "--out", str(tmp_path / "e.npy")]) == 0
    assert np.abs(np.load(tmp_path / "e.npy") - mine).max() <= 1e-5


@pytest.mark.parametrize("written", ["jina-bert-v2"], indirect=True)
@pytest.mark.parametrize("name", ["attn_q_norm", "attn_norm_2", "ffn_gate"])
def test_jina_bert_v2_variants_llmarch_cannot_hold_are_refused(name, written, tmp_path):
    """jina-embeddings-v2's q/k-norm and -code layouts and an older converter's split gate: one line each."""
    arch, _, path, _ = written
    d = 64 if name != "ffn_gate" else 96
    rewrite(path, tmp_path / "v.gguf", arch, lambda t: {**t, f"blk.0.{name}.weight": np.ones(d, np.float32)})
    with pytest.raises(LlmarchError, match=f"jina-bert-v2 file with .*{name}.* is not supported"):
        llmarch.from_gguf(tmp_path / "v.gguf")


@pytest.mark.parametrize("written", ["neo-bert"], indirect=True)
def test_neo_bert_classifier_is_refused(written, tmp_path):
    """NeoBERTForSequenceClassification's file (cls, cls_out: a reranker's head) in one line."""
    arch, _, path, _ = written
    rewrite(path, tmp_path / "c.gguf", arch, lambda t: {**t, "cls.weight": np.ones((64, 64), np.float32)})
    with pytest.raises(LlmarchError, match="cls.weight has no place in a neo-bert model"):
        llmarch.from_gguf(tmp_path / "c.gguf")


def test_llmarch_tables_round_trip_through_their_hf_layout(written, tmp_path):
    """to_hf writes each family's masked LM in the layout its table gives (the converter's input), from_hf reads it
    back to the same model; nomic-bert-moe's stacked expert rows (E * I, d) both ways. The original's bias after the
    experts, which llama.cpp drops, has no place in nomic_bert_moe's table: such a checkpoint is refused."""
    from safetensors.torch import load_file, save_file

    arch, embedder, _, _ = written
    torch.manual_seed(0)
    model = perturbed(llmarch.build(embedder.config.replace(head="lm", head_transform=arch != "neo-bert",
                                                            head_bias=True, tie_embeddings=arch != "neo-bert")))
    llmarch.to_hf(model, tmp_path / "hf")
    back = llmarch.from_hf(tmp_path / "hf")
    ids = torch.randint(5, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-6
    if arch == "nomic-bert-moe":
        stored = load_file(tmp_path / "hf" / "model.safetensors")
        assert stored["nomic_bert.encoder.layers.1.mlp.experts.mlp.w1"].shape == (4 * 96, 64)
        save_file({**stored, "nomic_bert.encoder.layers.1.mlp.experts.bias": torch.zeros(64)},
                  str(tmp_path / "hf" / "model.safetensors"))
        with pytest.raises(LlmarchError, match="experts.bias"):
            llmarch.from_hf(tmp_path / "hf")


def _as_published(arch: str, hf: dict) -> dict:
    """config.json as the published checkpoints of the family have it: JinaBERT-v2 names model_type `bert`;
    nomic-embed-text-v2-moe names `nomic_bert` with the original code's GPT-2 names."""
    if arch == "jina-bert-v2":
        return {**hf, "model_type": "bert"}
    renamed = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
               "intermediate_size": "n_inner", "layer_norm_eps": "layer_norm_epsilon", "hidden_act":
               "activation_function", "max_position_embeddings": "n_positions"}
    out = {renamed.get(k, k): v for k, v in hf.items() if k != "rope_parameters"}
    return {**out, "model_type": "nomic_bert", "rotary_emb_base": hf["rope_parameters"]["rope_theta"],
            "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False}


def test_published_configs_reach_their_tables(written, tmp_path):
    """A JinaBERT-v2 config.json says model_type `bert` (with ALiBi, which transformers' BERT has not), a
    NomicBERT-MoE one `nomic_bert` (with experts, and GPT-2's field names): from_hf reads each with its own table,
    to the same logits; without the tell-tale field the model_type is read as itself."""
    arch = written[0]
    if arch == "neo-bert":
        pytest.skip("NeoBERT's config names model_type neobert, its own")
    torch.manual_seed(0)
    model = perturbed(llmarch.build(written[1].config.replace(head="lm", head_transform=True, head_bias=True)))
    llmarch.to_hf(model, tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_as_published(arch, json.loads(config.read_text()))))
    back = llmarch.from_hf(tmp_path)
    assert back.config.hf_model_type == model.config.hf_model_type
    ids = torch.randint(5, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-6
    if arch == "nomic-bert-moe":
        hf = json.loads(config.read_text())
        config.write_text(json.dumps({**hf, "rotary_emb_fraction": 0.5}))
        with pytest.raises(LlmarchError, match="fraction 0.5"):
            llmarch.from_hf(tmp_path)
        config.write_text(json.dumps({k: v for k, v in hf.items() if k != "moe_every_n_layers"}))
    else:
        config.write_text(json.dumps({**json.loads(config.read_text()), "position_embedding_type": "absolute"}))
    with pytest.raises(LlmarchError):  # read as transformers' BERT / NomicBERT, whose tables these names miss
        llmarch.from_hf(tmp_path)
