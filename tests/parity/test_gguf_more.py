"""GGUF in and out for more of llmarch's Hugging Face families, as convert_hf_to_gguf.py writes them: each tiny
random model (from a `transformers` config, its 1-D parameters perturbed and its routers made decisive, through
from_hf) is written by `to_gguf` (F32, llmarch's byte tokenizer) and read back by from_gguf to equal logits (max
|dlogit| <= 1e-4); llama.cpp (llama-cpp-python, where installed) decodes the file greedily to llmarch's tokens with
logits within 1e-5 of llmarch's (F32 KV cache). Phi-3.5-MoE, which llama.cpp's phimoe graph computes otherwise
(gguf_archs/phi3.py), is refused on the way out and read from a file written past the refusal."""
import dataclasses

import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1,
             eos_token_id=2)
LONGROPE = dict(rope_type="longrope", rope_theta=1e4, short_factor=[1.0 + i / 8 for i in range(8)],
                long_factor=[2.0 + i / 4 for i in range(8)], original_max_position_embeddings=64,
                short_mscale=1.2, long_mscale=1.2)
PHIMOE = dict(SMALL, num_local_experts=4, attention_bias=True, lm_head_bias=True)
PLAIN_ROPE = dict(rope_type="default", rope_theta=1e4)
MINISTRAL3_ROPE = dict(rope_type="yarn", rope_theta=1e4, factor=16.0, original_max_position_embeddings=4,
                       beta_fast=32.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=0.5, llama_4_scaling_beta=0.3)
MISTRAL4_ROPE = dict(MINISTRAL3_ROPE, mscale_all_dim=1.0)
CASES = {  # name: (transformers config class, its fields, the GGUF architecture, router weights to scale)
    "phimoe": ("PhimoeConfig", PHIMOE, "phimoe", "block_sparse_moe.gate.weight"),
    "phimoe_longrope": ("PhimoeConfig", dict(PHIMOE, rope_parameters=LONGROPE), "phimoe",
                        "block_sparse_moe.gate.weight"),
    # xIELU's per-layer scalars as metadata arrays, per-head q/k norms; plain RoPE (Apertus's default llama3 scaling,
    # a rope_freqs tensor: test_gguf_rope.py)
    "apertus": ("ApertusConfig", dict(SMALL, head_dim=16, rope_parameters=PLAIN_ROPE, pad_token_id=0), "apertus", None),
    # YaRN over 4 original positions (factor 16; cos, sin scaled by mscale(16, 1) / mscale(16, 0.5)), Llama 4's query
    # scaling by 1 + 0.3 ln(1 + floor(p / 4)): both bind from the fifth token
    "ministral3": ("Ministral3Config", dict(SMALL, head_dim=16, pad_token_id=0, rope_parameters=MINISTRAL3_ROPE),
                   "mistral3", None),
    # layer 0 dense, then 4 experts (top 2 by softmax plus the expert bias, renormalised) and a shared one
    "ernie4_5_moe": ("Ernie4_5_MoeConfig", dict(SMALL, num_hidden_layers=3, head_dim=16, moe_num_experts=4, moe_k=2,
                                                moe_intermediate_size=32, moe_num_shared_experts=1,
                                                moe_layer_start_index=1, pad_token_id=0), "ernie4_5-moe", None),
    # EXAONE 4.0's attention (per-head QK-norm; layers 0-2 slide over 8 keys with RoPE, layer 3 full without
    # positions) and DeepSeek-V3's mixture after layer 0:
    # 8 experts in 4 groups (2 chosen) by sigmoid score plus the expert bias, renormalised, scaled, one shared
    "exaone_moe": ("ExaoneMoeConfig", dict(SMALL, num_hidden_layers=4, head_dim=16, sliding_window=8,
                                           num_experts=8, num_experts_per_tok=2,
                                           moe_intermediate_size=32, num_shared_experts=1, first_k_dense_replace=1,
                                           n_group=4, topk_group=2, routed_scaling_factor=2.5), "exaone-moe", None),
    # Mistral Small 4: DeepSeek-V3's latent attention (q compressed) and mixture after layer 0 with a softmax router
    # (renormalised, times 2), a shared expert; YaRN and Llama 4's query scaling over 4 original positions
    "mistral4": ("Mistral4Config", dict(vocab_size=272, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                        intermediate_size=96, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16,
                                        v_head_dim=12, moe_intermediate_size=32, n_routed_experts=8,
                                        num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=64,
                                        q_lora_rank=48, n_shared_experts=1, routed_scaling_factor=2.0,
                                        bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                        rope_parameters=MISTRAL4_ROPE), "mistral4", None),
}


