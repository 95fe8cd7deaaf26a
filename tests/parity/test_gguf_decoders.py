"""GGUF in and out for DBRX and MiniCPM3, as test_gguf_families.py does for the others: each tiny random model (from a
`transformers` config, through from_hf) is written by `to_gguf` with llmarch's byte tokenizer and read back by
from_gguf to equal logits (F32, max |dlogit| <= 1e-4); llama.cpp (llama-cpp-python, where installed) decodes the
file greedily to llmarch's tokens with llmarch's logits. What llama.cpp would compute otherwise is refused."""
import pytest
import torch

from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

DBRX = dict(vocab_size=272, d_model=64, n_layers=2, n_heads=4, max_seq_len=128, bos_token_id=1, eos_token_id=2,
            attn_config=dict(kv_n_heads=2, clip_qkv=0.5, rope_theta=1e4),
            ffn_config=dict(ffn_hidden_size=32, moe_num_experts=4, moe_top_k=2),
            rope_parameters={"rope_type": "default", "rope_theta": 1e4})
CASES = {  # name: (transformers config class, its fields, the GGUF architecture)
    # 4 experts, top 2 renormalised, q k v clamped at 0.5 (it binds: llama.cpp clamps the same)
    "dbrx": ("DbrxConfig", DBRX, "dbrx"),
}


def tiny(case, tmp_path, **changes):
    conf_cls, kwargs, _ = CASES[case]
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(getattr(transformers, conf_cls)(**{**kwargs, **changes}))
    return perturbed_from_hf(routed_apart(hf), tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == CASES[case][2]
    back = gguf_reads_back(path, model, exact=False, apart=1e-3)
    assert back.config.hf_model_type == case.split("-")[0]


@pytest.mark.parametrize("case,changes,problem", [
    # llama.cpp's dbrx clamps by attention.clamp_kqv always, renormalises by the sum, runs SiLU experts
    ("dbrx", dict(attn_config=dict(kv_n_heads=2, clip_qkv=None, rope_theta=1e4)), "no clip_qkv"),
    ("dbrx", dict(ffn_config=dict(ffn_hidden_size=32, moe_num_experts=4, moe_normalize_expert_weights=2.0)),
     "moe_normalize_expert_weights 2.0"),
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(case, changes, problem, tmp_path):
    model = tiny(case, tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()

