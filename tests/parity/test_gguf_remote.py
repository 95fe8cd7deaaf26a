"""GGUF architectures of decoders that transformers runs only as remote code, checked against llama.cpp: a tiny random
llmarch model of the family (built from the remote code's config.json fields, 1-D parameters perturbed, matrices
scaled so the logits reach ~3) is written in F32 by `to_gguf` with llmarch's byte tokenizer; it reads back by
from_gguf to the model's logits (max |dlogit| <= 1e-4), and llama.cpp (llama-cpp-python 0.3.36, where installed)
decodes it greedily to llmarch's tokens with llmarch's logits at every position within 1e-4 (gguf_reads_back);
cached decoding over a left-padded batch equals the whole forward; the config.json written by to_hf reads back to the
same model.

- deci (NVIDIA's Llama-3.x-Nemotron NAS models, llmarch's nemotron-nas): layers of grouped-query attention with their
  own key/value heads, a single matrix in place of attention, no attention, FFNs of their own widths;
- openelm (Apple OpenELM): query heads, key/value heads and FFN widths per layer (layer-wise scaling), per-head
  q/k RMSNorms, q, k, v fused and gate|up fused (split for llama.cpp), a tied head;
- pangu-embedded (Huawei openPangu-Embedded): LLaMA with biases on q, k, v and o."""

import pytest

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf
from llmarch.interop.hf import hf_model_config

from conftest import gguf_reads_back, gguf_written_and_decoded, scaled

gguf = pytest.importorskip("gguf")


def _block(group=None, linear=False, no_op=False, ffn_mult=1.0, no_ffn=False):
    return {"attention": {"n_heads_in_group": group, "replace_with_linear": linear, "no_op": no_op},
            "ffn": {"ffn_mult": None if no_ffn else ffn_mult, "no_op": no_ffn}}


# grouped-query attention of 2 then 1 key/value heads, a projection in place of attention, a layer without attention,
# an empty layer (Ultra-253B's); FFNs 256 and 512 wide (ffn_mult 1 and 7 of d = 64, rounded up to multiples of 256)
NAS_BLOCKS = [_block(group=2), _block(linear=True, ffn_mult=7.0), _block(no_op=True), _block(no_op=True, no_ffn=True),
              _block(group=4, ffn_mult=7.0)]
NAS = dict(model_type="nemotron-nas", architectures=["DeciLMForCausalLM"], vocab_size=272, hidden_size=64,
           num_hidden_layers=5, num_attention_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5,
           hidden_act="silu", tie_word_embeddings=False, eos_token_id=2, block_configs=NAS_BLOCKS,
           rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})


def test_deci_gguf_and_llama_cpp(tmp_path):
    cfg = hf_model_config(NAS)
    assert cfg.layer_types == ["kv2.ffn256", "linear.ffn512", "none.ffn256", "none.none", "kv1.ffn512"]
    assert cfg.layer_overrides == {"linear.ffn512": {"mixer": "projection", "ffn_hidden": 512},
                                   "none.ffn256": {"mixer": "none"}, "none.none": {"mixer": "none", "ffn": "none"},
                                   "kv1.ffn512": {"n_kv_heads": 1, "ffn_hidden": 512}}
    model = scaled(cfg)
    # llama.cpp: measured 2.5e-6 apart on logits up to 4; with the projection's matrix zeroed in llmarch's model (the
    # file's kept), 3.3 apart
    reader, hf = gguf_written_and_decoded(model, tmp_path)
    keys = {k: reader.fields[f"deci.{k}"].contents() for k in ("attention.head_count", "attention.head_count_kv",
                                                              "feed_forward_length")}
    assert keys == {"attention.head_count": [4, 4, 0, 0, 4], "attention.head_count_kv": [2, 0, 0, 0, 1],
                    "feed_forward_length": [256, 512, 256, 0, 512]}
    names = {t.name for t in reader.tensors}
    assert "blk.1.attn_output.weight" in names and "blk.1.attn_q.weight" not in names
    assert "blk.2.attn_norm.weight" not in names and "rope_freqs.weight" in names
    assert not any(name.startswith("blk.3.") for name in names)
    assert [b["attention"]["n_heads_in_group"] for b in hf["block_configs"]] == [2, None, None, None, 4]


