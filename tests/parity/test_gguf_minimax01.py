"""GGUF `minimax-01` in and out (interop/gguf_archs/minimax01.py): a tiny random MiniMax-Text-01 from transformers
(lightning and full attention layers, Mixtral's experts routed apart, a residual alpha of 1.7, the RMSNorm epsilon
1e-6 that transformers' lightning output norm has) through from_hf, written by to_gguf (F32) with the lightning
tensors as llama.cpp names them, read back by from_gguf to equal logits, decoded by llama.cpp (llama-cpp-python,
where installed) greedily to llmarch's tokens with llmarch's logits; a Q8_0 file reads back close. What llama.cpp
computes otherwise is refused."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

TYPES = ["linear_attention", "full_attention", "linear_attention", "full_attention"]
CONFIG = dict(vocab_size=272, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, block_size=8,
              rms_norm_eps=1e-6, layer_types=TYPES,
              **{f"{p}_alpha_factor": 1.7 for p in ("full_attn", "linear_attn", "mlp")})


def tiny(folder, **changes):
    torch.manual_seed(0)
    hf = transformers.MiniMaxForCausalLM(transformers.MiniMaxConfig(**{**CONFIG, **changes})).eval()
    with torch.no_grad():
        perturbed(routed_apart(hf)).save_pretrained(folder)
    return llmarch.from_hf(folder)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny(tmp_path_factory.mktemp("minimax01"))


def test_gguf_round_trip_and_llama_cpp(model, tmp_path):
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "minimax-01"
    assert reader.fields["minimax-01.attention.recurrent_layers"].contents() == [True, False, True, False]
    assert {"blk.0.attn_qkv.weight", "blk.0.attn_gate.weight", "blk.0.attn_norm_2.weight",
            "blk.1.attn_q.weight"} <= {t.name for t in reader.tensors}
    back = gguf_reads_back(path, model, exact=True, apart=1e-5)
    assert [back.config.for_layer(i).attention for i in range(4)] == ["lightning", "full"] * 2
    assert back.config.residual_alpha == pytest.approx(1.7)


def test_q8_0_reads_back_close(model, tmp_path):
    """Q8_0 (rows of 32-blocks; narrower ones F16): within 2% of the logits' largest."""
    to_gguf(model, tmp_path / "q8.gguf", "q8_0", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(tmp_path / "q8.gguf")).tensors}
    assert types["blk.0.attn_qkv.weight"] == types["blk.0.ffn_up_exps.weight"] == "Q8_0"
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        want, got = model(ids).logits, llmarch.from_gguf(tmp_path / "q8.gguf")(ids).logits
    assert 0 < (got - want).abs().max() < 0.02 * want.abs().max()


@pytest.mark.parametrize("changes, problem", [
    (dict(rms_norm_eps=1e-5), "lightning output norm"),
    ({f"{p}_beta_factor": 0.9 for p in ("full_attn", "linear_attn", "mlp")}, "unscaled"),
    (dict(layer_types=["linear_attention"] * 4), "both lightning and full"),
])
def test_what_llama_cpp_computes_otherwise_is_refused(changes, problem, tmp_path):
    from llmarch.interop.hf import FAMILIES

    cfg = FAMILIES["minimax"].to_config(transformers.MiniMaxConfig(**{**CONFIG, **changes}).to_dict())
    with pytest.raises(LlmarchError, match=problem) as e:
        to_gguf(llmarch.build(cfg), tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert "\n" not in str(e.value) and not (tmp_path / "x.gguf").exists()
