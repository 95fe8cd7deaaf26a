"""GGUF in and out for DBRX and MiniCPM3, as test_gguf_families.py does for the others: each tiny random model (from a
`transformers` config, through from_hf) is written by `to_gguf` with llmarch's byte tokenizer and read back by
from_gguf to equal logits (F32, max |dlogit| <= 1e-4); llama.cpp (llama-cpp-python, where installed) decodes the
file greedily to llmarch's tokens with llmarch's logits (F32 KV cache: within 1e-4). What llama.cpp would compute
otherwise is refused."""
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
MINICPM3 = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                kv_lora_rank=24, q_lora_rank=32, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12,
                max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
CASES = {  # name: (transformers config class, its fields, the GGUF architecture)
    # 4 experts, top 2 renormalised, q k v clamped at 0.5 (it binds: llama.cpp clamps the same)
    "dbrx": ("DbrxConfig", DBRX, "dbrx"),
    # MiniCPM3-4B's scalars (llama.cpp's fixed ones: embeddings x 12, branches x 1.4 / sqrt(2), the head's input x
    # 256 / 64), latent attention with values of 12 dims (value_length), a tied head
    "minicpm3": ("MiniCPM3Config", dict(MINICPM3, scale_emb=12, scale_depth=1.4, dim_model_base=256), "minicpm3"),
    # LongRoPE's factors as tensors, over an original context of 512, past llama.cpp's window here (its n_ctx of
    # 128, padded to 256; a window past the original context takes the long factors): the short ones throughout
    "minicpm3-longrope": ("MiniCPM3Config", dict(MINICPM3, max_position_embeddings=512, rope_parameters={
        "rope_type": "longrope", "rope_theta": 1e4, "original_max_position_embeddings": 512,
        "short_factor": [1.0 + 0.3 * i for i in range(4)], "long_factor": [1.0 + 0.5 * i for i in range(4)]}),
        "minicpm3"),
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
    # an F32 KV cache (exact): with llama.cpp's F16 one MiniCPM3's logits (times 12 / 1.4 / 4 from its scalars) come
    # 1.1e-3 apart
    back = gguf_reads_back(path, model, exact=True, apart=1e-4)
    assert back.config.hf_model_type == case.split("-")[0]


@pytest.mark.parametrize("case,changes,problem", [
    # llama.cpp's dbrx clamps by attention.clamp_kqv always, renormalises by the sum, runs SiLU experts
    ("dbrx", dict(attn_config=dict(kv_n_heads=2, clip_qkv=None, rope_theta=1e4)), "no clip_qkv"),
    ("dbrx", dict(ffn_config=dict(ffn_hidden_size=32, moe_num_experts=4, moe_normalize_expert_weights=2.0)),
     "moe_normalize_expert_weights 2.0"),
    # llama.cpp's minicpm3 fixes the three scalars and compresses the query
    ("minicpm3", dict(scale_emb=10), "scale_emb"),
    ("minicpm3", dict(dim_model_base=32), "dim_model_base"),
    ("minicpm3", dict(q_lora_rank=None), "q_lora_rank None"),
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(case, changes, problem, tmp_path):
    model = tiny(case, tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()

