"""GGUF `granite` in and out, as convert_hf_to_gguf.py's GraniteModel writes it: LLaMA's tensors (q and k permuted)
and keys, with Granite's four scalars as granite.embedding_scale, granite.attention.scale, granite.residual_scale and
granite.logit_scale. A tiny random Granite (from a transformers config, scalars far from 1, 1-D parameters perturbed,
through from_hf) is written by to_gguf with llmarch's byte tokenizer, read back by from_gguf to equal logits (F32,
max |dlogit| <= 1e-4), and llama.cpp (llama-cpp-python 0.3.36, where installed) decodes the file greedily to
llmarch's tokens with llmarch's logits; what llama.cpp would compute otherwise is refused before a file is left."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
             embedding_multiplier=12.0, attention_multiplier=0.0625, residual_multiplier=0.22, logits_scaling=8.0,
             initializer_range=0.1)  # weights of 0.1: logits up to ~0.9, on which a scalar left out moves them >= 0.03


def written(model, tmp_path):
    """`model` written as an F32 GGUF with llmarch's byte tokenizer: (its path, the gguf package's reader of it)."""
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    return path, gguf.GGUFReader(str(path))


def tiny(tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.GraniteForCausalLM(transformers.GraniteConfig(**{**SMALL, **changes}))
    return perturbed_from_hf(hf, tmp_path / "hf")


# tied (Granite 3.x), no biases; untied with biases on q, k, v, o and the MLP and linear RoPE scaling
@pytest.mark.parametrize("changes", [dict(tie_word_embeddings=True),
                                     dict(attention_bias=True, mlp_bias=True,
                                          rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e5})],
                         ids=["tied", "biased-untied-linear-rope"])
def test_gguf_round_trip_and_llama_cpp(changes, tmp_path):
    model = tiny(tmp_path, **changes)
    path, reader = written(model, tmp_path)
    assert reader.fields["general.architecture"].contents() == "granite"
    keys = {k: reader.fields[f"granite.{k}"].contents() for k in ("embedding_scale", "attention.scale",
                                                                  "residual_scale", "logit_scale")}
    assert keys == pytest.approx({"embedding_scale": 12.0, "attention.scale": 0.0625, "residual_scale": 0.22,
                                  "logit_scale": 8.0})
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) == (not model.config.tie_embeddings)
    assert ("blk.0.attn_q.bias" in names) == ("blk.0.ffn_down.bias" in names) == model.config.bias
    # llama.cpp: measured 1.8e-7 (tied) and 1.2e-7 apart, on logits up to 0.91; with any one scalar left at 1 in
    # llmarch's model they are 0.04 (attention) to 5.9 (logits) apart
    cfg, want = gguf_reads_back(path, model).config, model.config  # (to_gguf has checked every field reads back)
    assert (cfg.hf_model_type, cfg.bias, cfg.tie_embeddings, cfg.rope_scaling) == \
        ("granite", want.bias, want.tie_embeddings, want.rope_scaling)


def test_llmarchs_default_attention_scale_is_written_out(tmp_path):
    model = llmarch.build("llama-tiny", n_layers=1, d_model=64, n_heads=4, vocab_size=272, ffn_hidden=96,
                          hf_model_type="granite", logit_divisor=2.0)
    to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert llmarch.from_gguf(tmp_path / "x.gguf").config.attn_scale == pytest.approx(16 ** -0.5)


@pytest.mark.parametrize("changes,problem", [
    (dict(head_dim=24), "head_dim = d_model / n_heads"),  # GraniteModel drops head_dim
    (dict(hidden_act="gelu"), "ffn='swiglu'"),  # llama.cpp's granite gates with SiLU
])
def test_to_gguf_refuses_what_llama_cpp_would_read_otherwise(changes, problem, tmp_path):
    model = tiny(tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


class _Field:
    def __init__(self, value):
        self.value = value

    def contents(self):
        return self.value


class _Reader:  # the metadata a Meta reads, without a file
    def __init__(self, **keys):
        self.fields = {f"granite.{k.replace('__', '.')}": _Field(v) for k, v in keys.items()}
        self.tensors = []


def _read(**keys):
    from llmarch.interop.gguf_archs import Meta
    from llmarch.interop.gguf_archs.granite import ARCHS

    return ARCHS["granite"].fields({"head_dim": 16}, Meta(_Reader(**keys), "granite", "x.gguf"))


def test_missing_scalars_read_as_llama_cpp_takes_them():
    hf = _read(logit_scale=8.0, residual_scale=0.0)  # 0 is llama.cpp's "not set" too
    assert (hf["attention_multiplier"], hf["embedding_multiplier"], hf["residual_multiplier"], hf["logits_scaling"]) \
        == (0.25, 1.0, 1.0, 8.0)
    with pytest.raises(LlmarchError, match="lacks granite.logit_scale"):  # llama.cpp requires it
        _read()
    with pytest.raises(LlmarchError, match="Granite MoE"):
        _read(logit_scale=1.0, expert_count=4)
    with pytest.raises(LlmarchError, match="without RoPE"):
        _read(logit_scale=1.0, rope__scaling__finetuned=False)


def test_granite_moe_gguf_round_trip_and_llama_cpp(tmp_path):
    """Granite MoE as llama.cpp's granitemoe: input_linear split into ffn_gate_exps and ffn_up_exps (gate rows
    first), output_linear as ffn_down_exps, the router as ffn_gate_inp, the expert counts and the four scalars;
    read back to equal logits, and decoded by llama.cpp (where installed) to llmarch's tokens."""
    fields = {k: v for k, v in SMALL.items() if k != "intermediate_size"}
    torch.manual_seed(0)
    hf = transformers.GraniteMoeForCausalLM(transformers.GraniteMoeConfig(
        **fields, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=True))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    path, reader = written(model, tmp_path)
    assert reader.fields["general.architecture"].contents() == "granitemoe"
    assert (reader.fields["granitemoe.expert_count"].contents(), reader.fields["granitemoe.logit_scale"].contents()) \
        == (4, 8.0)
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    assert shapes["blk.0.ffn_gate_exps.weight"] == shapes["blk.0.ffn_up_exps.weight"] == (64, 48, 4)  # ggml's order
    assert shapes["blk.0.ffn_down_exps.weight"] == (48, 64, 4) and shapes["blk.0.ffn_gate_inp.weight"] == (64, 4)
    cfg = gguf_reads_back(path, model).config
    assert (cfg.hf_model_type, cfg.n_experts, cfg.experts_per_token) == ("granitemoe", 4, 2)


