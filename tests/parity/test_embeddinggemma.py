"""EmbeddingGemma (Vera et al. 2025): a gemma3_text Gemma3TextModel with use_bidirectional_attention, in a
sentence-transformers folder (mean Pooling, two Dense projections without bias or activation, Normalize). Checked
against transformers' hidden states (its bidirectional full and sliding layers) on padded batches, against its hidden
states mean-pooled and projected by the Dense weights by hand (sentence-transformers is not installed), through
to_hf and back, and as a GGUF gemma-embedding file against llama.cpp's embeddings."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file

import llmarch
from llmarch import from_hf, to_hf
from llmarch.data.batching import encode
from llmarch.data.tokenizer import ByteTokenizer, load_tokenizer
from llmarch.errors import LlmarchError, LlmarchWarning
from llmarch.interop.gguf_writer import to_gguf
from llmarch.layers import ffn
from conftest import llama_cpp_embedding, perturbed

# a sliding window of 6 in config.json: each sliding layer's query sees 3 keys either side (|i - j| < 6 // 2 + 1)
# six layers: five sliding, then one full (EmbeddingGemma's pattern, the one llama.cpp assumes)
SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=6,
             max_position_embeddings=128, use_bidirectional_attention=True, pad_token_id=0)
DENSE = (96, 64)  # EmbeddingGemma's 768 -> 3072 -> 768, shrunk
ST = "sentence_transformers.models."


def _sentence_folder(folder, hf, dense: tuple = DENSE, bias: bool = False):
    """hf saved with the modules EmbeddingGemma's folder lists: mean Pooling, Dense projections, Normalize.
    Returns the Dense weights (and biases), drawn at random."""
    hf.save_pretrained(folder)
    modules = [dict(idx=0, name="0", path="", type=ST + "Transformer"),
               dict(idx=1, name="1", path="1_Pooling", type=ST + "Pooling")]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 64, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    weights, width = [], 64
    for k, out in enumerate(dense):
        sub = folder / f"{k + 2}_Dense"
        sub.mkdir()
        (sub / "config.json").write_text(json.dumps(dict(
            in_features=width, out_features=out, bias=bias, activation_function="torch.nn.modules.linear.Identity")))
        w = {"linear.weight": torch.randn(out, width) / width ** 0.5}
        if bias:
            w["linear.bias"] = torch.randn(out) * 0.1
        save_file(w, str(sub / "model.safetensors"))
        weights.append(w)
        modules.append(dict(idx=k + 2, name=str(k + 2), path=sub.name, type=ST + "Dense"))
        width = out
    modules.append(dict(idx=len(modules), name=str(len(modules)), path=f"{len(modules)}_Normalize",
                        type=ST + "Normalize"))
    (folder / "modules.json").write_text(json.dumps(modules))
    return weights


def _by_hand(hf, ids, mask, weights) -> torch.Tensor:
    """sentence-transformers' EmbeddingGemma: transformers' hidden states, mean over real tokens, the Dense
    projections, unit length."""
    with torch.no_grad():
        h = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        v = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        for w in weights:
            v = v @ w["linear.weight"].T + w.get("linear.bias", 0)
    return torch.nn.functional.normalize(v, dim=-1)


def _batch(left: bool):
    torch.manual_seed(1)
    ids = torch.randint(1, 300, (2, 14))
    mask = torch.ones_like(ids)
    if left:
        mask[1, :5] = 0
    else:
        mask[1, 9:] = 0
    return ids, mask


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers' Gemma3TextModel, its folder with the sentence-transformers modules, their Dense weights,
    llmarch's model read from it)."""
    torch.manual_seed(0)
    hf = perturbed(transformers.Gemma3TextModel(transformers.Gemma3TextConfig(**SMALL)))
    folder = tmp_path_factory.mktemp("embgemma") / "hf"
    weights = _sentence_folder(folder, hf)
    return hf, folder, weights, from_hf(folder)


@pytest.mark.parametrize("left", [False, True])
def test_hidden_states_and_sentence_embeddings_equal_transformers(pair, left):
    hf, _, weights, ours = pair
    cfg = ours.config
    assert (cfg.head, cfg.pooling, cfg.causal, cfg.embed_dense, cfg.embed_normalize) == (
        "embed", "mean", False, list(DENSE), True)
    assert cfg.for_layer(4).sliding_window == 4 and cfg.for_layer(5).attention == "full"
    ids, mask = _batch(left)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        out = ours(ids, attention_mask=mask)
    assert (out.hidden_states - theirs)[mask.bool()].abs().max().item() <= 1e-4
    assert out.logits.shape == (2, DENSE[-1])
    assert (out.logits - _by_hand(hf, ids, mask, weights)).abs().max().item() <= 1e-5


