"""GGUF in and out for Qwen3-Next (GGUF `qwen3next`): a tiny random transformers Qwen3Next (Gated DeltaNet and
gated full-attention layers, experts with a gated shared expert) written by `to_gguf` reads back to equal logits
(F32, max |dlogit| <= 1e-4), and llama.cpp (llama-cpp-python, where installed) decodes the file greedily to
llmarch's tokens with llmarch's logits; a file written independently here by convert_hf_to_gguf.py's rules
(Qwen3NextModel), in the current layout (attn_qkv + attn_gate) and the older one (ssm_in whole), reads as
transformers' model; what llama.cpp cannot represent is refused in one line."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, llama_cpp_against
from test_qwen3_next import perturb

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

L, F = "linear_attention", "full_attention"
CONFIG = dict(vocab_size=272, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, intermediate_size=96, linear_num_key_heads=2, linear_num_value_heads=4,
              linear_key_head_dim=16, linear_value_head_dim=16, num_experts=4, num_experts_per_tok=2,
              moe_intermediate_size=32, shared_expert_intermediate_size=32, max_position_embeddings=128,
              bos_token_id=1, eos_token_id=2)
CASES = {
    # two value heads per key head; full attention every second layer
    "grouped": dict(layer_types=[L, F, L, F]),
    # one value head per key head; llama.cpp's default interval of 4; the head tied; half the head rotated
    "tied": dict(linear_num_value_heads=2, tie_word_embeddings=True, rope_theta=1e6, partial_rotary_factor=0.5),
}


def hf_model(**changes):
    torch.manual_seed(0)
    return perturb(transformers.Qwen3NextForCausalLM(transformers.Qwen3NextConfig(**{**CONFIG, **changes})).eval())


def tiny(tmp_path, **changes):
    hf = hf_model(**changes)
    hf.save_pretrained(tmp_path / "hf")
    return hf, llmarch.from_hf(tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    _, model = tiny(tmp_path, **CASES[case])
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    key = lambda k: reader.fields[f"qwen3next.{k}"].contents()  # noqa: E731
    assert (key("full_attention_interval"), key("ssm.group_count"), key("ssm.time_step_rank")) == \
        ((2, 2, 4) if case == "grouped" else (4, 2, 2))
    assert key("rope.dimension_count") == (4 if case == "grouped" else 8)
    names = {t.name for t in reader.tensors}  # in_proj_qkvz split as the converter splits it
    assert {"blk.0.attn_qkv.weight", "blk.0.attn_gate.weight", "blk.0.ssm_ba.weight"} <= names
    assert "blk.0.ssm_in.weight" not in names and ("output.weight" in names) == (case == "grouped")
    back = gguf_reads_back(path, model, exact=False, apart=1e-3)
    same = ("layer_types", "delta_heads", "delta_value_heads", "delta_key_dim", "rope_fraction", "rope_theta",
            "n_shared_experts", "expert_hidden", "tie_embeddings")  # (to_gguf checked every field on writing)
    assert [getattr(back.config, f) for f in same] == [getattr(model.config, f) for f in same]
    assert model.config.rope_fraction == (0.25 if case == "grouped" else 0.5)


def write_like_converter(hf, path, legacy: bool, keys=None) -> None:
    """convert_hf_to_gguf.py's Qwen3NextModel on the saved checkpoint, written here independently of to_gguf:
    TextModel's and Qwen2MoeModel's keys, the ssm.* ones and full_attention_interval; A as -exp(A_log), dt_bias
    as ssm_dt.bias, the conv weight squeezed, 1 added to every norm but the delta net's, the experts' stacked
    gate_up_proj (transformers 5's) split into gate and up, and
    in_proj_qkvz per key head [q k v z] split into all q | all k | all v (attn_qkv) and all z (attn_gate), or,
    `legacy`, kept whole as ssm_in (the converter before that split). keys(w): more keys."""
    from llmarch.interop.gguf_tokenizer import write_tokenizer
    from llmarch.interop.gguf_writer import _writer_class

    c = hf.config
    w = _writer_class()(str(path), "qwen3next")
    write_tokenizer(w, ByteTokenizer(), c.vocab_size)
    for add, value in ((w.add_context_length, c.max_position_embeddings), (w.add_embedding_length, c.hidden_size),
                       (w.add_block_count, c.num_hidden_layers), (w.add_feed_forward_length, c.intermediate_size),
                       (w.add_head_count, c.num_attention_heads), (w.add_head_count_kv, c.num_key_value_heads),
                       (w.add_rope_freq_base, c.rope_parameters["rope_theta"]),
                       (w.add_layer_norm_rms_eps, c.rms_norm_eps), (w.add_key_length, c.head_dim),
                       (w.add_value_length, c.head_dim), (w.add_expert_count, c.num_experts),
                       (w.add_expert_used_count, c.num_experts_per_tok),
                       (w.add_expert_feed_forward_length, c.moe_intermediate_size),
                       (w.add_expert_shared_feed_forward_length, c.shared_expert_intermediate_size),
                       (w.add_ssm_conv_kernel, c.linear_conv_kernel_dim), (w.add_ssm_state_size, c.linear_key_head_dim),
                       (w.add_ssm_group_count, c.linear_num_key_heads),
                       (w.add_ssm_time_step_rank, c.linear_num_value_heads),
                       (w.add_ssm_inner_size, c.linear_value_head_dim * c.linear_num_value_heads),
                       (w.add_full_attention_interval, c.layer_types.index(F) + 1),  # config.json's
                       (w.add_rope_dimension_count, int(c.head_dim * c.rope_parameters["partial_rotary_factor"]))):
        add(value)
    if keys is not None:
        keys(w)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3NEXT, c.num_hidden_layers)
    K, dk, dv = c.linear_num_key_heads, c.linear_key_head_dim, c.linear_value_head_dim
    r = c.linear_num_value_heads // K
    for name, t in hf.state_dict().items():
        if name.endswith("experts.gate_up_proj"):  # (E, 2I, C), gate rows first: Qwen2MoeModel splits it
            for kind, part in zip(("gate_proj", "up_proj"), t.chunk(2, dim=1)):
                w.add_tensor(names.get_name(name.replace("gate_up_proj", kind)) + ".weight", part.numpy())
            continue
        if name.endswith("experts.down_proj"):
            name += ".weight"
        if name.endswith(".A_log"):
            t = -torch.exp(t)
        elif name.endswith(".dt_bias"):
            name = name.replace(".dt_bias", ".dt_proj.bias")
        elif "conv1d" in name:
            t = t.squeeze()
        elif name.endswith("norm.weight") and not name.endswith("linear_attn.norm.weight"):
            t = t + 1
        if name.endswith("in_proj_qkvz.weight") and not legacy:
            q, k, v, z = t.reshape(K, -1, c.hidden_size).split([dk, dk, r * dv, r * dv], dim=1)
            qkv = torch.cat([x.reshape(-1, c.hidden_size) for x in (q, k, v)])
            w.add_tensor(name.split(".linear_attn")[0].replace("model.layers", "blk") + ".attn_qkv.weight",
                         qkv.numpy())
            w.add_tensor(name.split(".linear_attn")[0].replace("model.layers", "blk") + ".attn_gate.weight",
                         z.reshape(-1, c.hidden_size).numpy())
            continue
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.float().contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("legacy", [False, True], ids=["attn_qkv", "ssm_in"])
def test_converter_style_file_is_transformers_model(legacy, tmp_path):
    """Both layouts read as transformers' model; llama.cpp decodes each to its greedy tokens."""
    hf = hf_model(full_attention_interval=2)
    path = tmp_path / "theirs.gguf"
    write_like_converter(hf, path, legacy)
    assert ("blk.0.ssm_in.weight" in {t.name for t in gguf.GGUFReader(str(path)).tensors}) == legacy
    ours = llmarch.from_gguf(path)
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    seq, mine, apart = llama_cpp_against(path, ours, ids[0, :8].tolist())
    assert apart <= 1e-3 and mine == seq


def test_reading_honours_recurrent_layers_and_refuses_mtp(tmp_path):
    """llama.cpp reads `attention.recurrent_layers` (a flag per layer) before the interval: so does from_gguf.
    Multi-token-prediction layers (nextn_predict_layers) are refused in one line."""
    hf = hf_model(layer_types=[L, F, F, L])
    path = tmp_path / "r.gguf"
    write_like_converter(hf, path, False, lambda w: w.add_array("qwen3next.attention.recurrent_layers",
                                                                [True, False, False, True]))
    ours = llmarch.from_gguf(path)
    assert [ours.config.layer_mixer(i) for i in range(4)] == ["gated_deltanet", "attention", "attention",
                                                              "gated_deltanet"]
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    write_like_converter(hf, path, False, lambda w: w.add_uint32("qwen3next.nextn_predict_layers", 1))
    with pytest.raises(LlmarchError, match="nextn_predict_layers"):
        llmarch.from_gguf(path)


def test_quantized_file_keeps_the_delta_net_tensors_f32(tmp_path):
    """A Q8_0 file: A, dt bias, the conv, the norms, the router and the shared expert's gate stay F32 (as the
    converter keeps them), the projections are Q8_0 (the split in_proj_qkvz, in_proj_ba, the experts); llmarch
    reads it close to the model, and llama.cpp's greedy tokens are llmarch's on the same file."""
    _, model = tiny(tmp_path, layer_types=[L, F, L, F])
    path = tmp_path / "q8.gguf"
    to_gguf(model, path, "q8_0", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    kept = ("ssm_a", "ssm_dt.bias", "ssm_conv1d.weight", "ssm_norm.weight", "attn_norm.weight", "ffn_gate_inp.weight",
            "ffn_gate_inp_shexp.weight")
    assert {types[f"blk.0.{k}"] for k in kept} == {types["blk.1.attn_q_norm.weight"]} == {"F32"}
    quantized = ("attn_qkv.weight", "attn_gate.weight", "ssm_ba.weight", "ssm_out.weight", "ffn_gate_exps.weight")
    assert {types[f"blk.0.{k}"] for k in quantized} == {"Q8_0"}
    back = llmarch.from_gguf(path)
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        want = model(ids).logits
        assert (back(ids).logits - want).abs().max() < 0.05 * want.abs().max()
    seq, ours, apart = llama_cpp_against(path, back, ids[0, :8].tolist())
    assert apart <= 0.05 * want.abs().max() and ours == seq


@pytest.mark.parametrize("changes,problem", [
    (dict(linear_value_head_dim=8), "ssm.state_size"),  # llama.cpp's value head dim is the key head dim
    (dict(decoder_sparse_step=2), "every layer"),  # llama.cpp requires the router in every layer
    (dict(num_experts=0), "every layer"),  # and refuses a model with no experts
    (dict(layer_types=[L, F, F, L]), "full_attention_interval"),  # no interval gives that pattern
    (dict(norm_topk_prob=False), "router_renormalize=False"),  # llama.cpp's graph renormalises the top-k
])
def test_to_gguf_refuses_what_llama_cpp_cannot_represent(changes, problem, tmp_path):
    from llmarch.interop.hf import FAMILIES

    cfg = FAMILIES["qwen3_next"].to_config(transformers.Qwen3NextConfig(**{**CONFIG, **changes}).to_dict())
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(llmarch.build(cfg), tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_to_gguf_refuses_a_model_without_the_shared_expert(tmp_path):
    from dataclasses import replace

    from llmarch.interop.hf import FAMILIES

    cfg = FAMILIES["qwen3_next"].to_config(transformers.Qwen3NextConfig(**CONFIG).to_dict())
    cfg = replace(cfg, n_shared_experts=0, shared_expert_gate=False)
    with pytest.raises(LlmarchError, match="shared expert"):
        to_gguf(llmarch.build(cfg), tmp_path / "x.gguf", "f16", ByteTokenizer())


QWEN35 = {k: v for k, v in CONFIG.items() if k not in ("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                                       "shared_expert_intermediate_size")}


@pytest.mark.parametrize("moe", [False, True])
def test_qwen3_5_gguf_round_trip_and_llama_cpp(moe, tmp_path):
    """Qwen3.5 (GGUF qwen35, and qwen35moe with experts): the delta net's projections stored apart as llama.cpp
    holds them (attn_qkv, attn_gate, ssm_beta, ssm_alpha), the multimodal RoPE's sections written; read back to
    llmarch's logits, and llama.cpp decodes the file to llmarch's greedy tokens."""
    torch.manual_seed(0)
    if moe:
        conf = transformers.Qwen3_5MoeTextConfig(**{**QWEN35, "num_experts": 4, "num_experts_per_tok": 2,
                                                    "moe_intermediate_size": 32,
                                                    "shared_expert_intermediate_size": 32}, layer_types=[L, F, L, F])
        hf = transformers.Qwen3_5MoeForCausalLM(conf)
    else:
        hf = transformers.Qwen3_5ForCausalLM(transformers.Qwen3_5TextConfig(**QWEN35, layer_types=[L, F, L, F]))
    perturb(hf.eval()).save_pretrained(tmp_path / "hf")
    model = llmarch.from_hf(tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == ("qwen35moe" if moe else "qwen35")
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_qkv.weight", "blk.0.attn_gate.weight", "blk.0.ssm_beta.weight",
            "blk.0.ssm_alpha.weight"} <= names
    back = gguf_reads_back(path, model, exact=False, apart=1e-3)
    assert back.config.hf_model_type == model.config.hf_model_type