HYBRID = dict(vocab_size=272, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=48, shared_intermediate_size=96, num_local_experts=4, num_experts_per_tok=2,
              embedding_multiplier=12.0, attention_multiplier=0.0625, residual_multiplier=0.22, logits_scaling=8.0,
              initializer_range=0.1, bos_token_id=1, eos_token_id=2, layer_types=["mamba", "attention", "mamba"],
              position_embedding_type="nope", mamba_n_heads=8, mamba_n_groups=2, mamba_d_state=16, mamba_d_conv=4,
              mamba_expand=2, mamba_chunk_size=8, tie_word_embeddings=True, max_position_embeddings=128)


@pytest.mark.parametrize("experts,shared", [(4, 96), (0, 96), (4, 100)], ids=["moe", "dense", "moe-shared-100"])
def test_granite_hybrid_gguf_round_trip_and_llama_cpp(experts, shared, tmp_path):
    """Granite 4.0 as llama.cpp's granitehybrid: Mamba-2 and attention layers told apart by the per-layer KV-head
    count, RoPE switched off, the shared MLP as shared-expert tensors beside experts or as the dense FFN's; read
    back to equal logits and decoded by llama.cpp (where installed) to llmarch's tokens; a shared MLP whose width is
    not a multiple of the experts' too."""
    torch.manual_seed(0)
    hf = transformers.GraniteMoeHybridForCausalLM(transformers.GraniteMoeHybridConfig(
        **{**HYBRID, "num_local_experts": experts, "shared_intermediate_size": shared}))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    path, reader = written(model, tmp_path)
    assert reader.fields["general.architecture"].contents() == "granitehybrid"
    assert list(reader.fields["granitehybrid.attention.head_count_kv"].contents()) == [0, 2, 0]
    assert reader.fields["granitehybrid.rope.scaling.finetuned"].contents() is False
    names = {t.name for t in reader.tensors}
    assert {"blk.0.ssm_in.weight", "blk.1.attn_q.weight"} <= names and "blk.1.ssm_in.weight" not in names
    shexp = {"blk.0.ffn_gate_shexp.weight", "blk.0.ffn_down_shexp.weight"}
    assert shexp <= names if experts else ("blk.0.ffn_gate.weight" in names and not shexp & names)
    cfg = gguf_reads_back(path, model).config
    assert [cfg.layer_mixer(i) for i in range(3)] == ["mamba2", "attention", "mamba2"]
    assert (cfg.hf_model_type, cfg.n_experts, cfg.positions) == ("granitemoehybrid", experts, "none")
    assert cfg.shared_hidden == (shared if experts else 0)  # a shared MLP of 100 beside experts of 48: its own width