def test_deci_file_with_one_head_count_and_width(tmp_path):
    """DeciLM-7B's file: one attention.head_count and one feed_forward_length for every layer (its key/value heads per
    layer): it reads as the same model, and llama.cpp decodes it as llmarch does."""
    from test_gguf_older import rewrite

    T = gguf.GGUFValueType
    blocks = [_block(group=2), _block(group=4)]
    model = scaled(hf_model_config({**NAS, "num_hidden_layers": 2, "block_configs": blocks}))
    to_gguf(model, tmp_path / "arrays.gguf", "f32", ByteTokenizer())
    rewrite(tmp_path / "arrays.gguf", tmp_path / "x.gguf", "deci", drop={"deci.attention.head_count",
                                                                         "deci.feed_forward_length"},
            extra={"deci.attention.head_count": (4, T.UINT32), "deci.feed_forward_length": (256, T.UINT32)})
    assert gguf.GGUFReader(str(tmp_path / "x.gguf")).fields["deci.attention.head_count"].contents() == 4
    back = gguf_reads_back(tmp_path / "x.gguf", model)  # llama.cpp: measured 1.7e-6 apart
    assert (back.config.layer_types, back.config.layer_overrides) == (["kv2.ffn256", "kv1.ffn256"],
                                                                      {"kv1.ffn256": {"n_kv_heads": 1}})


@pytest.mark.parametrize("change,problem", [
    (dict(block_configs=[_block(group=2), _block(group=2, no_ffn=True)]), "has attention and no FFN"),
    (dict(block_configs=[_block(group=2), {"attention": {"n_heads_in_group": 2, "window_length": 64},
                                           "ffn": {"ffn_mult": 1.0}}]), "window_length is not supported"),
], ids=["attention-without-ffn", "window"])
def test_deci_refusals(change, problem, tmp_path):
    """What llama.cpp's deci graph computes otherwise (it drops a lone attention's output) is refused by GGUF out and
    in; what llmarch does not build, when config.json asks for it."""
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(llmarch.build(hf_model_config({**NAS, "num_hidden_layers": 2, **change})),
                tmp_path / "x.gguf", "f32")
    assert not (tmp_path / "x.gguf").exists()


# layer-wise scaling: query heads 4, 4, 6 with 1, 2, 3 key/value heads; FFN multipliers 0.5 to 4 over the layers (0.5,
# 2.25, 4 x 64 made divisible by 64: widths 64, 192, 256)
ELM = dict(model_type="openelm", architectures=["OpenELMForCausalLM"], vocab_size=272, model_dim=64,
           num_transformer_layers=3, head_dim=16, num_query_heads=[4, 4, 6], num_kv_heads=[1, 2, 3],
           ffn_multipliers=[0.5, 4.0], ffn_dim_divisor=64, rope_freq_constant=10000, max_context_length=128,
           eos_token_id=2)


def test_openelm_gguf_and_llama_cpp(tmp_path):
    cfg = hf_model_config(ELM)
    assert cfg.layer_types == ["q4.kv1.ffn64", "q4.kv2.ffn192", "q6.kv3.ffn256"] and cfg.qk_norm == "head"
    model = scaled(cfg)
    # llama.cpp: measured 2.4e-6 apart on logits up to 3.2; with gate and up swapped in the file (both ways, so it
    # still reads back), 2.3 apart
    reader, hf = gguf_written_and_decoded(model, tmp_path)
    keys = {k: reader.fields[f"openelm.{k}"].contents() for k in ("attention.head_count", "attention.head_count_kv",
                                                                 "feed_forward_length")}
    assert keys == {"attention.head_count": [4, 4, 6], "attention.head_count_kv": [1, 2, 3],
                    "feed_forward_length": [64, 192, 256]}
    names = {t.name for t in reader.tensors}
    assert {"blk.2.attn_qkv.weight", "blk.2.attn_q_norm.weight", "blk.2.ffn_gate.weight"} <= names
    assert "output.weight" not in names
    assert hf["num_query_heads"] == [4, 4, 6] and hf["ffn_dim_divisor"] == 64


def test_openelm_untied_is_refused(tmp_path):
    with pytest.raises(LlmarchError, match="share_input_output_layers"):
        hf_model_config({**ELM, "share_input_output_layers": False})


PANGU = dict(model_type="PanguEmbedded", architectures=["PanguEmbeddedForCausalLM"], vocab_size=272, hidden_size=64,
             intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=1.6e7, bias=True, tie_word_embeddings=False,
             eos_token_id=2)


def test_pangu_embedded_gguf_and_llama_cpp(tmp_path):
    cfg = hf_model_config(PANGU)
    assert (cfg.qkv_bias, cfg.o_bias, cfg.bias) == (True, True, False)
    model = scaled(cfg)
    # llama.cpp: measured 1.5e-6 apart on logits up to 3.5 (1.2e-6 tied); with o_proj's bias zeroed in llmarch's
    # model (the file's kept), 2.7 apart
    reader, hf = gguf_written_and_decoded(model, tmp_path)
    names = {t.name for t in reader.tensors}
    assert {"blk.1.attn_q.bias", "blk.1.attn_output.bias", "output.weight"} <= names
    assert "blk.1.ffn_down.bias" not in names and hf["bias"] is True and "attention_bias" not in hf


def test_pangu_embedded_without_biases_is_refused(tmp_path):
    with pytest.raises(LlmarchError, match="adds q, k, v and o biases"):
        to_gguf(llmarch.build(hf_model_config({**PANGU, "bias": False})), tmp_path / "x.gguf", "f32")
