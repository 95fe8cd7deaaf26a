"""GGUF in and out for the encoders llama.cpp runs as embedding models (gguf_archs/encoders.py): a tiny random
transformers base model of each (1-D parameters perturbed) read by llmarch, written as F32 with mean pooling, read
back to equal pooled embeddings on a right-padded batch, and embedded by llama.cpp (llama-cpp-python, where
installed) on the 58 byte tokens it tokenized itself to llmarch's pooled output on the same file within 1e-4; a
masked-LM head is left out with a warning."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchWarning
from llmarch.interop import from_hf
from llmarch.interop.gguf_writer import to_gguf
from llmarch.models.build import with_head

from conftest import llama_cpp_embedding, perturbed

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             max_position_embeddings=128, pad_token_id=0)
CASES = {  # GGUF architecture -> (transformers prefix, config extras)
    "eurobert": ("EuroBert", dict(num_key_value_heads=2, bos_token_id=1, eos_token_id=2, mask_token_id=3,
                                  rope_parameters={"rope_type": "default", "rope_theta": 500.0})),
    "nomic-bert": ("NomicBert", dict(rope_parameters={"rope_type": "default", "rope_theta": 500.0})),
    "jina-bert-v3": ("JinaEmbeddingsV3", dict(type_vocab_size=2, rope_parameters={"rope_type": "default",
                                                                                   "rope_theta": 500.0})),
}
TEXT = "Hello, world! The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module", params=sorted(CASES))
def written(request, tmp_path_factory):
    """(arch, llmarch's model with mean pooling, the F32 file written from it, its folder)."""
    arch = request.param
    prefix, extra = CASES[arch]
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, prefix + "Model")(getattr(transformers, prefix + "Config")(**SMALL, **extra)))
    folder = tmp_path_factory.mktemp(arch)
    hf.save_pretrained(folder / "hf")
    model = with_head(from_hf(folder / "hf"), "embed", pooling="mean").eval()
    to_gguf(model, folder / "m.gguf", "f32", ByteTokenizer())
    return arch, model, folder / "m.gguf", folder


def test_round_trip_and_llama_cpp_embed_as_llmarch(written):
    arch, model, path, _ = written
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == arch
    assert reader.fields[f"{arch}.attention.causal"].contents() is False
    back = llmarch.from_gguf(path)
    assert (back.config.head, back.config.pooling, back.config.causal) == ("embed", "mean", False)
    torch.manual_seed(1)
    ids = torch.randint(3, 300, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    with torch.no_grad():
        assert (back(ids, attention_mask=mask).logits - model(ids, attention_mask=mask).logits).abs().max() <= 1e-5
    tokens, theirs = llama_cpp_embedding(path, TEXT)
    with torch.no_grad():
        mine = back(torch.tensor([tokens])).logits[0].numpy()
    assert len(tokens) == 58 and theirs.shape == mine.shape == (64,)
    assert np.abs(theirs - mine).max() <= 1e-4, (arch, np.abs(theirs - mine).max())


def test_masked_lm_head_is_left_out_with_a_warning(written):
    arch, _, _, folder = written
    prefix, extra = CASES[arch]
    torch.manual_seed(0)
    hf = getattr(transformers, prefix + "ForMaskedLM")(getattr(transformers, prefix + "Config")(**SMALL, **extra))
    hf.save_pretrained(folder / "mlm")
    with pytest.warns(LlmarchWarning, match="no masked-LM head"):
        to_gguf(from_hf(folder / "mlm"), folder / "mlm.gguf", "f32", ByteTokenizer())
    assert llmarch.from_gguf(folder / "mlm.gguf").config.head == "embed"
