"""GGUF "deepseek2" in and out for DeepSeek-V2 and V3 (interop/gguf_archs/deepseek.py): a tiny random model of
each (from a transformers config, through from_hf: latent attention with and without query compression,
interleaved RoPE, DeepSeek's YaRN, dense first layers, shared experts, softmax and sigmoid routers with V3's
groups and bias) is written by to_gguf (F32) as convert_hf_to_gguf.py writes it (kv_b_proj split into llama.cpp's
attn_k_b / attn_v_b, the lengths of the absorbed attention) and read back by from_gguf to equal logits
(max |dlogit| <= 1e-4); llama.cpp (llama-cpp-python, where installed) decodes the file greedily to llmarch's tokens
with llmarch's logits (within its f16 KV cache's rounding). A file of llama.cpp's older layout (kv_b whole, no
*_mla lengths) reads the same; what llama.cpp means otherwise than llmarch's DeepSeek families is refused, one
line, on writing and on reading."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back
from test_deepseek import perturb

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

MLA = dict(vocab_size=272, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
           kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12, moe_intermediate_size=32,
           n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=128,
           bos_token_id=1, eos_token_id=2)
# DeepSeek's YaRN as its checkpoints set it: mscale = mscale_all_dim (what llama.cpp's deepseek2 assumes)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32,
        "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}
CASES = {  # name: (transformers config class, its fields)
    # compressed queries, sigmoid router with bias, 2 of 4 groups, renormalised and scaled, YaRN
    "deepseek_v3": ("DeepseekV3Config", dict(MLA, q_lora_rank=48, n_group=4, topk_group=2, n_shared_experts=1,
                                             routed_scaling_factor=2.5, norm_topk_prob=True, rope_parameters=YARN)),
    # one group, weights not renormalised, every FFN a mixture, two shared experts, the head tied
    "deepseek_v3-ungrouped": ("DeepseekV3Config", dict(MLA, q_lora_rank=48, n_group=1, topk_group=1,
                                                       n_shared_experts=2, norm_topk_prob=False,
                                                       first_k_dense_replace=0, tie_word_embeddings=True)),
    # V2-Lite's shape: no query compression (q_lora_rank 0 in the file), softmax greedy routing
    "deepseek_v2-lite": ("DeepseekV2Config", dict(MLA, q_lora_rank=None, n_shared_experts=2, topk_method="greedy")),
}


def config(case, **changes):
    conf_cls, kwargs = CASES[case]
    return getattr(transformers, conf_cls)(**{**kwargs, **changes})


def tiny(case, tmp_path, **changes):
    """The case's random model as llmarch reads it from a Hugging Face directory: gains and the expert bias
    perturbed, the router sharpened so a wrong choice of experts shows."""
    torch.manual_seed(0)
    hf = perturb(transformers.AutoModelForCausalLM.from_config(config(case, **changes)))
    hf.save_pretrained(tmp_path / "hf")
    return llmarch.from_hf(tmp_path / "hf")


def built(case, **changes):
    """The case's model straight from its config (no weights to compare): for what is refused."""
    from llmarch.interop.hf import FAMILIES

    conf = config(case, **changes).to_dict()
    return llmarch.build(FAMILIES[conf["model_type"]].to_config(conf)).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    fields = {name: f.contents() for name, f in reader.fields.items() if name.startswith("deepseek2.")}
    names = {t.name for t in reader.tensors}
    assert reader.fields["general.architecture"].contents() == "deepseek2"
    assert fields["deepseek2.attention.key_length"] == 32 + 8 and fields["deepseek2.attention.value_length"] == 32
    assert fields["deepseek2.attention.key_length_mla"] == 16 + 8 and fields["deepseek2.attention.head_count_kv"] == 1
    assert {"blk.1.attn_k_b.weight", "blk.1.attn_v_b.weight"} <= names and "blk.1.attn_kv_b.weight" not in names
    assert ("blk.1.exp_probs_b.bias" in names) == case.startswith("deepseek_v3")
    back = gguf_reads_back(path, model, exact=False, apart=1e-3)
    assert back.config.hf_model_type == case.split("-")[0]