def test_to_hf_keeps_the_modules_and_transformers_reads_it_back(pair, tmp_path):
    hf, _, weights, ours = pair
    to_hf(ours, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["use_bidirectional_attention"] is True and written["sliding_window"] == 6
    assert written["architectures"] == ["Gemma3TextModel"]
    theirs = transformers.Gemma3TextModel.from_pretrained(tmp_path / "out").eval()
    assert theirs.config.sliding_window == 4
    back = from_hf(tmp_path / "out")
    assert back.config == ours.config
    ids, mask = _batch(True)
    with torch.no_grad():
        assert (back(ids, attention_mask=mask).logits - ours(ids, attention_mask=mask).logits).abs().max() == 0
    assert (_by_hand(theirs, ids, mask, weights) - _by_hand(hf, ids, mask, weights)).abs().max() <= 1e-5


def test_dense_biases_read(tmp_path):
    torch.manual_seed(0)
    hf = perturbed(transformers.Gemma3TextModel(transformers.Gemma3TextConfig(**SMALL)))
    weights = _sentence_folder(tmp_path, hf, dense=(48,), bias=True)
    ours = from_hf(tmp_path)
    ids, mask = _batch(False)
    with torch.no_grad():
        assert (ours(ids, attention_mask=mask).logits - _by_hand(hf, ids, mask, weights)).abs().max() <= 1e-5


def test_a_dense_module_without_safetensors_is_refused(pair, tmp_path):
    hf = pair[0]
    _sentence_folder(tmp_path, hf)
    (tmp_path / "2_Dense" / "model.safetensors").unlink()
    with pytest.raises(LlmarchError, match="no model.safetensors"):
        from_hf(tmp_path)


def test_llmarch_embed_gives_the_sentence_embeddings(pair, tmp_path):
    """`llmarch embed` on the written folder (with a tokenizer) pools, projects and normalizes as the folder says."""
    from llmarch.cli import main

    hf, _, weights, ours = pair
    tok = ByteTokenizer()
    to_hf(ours, tmp_path / "out", tokenizer_from=tok)
    texts = ["a short one", "a somewhat longer text, padded on the right"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    assert main(["embed", "--checkpoint", str(tmp_path / "out"), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "e.npy")]) == 0
    seqs = encode(load_tokenizer(tmp_path / "out"), texts, 128)  # each with its first token, as the CLI's
    want = torch.cat([_by_hand(hf, torch.tensor([s]), torch.ones(1, len(s)), weights) for s in seqs])
    got = np.load(tmp_path / "e.npy")
    assert got.shape == (2, DENSE[-1]) and np.abs(got - want.numpy()).max() <= 1e-5
    with pytest.raises(LlmarchError, match="Dense projections follow its own mean pooling"):
        llmarch.embed.embed(ours, tok, texts, pooling="cls")


def test_the_checkpoints_prompts_go_before_each_text(pair, tmp_path):
    """config_sentence_transformers.json's prompts (EmbeddingGemma's task prefixes) travel with the tokenizer:
    `--prompt-name` puts the named one before each text, its default prompt goes there unasked, `--prompt` puts any
    text; an unknown name, or both options, are one-line errors that write nothing."""
    from llmarch.cli import main

    hf, _, weights, ours = pair
    to_hf(ours, tmp_path / "hf", tokenizer_from=ByteTokenizer())
    named = {"query": "task: search result | query: ", "document": "title: none | text: "}
    (tmp_path / "hf" / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": named, "default_prompt_name": "document"}))
    convert = main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "out")])
    assert convert == 0 and (tmp_path / "out" / "config_sentence_transformers.json").is_file()  # it travelled
    text = "a short one"
    (tmp_path / "in.txt").write_text(text + "\n")
    tok = load_tokenizer(tmp_path / "out")

    def by_hand(prefix):
        seq = encode(tok, [prefix + text], 128)[0]
        return _by_hand(hf, torch.tensor([seq]), torch.ones(1, len(seq)), weights).numpy()

    def cli(*extra):
        out = tmp_path / f"e{len(list(tmp_path.glob('e*.npy')))}.npy"
        code = main(["embed", "--checkpoint", str(tmp_path / "out"), "--input", str(tmp_path / "in.txt"),
                     "--out", str(out), *extra])
        return code, np.load(out) if out.exists() else None

    for extra, prefix in ((("--prompt-name", "query"), named["query"]), ((), named["document"]),
                          (("--prompt", "query: "), "query: ")):
        code, got = cli(*extra)
        assert code == 0 and np.abs(got - by_hand(prefix)).max() <= 1e-5, extra
    assert np.abs(by_hand(named["query"]) - by_hand("")).max() > 1e-3  # the prompt changes the vector
    for extra in (("--prompt-name", "nope"), ("--prompt", "x", "--prompt-name", "query")):
        assert cli(*extra) == (2, None)