def tiny(case, tmp_path, **changes):
    """The case's random model as llmarch reads it from a Hugging Face directory: 1-D parameters perturbed, the
    routers decisive (conftest.routed_apart, and the case's own router names scaled alike)."""
    conf_cls, kwargs, _, routers = CASES[case]
    torch.manual_seed(0)
    model_cls = getattr(transformers, conf_cls.replace("Config", "ForCausalLM"))  # Mistral 4 has no Auto entry
    hf = model_cls(getattr(transformers, conf_cls)(**{**kwargs, **changes})).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if routers and name.endswith(routers):
                p.mul_(20.0)
    return perturbed_from_hf(routed_apart(hf), tmp_path / "hf")


WRITTEN = [c for c in CASES if CASES[c][2] != "phimoe"]


@pytest.mark.parametrize("case", sorted(WRITTEN))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == CASES[case][2]
    # with an F32 KV cache and no flash attention (exact) the two agree to float rounding (measured: 1.8e-7 of logits
    # up to 0.62, Ministral 3), which makes a part left out show (Ministral 3's query scaling: 2.9e-3 apart)
    back = gguf_reads_back(path, model, exact=True, apart=1e-5)
    assert back.config.hf_model_type == model.config.hf_model_type


@pytest.mark.parametrize("case", ["phimoe", "phimoe_longrope"])
def test_phimoe_is_refused_and_its_file_reads(case, tmp_path, monkeypatch):
    """llama.cpp's phimoe normalises by RMSNorm and routes by softmax: writing refuses in one line; a file written
    past the refusal (the keys and tensors convert_hf_to_gguf.py's PhiMoeModel writes) reads back to the model."""
    from llmarch.interop import gguf_writer
    from llmarch.interop.gguf_archs import ARCHS

    model = tiny(case, tmp_path)
    with pytest.raises(LlmarchError, match="norm='layernorm' and router_scoring='sparsemixer'"):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
    archs = {**ARCHS, "phimoe": dataclasses.replace(ARCHS["phimoe"], model_out=lambda w, cfg: cfg)}
    monkeypatch.setattr(gguf_writer, "ARCHS", archs)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert {"blk.0.ffn_gate_inp.weight", "blk.0.ffn_up_exps.weight", "blk.0.attn_norm.bias", "output.bias",
            "output_norm.bias", "blk.0.attn_q.bias"} <= names
    assert ("rope_factors_long.weight" in names) == (case == "phimoe_longrope")
    back = llmarch.from_gguf(path)
    gguf_writer._check_reads_back(path, model.config)  # every field, as to_gguf checks a file it writes
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4


@pytest.mark.parametrize("case,changes,problem", [
    # llama.cpp's mistral3 has no sliding window
    ("ministral3", dict(sliding_window=8), "sliding_window=8"),
    # llama.cpp's mistral4 decoded YaRN with mscale = mscale_all_dim = 0.8 1.6e-3 logits apart
    ("mistral4", dict(rope_parameters=dict(MISTRAL4_ROPE, mscale=0.8, mscale_all_dim=0.8)), "mscale 0.8"),
    # an attention factor of its own: llama.cpp's mistral3 reads mscale(s, 1) / mscale(s, m) only
    ("ministral3", dict(rope_parameters=dict(MINISTRAL3_ROPE, attention_factor=0.9)), "rope_attn_factor=0.9"),
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(case, changes, problem, tmp_path):
    model = tiny(case, tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_exaone_moe_without_a_shared_expert_is_refused(tmp_path):
    """llama.cpp's exaone-moe graph adds a shared expert to every mixture (transformers' ExaoneMoe builds one
    whatever num_shared_experts says, so the model here is llmarch's own)."""
    cfg = tiny("exaone_moe", tmp_path).config.replace(n_shared_experts=0, shared_hidden=0)
    with pytest.raises(LlmarchError, match="num_shared_experts 0"):
        to_gguf(llmarch.build(cfg).eval(), tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
