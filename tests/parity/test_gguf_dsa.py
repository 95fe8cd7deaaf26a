"""GGUF `deepseek32` (DeepSeek-V3.2) and `glm-dsa` (GLM-5) in and out (interop/gguf_archs/dsa.py): a tiny random
model of each from transformers (test_dsa's: latent attention with the lightning indexer keeping 6 keys per query of
24, so most queries drop keys; V3.2 under YaRN; GLM-5 with shared indexer layers) through from_hf, written by
to_gguf (F32) with the indexer's keys and tensors, read back by from_gguf to equal logits and decoded by llama.cpp
(llama-cpp-python, where installed) greedily to llmarch's tokens with llmarch's logits; a Q8_0 file reads back close.
What llama.cpp computes otherwise is refused on writing."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back
from test_deepseek import perturb
from test_dsa import CASES as DSA_CASES

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

# V3.2's YaRN (mscale = mscale_all_dim = 1, as llama.cpp takes it); an indexer head of 64 (llama.cpp's smallest
# Hadamard rotation); GLM-5's shared layers without test_dsa's attention biases (deepseek2's graph has none)
CASES = {"deepseek_v32": ("deepseek32", dict(rope_parameters={**DSA_CASES["deepseek_v32"][2]["rope_parameters"],
                                                              "mscale": 1.0, "mscale_all_dim": 1.0})),
         "glm_moe_dsa-shared": ("glm-dsa", dict(attention_bias=False))}


def hf_model(case, **changes):
    conf_cls, model_cls, kwargs = DSA_CASES[case]
    conf = getattr(transformers, conf_cls)(**{**kwargs, "vocab_size": 272, "index_head_dim": 64,
                                              **CASES[case][1], **changes})
    torch.manual_seed(0)
    return perturb(getattr(transformers, model_cls)(conf).eval())


def tiny(case, folder, **changes):
    hf_model(case, **changes).save_pretrained(folder)
    return llmarch.from_hf(folder)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    arch = CASES[case][0]
    assert reader.fields["general.architecture"].contents() == arch
    assert reader.fields[f"{arch}.attention.indexer.top_k"].contents() == 6
    assert {"blk.0.indexer.attn_q_b.weight", "blk.0.indexer.k_norm.bias"} <= {t.name for t in reader.tensors}
    # glm-dsa decodes 8e-5 apart with every key kept too (its graph's own rounding, not the selection; measured)
    back = gguf_reads_back(path, model, exact=True, apart=1e-4 if arch == "deepseek32" else 5e-4)
    assert back.config.hf_model_type == case.split("-")[0] and back.config.dsa_topk == 6
    assert [back.config.for_layer(i).dsa_shared for i in range(model.config.n_layers)] == \
        [model.config.for_layer(i).dsa_shared for i in range(model.config.n_layers)]


@pytest.mark.parametrize("changes, problem", [
    (dict(index_head_dim=48), "power of two from 64"),
    (dict(rope_parameters=DSA_CASES["deepseek_v32"][2]["rope_parameters"]), "mscale = mscale_all_dim = 1"),
])
def test_what_llama_cpp_computes_otherwise_is_refused(changes, problem, tmp_path):
    from llmarch.interop.hf import FAMILIES

    conf = hf_model("deepseek_v32", **changes).config.to_dict()
    model = llmarch.build(FAMILIES["deepseek_v32"].to_config(conf))
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_q8_0_reads_back_close(tmp_path):
    """Q8_0 (rows of 32-blocks; narrower ones F16) with every key kept: within 2% of the logits' largest (1.1%
    measured), and so with the indexer's selection at the first 6 positions (the top 6 is every key); later ones
    differ more where rounding flips a near-tied key (0.07 and 0.16 of 0.6, measured)."""
    model = tiny("deepseek_v32", tmp_path / "hf")
    to_gguf(model, tmp_path / "q8.gguf", "q8_0", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(tmp_path / "q8.gguf")).tensors}
    assert types["blk.1.ffn_gate_exps.weight"] == types["blk.0.indexer.attn_k.weight"] == "Q8_0"
    back = llmarch.from_gguf(tmp_path / "q8.gguf")
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        want, got = model(ids).logits, back(ids).logits
        assert (got - want)[:, :6].abs().max() < 0.02 * want.abs().max()
        dense = [llmarch.build(m.config.replace(dsa_topk=64)).eval() for m in (model, back)]
        for d, m in zip(dense, (model, back)):
            d.load_state_dict(m.state_dict())
        want, got = dense[0](ids).logits, dense[1](ids).logits
    assert 0 < (got - want).abs().max() < 0.02 * want.abs().max()