@pytest.mark.parametrize("case,changes,problem", [
    ("deepseek_v2-lite", dict(topk_method="group_limited_greedy", n_group=4, topk_group=2), "best two experts"),
    ("deepseek_v3", dict(attention_bias=True), "attention biases"),
    # transformers' cos/sin factor mscale(s, 1) / mscale(s, 0.8), which llama.cpp takes as 1
    ("deepseek_v3", dict(rope_parameters={**YARN, "mscale": 1.0, "mscale_all_dim": 0.8}), "mscale = mscale_all_dim"),
    ("deepseek_v3", dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 4.0}), "linear"),
])
def test_to_gguf_refuses_what_llama_cpp_would_run_otherwise(case, changes, problem, tmp_path):
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(built(case, **changes), tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


def rewrite(src, dst, keys: dict, drop=(), tensors=None, arch: str = "deepseek2") -> None:
    """A copy of the GGUF file src (of architecture `arch`) with metadata `keys` set (name: (value, GGUFValueType)),
    the keys `drop` left out, and its tensors, or `tensors` (name: array) where given."""
    from llmarch.interop.gguf_writer import _writer_class

    reader = gguf.GGUFReader(str(src))
    w = _writer_class()(str(dst), arch)  # the one that packs the byte vocabulary's empty merges
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in drop or name in keys:
            continue
        array = f.types[0] == gguf.GGUFValueType.ARRAY  # the reader gives no item type of an empty one (merges)
        item = f.types[1] if len(f.types) > 1 else gguf.GGUFValueType.STRING
        w.add_key_value(name, f.contents(), f.types[0], sub_type=item if array else None)
    for name, (value, kind) in keys.items():
        w.add_key_value(name, value, kind)
    for name, array in (tensors or {t.name: t.data for t in reader.tensors}).items():
        w.add_tensor(name, np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


UINT, FLOAT = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32


def test_llama_cpp_older_layout_reads_the_same(tmp_path):
    """A file of llama.cpp's layout before its absorbed attention (kv_b whole as attn_kv_b, key_length and
    value_length the heads' own, a KV head per head, no *_mla keys) reads as the same model; llama.cpp (its
    unabsorbed path) gives the same logits."""
    model = built("deepseek_v3-ungrouped")
    to_gguf(model, tmp_path / "new.gguf", "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(tmp_path / "new.gguf"))
    tensors = {t.name: t.data for t in reader.tensors}
    for i in range(3):
        k_b, v_b = tensors.pop(f"blk.{i}.attn_k_b.weight"), tensors.pop(f"blk.{i}.attn_v_b.weight")
        tensors[f"blk.{i}.attn_kv_b.weight"] = np.concatenate((k_b.transpose(0, 2, 1), v_b), axis=1).reshape(-1, 32)
    old = {"deepseek2.attention.key_length": (24, UINT), "deepseek2.attention.value_length": (12, UINT),
           "deepseek2.attention.head_count_kv": (4, UINT)}  # llama.cpp then attends per head, as transformers
    rewrite(tmp_path / "new.gguf", tmp_path / "old.gguf", old,
            drop=("deepseek2.attention.key_length_mla", "deepseek2.attention.value_length_mla"), tensors=tensors)
    ids = torch.randint(0, 256, (1, 16))
    assert (logits(llmarch.from_gguf(tmp_path / "old.gguf"), ids) - logits(model, ids)).abs().max() <= 1e-4
    llama_cpp_test = pytest.importorskip("test_llama_cpp", reason="llama-cpp-python is not installed")
    seq, theirs = llama_cpp_test.llama_cpp_greedy(tmp_path / "old.gguf", ids[0, :8].tolist(), 4)
    assert np.abs(theirs - logits(model, torch.tensor([seq[:-1]]))[0].numpy()).max() <= 1e-3


@pytest.mark.parametrize("keys,drop,problem", [
    ({"deepseek2.expert_gating_func": (1, UINT)}, (), "neither"),  # softmax scores with V3's bias
    ({"deepseek2.expert_group_count": (2, UINT)}, ("deepseek2.expert_gating_func",), "neither"),  # V2 + groups
    ({}, ("deepseek2.rope.scaling.yarn_log_multiplier",), "DeepSeek's YaRN"),
    ({"deepseek2.rope.scaling.yarn_attn_factor": (1.1, FLOAT)}, (), "DeepSeek's YaRN"),
])
def test_from_gguf_refuses_what_llmarch_would_run_otherwise(keys, drop, problem, tmp_path):
    to_gguf(built("deepseek_v3"), tmp_path / "ok.gguf", "f32")
    rewrite(tmp_path / "ok.gguf", tmp_path / "x.gguf", keys, drop)
    if "deepseek2.expert_group_count" in keys:  # a V2 file: no bias tensor
        reader = gguf.GGUFReader(str(tmp_path / "ok.gguf"))
        rewrite(tmp_path / "ok.gguf", tmp_path / "x.gguf", keys, drop,
                {t.name: t.data for t in reader.tensors if "exp_probs_b" not in t.name})
    with pytest.raises(LlmarchError, match=problem) as e:
        llmarch.from_gguf(tmp_path / "x.gguf")
    assert "\n" not in str(e.value)


def test_q8_0_file_reads_close_and_decodes_alike_in_llama_cpp(tmp_path):
    """A Q8_0 DeepSeek-V3 file: projections and experts Q8_0; the router, the expert bias and k_b (rows of
    qk_nope_head_dim 16, under a block of 32) kept float. llmarch reads it close to the model, on its int8 kernels
    too, and llama.cpp's logits on the same file are llmarch's within its 8-bit activations' rounding."""
    model = built("deepseek_v3")
    path = tmp_path / "q8.gguf"
    to_gguf(model, path, "q8_0", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.1.ffn_gate_exps.weight"] == types["blk.1.attn_v_b.weight"] == "Q8_0"
    assert types["blk.1.ffn_gate_inp.weight"] == types["blk.1.exp_probs_b.bias"] == "F32"
    assert types["blk.1.attn_k_b.weight"] == "F16"
    back, kernels = llmarch.from_gguf(path), llmarch.from_gguf(path, kernels=True)
    assert kernels.quantization.method == "int8"
    ids = torch.randint(0, 256, (1, 12))
    want = logits(model, ids)
    for got in (logits(back, ids), logits(kernels, ids)):
        assert 0 < (got - want).abs().max() < 0.05 * want.abs().max()
    llama_cpp_test = pytest.importorskip("test_llama_cpp", reason="llama-cpp-python is not installed")
    seq, theirs = llama_cpp_test.llama_cpp_greedy(path, ids[0, :8].tolist(), 4)
    assert np.abs(theirs - logits(back, torch.tensor([seq[:-1]]))[0].numpy()).max() < 0.02 * np.abs(theirs).max()


def test_dense_deepseek_round_trips_and_decodes_in_llama_cpp(tmp_path):
    """No experts at all (every FFN dense: leading_dense_block_count = block_count, no expert_count), as the
    converter writes such a model: read back as deepseek_v2, decoded by llama.cpp alike."""
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", hf_model_type="deepseek_v2", mixer="mla", n_layers=2, d_model=64, n_heads=4,
                          n_kv_heads=4, head_dim=8, kv_lora_rank=32, qk_nope_head_dim=16, v_head_dim=12,
                          vocab_size=272, ffn_hidden=96).eval()
    path = tmp_path / "dense.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    back = llmarch.from_gguf(path)
    ids = torch.randint(0, 256, (1, 16))
    assert back.config.n_experts == 0 and (logits(back, ids) - logits(model, ids)).abs().max() <= 1e-4
    llama_cpp_test = pytest.importorskip("test_llama_cpp", reason="llama-cpp-python is not installed")
    seq, theirs = llama_cpp_test.llama_cpp_greedy(path, ids[0, :8].tolist(), 4)
    assert np.abs(theirs - logits(model, torch.tensor([seq[:-1]]))[0].numpy()).max() <= 1e-3
