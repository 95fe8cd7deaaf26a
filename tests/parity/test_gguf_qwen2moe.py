"""GGUF in and out for Qwen2-MoE (GGUF `qwen2moe`): a tiny random transformers Qwen2Moe (q/k/v biases, experts
narrower than the sigmoid-gated shared expert) written by `to_gguf` reads back to equal logits (F32, max |dlogit|
<= 1e-4), and llama.cpp (llama-cpp-python, where installed) decodes the file greedily to llmarch's tokens with
llmarch's logits; a file written independently here by convert_hf_to_gguf.py's rules (Qwen2MoeModel) reads as
transformers' model; a Q8_0 file keeps the router and the shared gate F32; what llama.cpp cannot represent is
refused in one line."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf
from llmarch.interop.hf import FAMILIES

from conftest import gguf_reads_back, llama_cpp_against
from test_qwen2_moe import perturb

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

CONFIG = dict(vocab_size=272, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=96, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
              shared_expert_intermediate_size=64, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
CASES = {
    "qwen1.5": dict(),  # shared expert twice an expert's width, q/k/v biases, an untied head
    "tied": dict(tie_word_embeddings=True, qkv_bias=False, rope_theta=1e6, shared_expert_intermediate_size=96),
}


def hf_model(**changes):
    torch.manual_seed(0)
    return perturb(transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(**{**CONFIG, **changes})).eval())


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    hf_model(**CASES[case]).save_pretrained(tmp_path / "hf")
    model = llmarch.from_hf(tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    key = lambda k: reader.fields[f"qwen2moe.{k}"].contents()  # noqa: E731
    shared = CASES[case].get("shared_expert_intermediate_size", 64)
    assert [key(k) for k in ("expert_count", "expert_used_count", "expert_feed_forward_length",
                             "expert_shared_feed_forward_length")] == [4, 2, 32, shared]
    names = {t.name for t in reader.tensors}
    assert {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_gate_inp_shexp.weight", "blk.1.ffn_down_shexp.weight"} <= names
    assert ("blk.0.attn_q.bias" in names) == (case == "qwen1.5")
    assert "output.weight" in names  # llama.cpp's qwen2moe requires it: a tied head is written as a copy
    back = gguf_reads_back(path, model, exact=False, apart=1e-3)
    assert (back.config.n_shared_experts, back.config.qkv_bias, back.config.tie_embeddings) == \
        (shared // 32, case == "qwen1.5", case == "tied")


def write_like_converter(hf, path, widths: bool = True) -> None:
    """convert_hf_to_gguf.py's Qwen2MoeModel on the model's tensors, written here independently of to_gguf:
    TextModel's keys and the expert ones (without the two widths unless `widths`); transformers 5's stacked
    gate_up_proj (E, 2I, C) split into gate and up; the shared expert's gate (1, C) as it is."""
    from llmarch.interop.gguf_tokenizer import write_tokenizer
    from llmarch.interop.gguf_writer import _writer_class

    c = hf.config
    w = _writer_class()(str(path), "qwen2moe")
    write_tokenizer(w, ByteTokenizer(), c.vocab_size)
    for add, value in ((w.add_context_length, c.max_position_embeddings), (w.add_embedding_length, c.hidden_size),
                       (w.add_block_count, c.num_hidden_layers), (w.add_feed_forward_length, c.intermediate_size),
                       (w.add_head_count, c.num_attention_heads), (w.add_head_count_kv, c.num_key_value_heads),
                       (w.add_rope_freq_base, c.rope_parameters["rope_theta"]),
                       (w.add_layer_norm_rms_eps, c.rms_norm_eps), (w.add_expert_count, c.num_experts),
                       (w.add_expert_used_count, c.num_experts_per_tok)):
        add(value)
    if widths:
        w.add_expert_feed_forward_length(c.moe_intermediate_size)
        w.add_expert_shared_feed_forward_length(c.shared_expert_intermediate_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2MOE, c.num_hidden_layers)
    for name, t in hf.state_dict().items():
        if name.endswith("experts.gate_up_proj"):
            for kind, part in zip(("gate_proj", "up_proj"), t.chunk(2, dim=1)):
                w.add_tensor(names.get_name(name.replace("gate_up_proj", kind)) + ".weight", part.numpy())
            continue
        if name.endswith("experts.down_proj"):
            name += ".weight"
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.float().contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("widths", [True, False], ids=["widths", "llama.cpp-defaults"])
def test_converter_style_file_is_transformers_model(widths, tmp_path):
    """Read as transformers' model; llama.cpp decodes it to the same greedy tokens. Without the width keys both
    take llama.cpp's defaults: the experts feed_forward_length / expert_used_count wide, the shared expert
    feed_forward_length (a model whose widths are those: 64 / 2 and 64)."""
    hf = hf_model(intermediate_size=64)
    path = tmp_path / "theirs.gguf"
    write_like_converter(hf, path, widths)
    assert ("qwen2moe.expert_feed_forward_length" in gguf.GGUFReader(str(path)).fields) == widths
    ours = llmarch.from_gguf(path)
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    seq, mine, apart = llama_cpp_against(path, ours, ids[0, :8].tolist())
    assert apart <= 1e-3 and mine == seq


def test_quantized_file_keeps_router_and_shared_gate_f32(tmp_path):
    """A Q8_0 file: the router, the shared expert's gate and the norms stay F32, the projections and experts are
    Q8_0; llmarch reads it close to the model, and llama.cpp's greedy tokens are llmarch's on the same file."""
    model = llmarch.build(FAMILIES["qwen2_moe"].to_config(transformers.Qwen2MoeConfig(**CONFIG).to_dict()))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, 0.4 if name.endswith(("router.weight", "shared_gate.weight")) else 0.08)
    path = tmp_path / "q8.gguf"
    to_gguf(model, path, "q8_0", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert {types[f"blk.0.{k}.weight"] for k in ("ffn_gate_inp", "ffn_gate_inp_shexp", "attn_norm")} == {"F32"}
    assert {types[f"blk.0.{k}.weight"] for k in ("attn_q", "ffn_gate_exps", "ffn_up_shexp")} == {"Q8_0"}
    back = llmarch.from_gguf(path)
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        want = model(ids).logits
        assert (back(ids).logits - want).abs().max() < 0.05 * want.abs().max()
    seq, ours, apart = llama_cpp_against(path, back, ids[0, :8].tolist())
    assert apart <= 0.05 * want.abs().max() and ours == seq


@pytest.mark.parametrize("changes,problem", [
    (dict(norm_topk_prob=True), "does not renormalise"),  # llama.cpp's graph: build_moe_ffn with norm_w false
    (dict(decoder_sparse_step=2), "every layer"),  # llama.cpp requires the router in every layer
    (dict(mlp_only_layers=[0]), "every layer"),
    (dict(num_experts=0), "every layer"),
    (dict(use_sliding_window=True, sliding_window=8, layer_types=["sliding_attention"] * 2), "sliding_window=8"),
])
def test_to_gguf_refuses_what_llama_cpp_cannot_represent(changes, problem, tmp_path):
    cfg = FAMILIES["qwen2_moe"].to_config(transformers.Qwen2MoeConfig(**{**CONFIG, **changes}).to_dict())
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(llmarch.build(cfg), tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