TEXT = "Hello, world! The quick brown fox jumps over the lazy dog."


def _f16_table_gelu(x: torch.Tensor) -> torch.Tensor:
    """ggml's CPU tanh-GELU: its input rounded to F16 and looked up in a table of F16 values, x itself past 10."""
    y = torch.nn.functional.gelu(x.half().float(), approximate="tanh").half().float()
    return torch.where(x <= -10, torch.zeros_like(x), torch.where(x >= 10, x, y))


def test_gguf_gemma_embedding_reads_back_and_equals_llama_cpp(pair, tmp_path, monkeypatch):
    """Written as llama.cpp's gemma-embedding (the converter's dense_2 / dense_3, the window as config.json's),
    read back to the same vectors before Normalize (which GGUF does not hold), and llama.cpp's embeddings equal:
    within 1e-4 of llmarch's once llmarch's GELU goes through ggml's F16 table too (measured 2.5e-5; 2.1e-4 on
    values up to 1.4 with the exact GELU)."""
    gguf = pytest.importorskip("gguf")
    _, _, _, ours = pair
    path = tmp_path / "m.gguf"
    with pytest.warns(LlmarchWarning, match="no Normalize"):
        to_gguf(ours, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "gemma-embedding"
    assert reader.fields["gemma-embedding.attention.sliding_window"].contents() == 6
    assert reader.fields["gemma-embedding.dense_2_feat_out"].contents() == DENSE[0]
    back = llmarch.from_gguf(path)
    c = back.config
    assert (c.head, c.pooling, c.causal, c.embed_dense, c.embed_normalize, c.layer_overrides, c.layer_types) == (
        "embed", "mean", False, list(DENSE), False, ours.config.layer_overrides, ours.config.layer_types)
    ids, mask = _batch(True)
    with torch.no_grad():
        want = ours(ids, attention_mask=mask).logits
        got = back(ids, attention_mask=mask).logits
    assert (torch.nn.functional.normalize(got, dim=-1) - want).abs().max() <= 1e-5
    tokens, theirs = llama_cpp_embedding(path, TEXT)
    with torch.no_grad():
        mine = back(torch.tensor([tokens])).logits[0].numpy()
    assert len(tokens) > 2 * 6 and theirs.shape == mine.shape == (DENSE[-1],)
    assert np.abs(theirs - mine).max() <= 1e-3 * np.abs(mine).max(), np.abs(theirs - mine).max()
    monkeypatch.setitem(ffn.ACTIVATIONS, "gelu_tanh", _f16_table_gelu)  # read by the FFN as it is built
    with torch.no_grad():
        mine = llmarch.from_gguf(path)(torch.tensor([tokens])).logits[0].numpy()
    assert np.abs(theirs - mine).max() <= 1e-4, np.abs(theirs - mine).max()


def test_what_llama_cpp_or_the_folder_cannot_mean_is_refused(pair, tmp_path):
    hf, _, _, ours = pair
    other_scale = llmarch.TransformerLM(ours.config.replace(attn_scale=32 ** -0.5))
    with pytest.raises(LlmarchError, match="query_pre_attn_scalar 32"):
        to_gguf(other_scale, tmp_path / "x.gguf", "f32", ByteTokenizer())
    three = llmarch.TransformerLM(ours.config.replace(embed_dense=[96, 64, 64]))
    with pytest.raises(LlmarchError, match="at most two Dense projections"):
        to_gguf(three, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
    _sentence_folder(tmp_path / "relu", hf)
    conf = json.loads((tmp_path / "relu" / "3_Dense" / "config.json").read_text())
    conf["activation_function"] = "torch.nn.modules.activation.ReLU"
    (tmp_path / "relu" / "3_Dense" / "config.json").write_text(json.dumps(conf))
    with pytest.raises(LlmarchError, match="activation torch.nn.modules.activation.ReLU is not supported"):
        from_hf(tmp_path / "relu")
    gemma2 = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, model_type="gemma2", use_bidirectional_attention=True)
    with pytest.raises(LlmarchError, match="gemma2 with use_bidirectional_attention is not supported"):
        llmarch.interop.hf.hf_model_config(gemma2)
