"""GGUF in and out for gpt-oss (GGUF "gpt-oss"), as convert_hf_to_gguf.py's GptOssModel writes it: the sinks as
attn_sinks.weight, the interleaved gate_up_proj split into ffn_gate_exps and ffn_up_exps (and its bias into
theirs), down_proj transposed, the router's bias, YaRN's keys, the window. A tiny random GptOssForCausalLM (sinks,
sliding and full layers with a window shorter than the prompt, YaRN whose ramp falls mid-head, biased router and
experts) is written by `to_gguf` and read back by from_gguf to equal logits; llama.cpp (llama-cpp-python, where
installed, with an F32 KV cache and no flash attention) decodes the file greedily to llmarch's tokens and logits.
A file written the converter's way (write_like_convert_hf_to_gguf, from reading GptOssModel) reads to
transformers' logits, and to_gguf writes it byte for byte. A file with MXFP4 experts (gguf.quants quantizes and
dequantizes them) reads as its dequantized values, and llama.cpp agrees with it. Variants llama.cpp's gpt-oss
cannot run are refused with one line."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import llama_cpp_against

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

# the ramp between dims 2.0 and 4.4 of 8 (original context 4096, base 150000, head 16): llama.cpp floors and
# ceils its ends (transformers' truncate), so a file means truncate true
YARN = {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
        "truncate": True, "original_max_position_embeddings": 4096}
TINY = dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
            max_position_embeddings=16384, rope_parameters=YARN, initializer_range=0.1, eos_token_id=2)


def tiny(tmp_path, **changes):
    """The random model as llmarch reads it from a Hugging Face directory; biases, gains and sinks perturbed and
    the router sharpened (as test_gpt_oss_parity's), weights of 0.1 so that logits spread over a few units."""
    torch.manual_seed(0)
    hf = transformers.GptOssForCausalLM(transformers.GptOssConfig(**{**TINY, **changes}))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1 or name.endswith("_bias"):
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("sinks"):
                p.normal_(0, 2.0)
            if name.endswith("router.weight"):
                p.mul_(5.0)
    hf.save_pretrained(tmp_path / "hf")
    return llmarch.from_hf(tmp_path / "hf")


def llama_cpp_agrees(model, path, prompt: list[int], tol: float) -> None:
    """llama.cpp's greedy tokens on the file are `model`'s, its logits within tol of `model`'s."""
    seq, ours, apart = llama_cpp_against(path, model, prompt, exact=True)
    assert apart <= tol and ours == seq


def test_round_trip_and_llama_cpp(tmp_path):
    model = tiny(tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("gpt-oss.")}
    assert fields["gpt-oss.rope.scaling.type"] == "yarn" and fields["gpt-oss.rope.scaling.factor"] == 4.0
    assert fields["gpt-oss.rope.scaling.original_context_length"] == 4096
    assert fields["gpt-oss.attention.sliding_window"] == 4 and fields["gpt-oss.expert_feed_forward_length"] == 64
    shapes = {t.name: (t.tensor_type.name, [int(n) for n in reversed(t.shape)]) for t in reader.tensors}
    assert shapes["blk.0.attn_sinks.weight"] == ("F32", [4])
    for kind, shape in (("gate", [4, 64, 64]), ("up", [4, 64, 64]), ("down", [4, 64, 64])):
        assert shapes[f"blk.1.ffn_{kind}_exps.weight"] == ("F32", shape)
        assert shapes[f"blk.1.ffn_{kind}_exps.bias"] == ("F32", [4, 64])
    assert shapes["blk.0.ffn_gate_inp.bias"] == ("F32", [4])
    back = llmarch.from_gguf(path)
    assert back.config.hf_model_type == "gpt_oss" and back.config.rope_scaling == "yarn"
    assert [type(b.attn.kind).__name__ for b in back.blocks] == ["SlidingWindowKind", "Full"]
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4
    # ggml's gate and up rows are llmarch's: expert 3's gate row 5 and up row 7 of block 0 (gates first in ours)
    data = {t.name: np.asarray(t.data) for t in reader.tensors}
    ours = model.blocks[0].mlp.experts.gate_up.detach().numpy()
    assert np.array_equal(data["blk.0.ffn_gate_exps.weight"][3, 5], ours[3, 5])
    assert np.array_equal(data["blk.0.ffn_up_exps.weight"][3, 7], ours[3, 64 + 7])
    llama_cpp_agrees(model, path, ids[0, :8].tolist(), 1e-4)


def write_like_convert_hf_to_gguf(hf, path) -> None:
    """convert_hf_to_gguf.py's GptOssModel on a dequantized checkpoint, as far as these configs need:
    TextModel.set_gguf_parameters' keys (YaRN's type, factor, original context, betas) and its own (window,
    expert width); modify_tensors: `sinks` named `.weight`, gate_up_proj's even and odd columns transposed to
    ffn_gate_exps and ffn_up_exps, its bias likewise, down_proj transposed, down_proj_bias as down_proj.bias."""
    c, rope = hf.config, hf.config.rope_parameters
    w = gguf.GGUFWriter(str(path), "gpt-oss")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(rope["factor"])
    w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    w.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
    w.add_rope_scaling_yarn_beta_slow(rope["beta_slow"])
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_expert_count(c.num_local_experts)
    w.add_expert_used_count(c.num_experts_per_tok)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_sliding_window(c.sliding_window)
    w.add_expert_feed_forward_length(c.intermediate_size)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT_OSS, c.num_hidden_layers)
    names = lambda name: name_map.get_name(name, try_suffixes=(".weight", ".bias"))  # noqa: E731
    for name, t in hf.state_dict().items():
        t = t.float()
        if name.endswith("sinks"):
            name += ".weight"
        if name.endswith("down_proj_bias"):
            name = name.replace("down_proj_bias", "down_proj.bias")
        elif name.endswith("down_proj"):
            name, t = name + ".weight", t.transpose(-1, -2)
        if "gate_up_proj" in name:  # the even columns are the gate's, the odd ones the up projection's
            bias = name.endswith("_bias")
            for part, half in (("gate_proj", t[..., ::2]), ("up_proj", t[..., 1::2])):
                part = name.removesuffix("_bias").replace("gate_up_proj", part) + (".bias" if bias else ".weight")
                w.add_tensor(names(part), (half if bias else half.transpose(-1, -2)).contiguous().numpy())
            continue
        w.add_tensor(names(name), t.contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_converter_style_file_reads_as_transformers_and_to_gguf_writes_it(tmp_path):
    """A file written the converter's way reads to transformers' logits; to_gguf writes the same tensors, byte
    for byte, and the same keys (and two more, rope.dimension_count and vocab_size, that llama.cpp defaults)."""
    model = tiny(tmp_path)
    hf = transformers.GptOssForCausalLM.from_pretrained(tmp_path / "hf").eval()
    write_like_convert_hf_to_gguf(hf, tmp_path / "theirs.gguf")
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (llmarch.from_gguf(tmp_path / "theirs.gguf")(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    to_gguf(model, tmp_path / "ours.gguf", "f32")
    theirs, ours = (gguf.GGUFReader(str(tmp_path / f"{who}.gguf")) for who in ("theirs", "ours"))
    keys = {k: f.contents() for k, f in theirs.fields.items() if k.startswith("gpt-oss.")}
    mine = {k: f.contents() for k, f in ours.fields.items() if k.startswith("gpt-oss.")}
    assert {k: mine[k] for k in keys} == keys and set(mine) - set(keys) == {"gpt-oss.rope.dimension_count",
                                                                          "gpt-oss.vocab_size"}
    tensors = {t.name: (t.tensor_type, np.asarray(t.data)) for t in theirs.tensors}
    assert sorted(tensors) == sorted(t.name for t in ours.tensors)
    for t in ours.tensors:
        assert t.tensor_type == tensors[t.name][0] and np.array_equal(np.asarray(t.data), tensors[t.name][1]), t.name


def test_tied_head_without_yarn(tmp_path):
    """llama.cpp's gpt-oss requires output.weight: a tied head goes out as a copy of the embedding and reads back
    tied; plain RoPE writes no scaling keys."""
    model = tiny(tmp_path, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e4})
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert {"output.weight", "token_embd.weight"} <= {t.name for t in reader.tensors}
    assert "gpt-oss.rope.scaling.type" not in reader.fields
    back = llmarch.from_gguf(path)
    assert back.config.tie_embeddings and back.config.rope_scaling == "none"
    ids = torch.arange(40, 56)[None]
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4
    llama_cpp_agrees(model, path, ids[0, :8].tolist(), 1e-4)


@pytest.mark.parametrize("dtype,experts", [("mxfp4", "MXFP4"), ("q8_0", "Q8_0")])
def test_quantized_experts_read_as_llama_cpp_runs_them(dtype, experts, tmp_path):
    """MXFP4 experts (the published gpt-oss files': 32 E2M1 values and a power-of-two scale a block; the rest
    F16, file type MOSTLY_MXFP4_MOE) or Q8_0: the experts read back as their dequantized blocks, split and
    transposed back, and llama.cpp's logits on the file are from_gguf's within its own activation rounding
    (it multiplies MXFP4 and Q8_0 blocks by Q8_0-quantized activations; measured: 0.05 and 0.07 on a scale of 3;
    a misread block, nibble or split costs whole units)."""
    model = tiny(tmp_path)
    path = tmp_path / f"{dtype}.gguf"
    to_gguf(model, path, dtype, ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert {types[f"blk.0.ffn_{k}_exps.weight"] for k in ("gate", "up", "down")} == {experts}
    assert types["blk.0.ffn_gate_exps.bias"] == types["blk.0.ffn_gate_inp.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == ("F16" if dtype == "mxfp4" else "Q8_0")
    back = llmarch.from_gguf(path)
    kind = getattr(gguf.GGMLQuantizationType, experts)
    for i in range(2):  # (E, C, I) as ggml stores it, through the package's own block round trip
        down = model.blocks[i].mlp.experts.down.detach().numpy()
        want = gguf.quants.dequantize(gguf.quants.quantize(down, kind), kind)
        assert np.array_equal(back.blocks[i].mlp.experts.down.detach().numpy(), want)
    torch.manual_seed(1)
    prompt = torch.randint(0, 256, (8,)).tolist()
    llama_cpp_agrees(back, path, prompt, 0.1)
    if dtype == "q8_0":  # on llmarch's int8 kernels, experts (biases and all) included; measured 0.11 of 2.9
        from llmarch.quant.experts import QuantExperts

        kernels = llmarch.from_gguf(path, kernels=True)
        assert all(isinstance(b.mlp.experts, QuantExperts) for b in kernels.blocks)
        ids = torch.tensor([prompt])
        with torch.no_grad():
            want, got = back(ids).logits, kernels(ids).logits
        assert 0 < (want - got).abs().max() < 0.06 * want.abs().max()


@pytest.mark.parametrize("changes,problem", [
    (dict(rope_parameters=dict(YARN, truncate=False)), "rope_truncate=False"),  # llama.cpp floors and ceils
    (dict(swiglu_limit=5.0), "swiglu_limit=5.0"),  # llama.cpp's limit and alpha are constants
    (dict(num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention", "full_attention"]),
     "layer_types="),  # llama.cpp slides on even layers only
    (dict(layer_types=["full_attention", "full_attention"]), "no sliding layer"),
])
def test_to_gguf_refuses_what_llama_cpp_would_run_otherwise(changes, problem, tmp_path):
    model = tiny(tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_refused_yarn_knobs_and_mxfp4_without_experts(tmp_path):
    """A file with YaRN's attention factor (llama.cpp multiplies it into its own 1 + 0.1 ln s; transformers'
    replaces that) is refused on reading, as is MXFP4 for a model with no experts on writing."""
    w = gguf.GGUFWriter(str(tmp_path / "a.gguf"), "gpt-oss")
    for key, value in (("block_count", 2), ("embedding_length", 64), ("feed_forward_length", 64),
                       ("context_length", 64), ("attention.head_count", 4), ("vocab_size", 272)):
        w.add_uint32(f"gpt-oss.{key}", value)
    w.add_float32("gpt-oss.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(4.0)
    w.add_rope_scaling_yarn_attn_factor(0.8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(LlmarchError, match="yarn_attn_factor is not supported"):
        llmarch.from_gguf(tmp_path / "a.gguf")
    dense = llmarch.build("llama-tiny", vocab_size=272, n_layers=1, d_model=64, n_heads=4, ffn_hidden=64)
    with pytest.raises(LlmarchError, match="no experts"):
        to_gguf(dense, tmp_path / "b.gguf", "mxfp4", ByteTokenizer())


def test_yarn_is_read_and_written_for_other_architectures_too(tmp_path):
    """YaRN's keys are TextModel's, not gpt-oss's: a Qwen2 with YaRN goes out as qwen2 with them and llama.cpp runs
    it as llmarch does (measured 1.6e-6 on a scale of 3.4)."""
    torch.manual_seed(0)
    conf = transformers.Qwen2Config(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
                                    tie_word_embeddings=False, initializer_range=0.1, rope_parameters=YARN)
    transformers.Qwen2ForCausalLM(conf).save_pretrained(tmp_path / "hf")
    model = llmarch.from_hf(tmp_path / "hf")
    to_gguf(model, tmp_path / "q.gguf", "f32", ByteTokenizer())
    back = llmarch.from_gguf(tmp_path / "q.gguf")
    assert (back.config.rope_scaling, back.config.rope_factor, back.config.rope_original_context) == \
        ("yarn", 4.0, 4096)
    llama_cpp_agrees(model, tmp_path / "q.gguf", list(range(40, 48)), 1e-4)
