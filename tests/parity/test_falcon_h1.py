"""Falcon-H1 (`model_type: falcon_h1`) against transformers, through files as the other families' parity tests: a
tiny seeded random FalconH1ForCausalLM (1-D parameters perturbed) whose layers each run attention (GQA, head_dim
apart from hidden / heads) beside Mamba-2 (an inner width mamba_d_ssm that is no multiple of hidden_size, two
groups, chunks of 8), with every muP multiplier away from 1; its Mamba-2 norm absent, before the gate or after it;
with and without biases, tied and untied. Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens
equal to transformers', cached decoding equal to the whole forward, a to_hf round trip that transformers loads
with the same logits and that reads back to the same config."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=24, intermediate_size=96, mamba_d_ssm=96, mamba_n_heads=6, mamba_n_groups=2, mamba_d_state=16,
            mamba_d_conv=4, mamba_chunk_size=8, initializer_range=0.1, bos_token_id=1, eos_token_id=2,
            embedding_multiplier=3.5, lm_head_multiplier=0.4, key_multiplier=0.6, attention_in_multiplier=1.7,
            attention_out_multiplier=0.7, ssm_in_multiplier=1.4, ssm_out_multiplier=0.6,
            mlp_multipliers=[2.2, 0.6], ssm_multipliers=[0.5, 1.9, 0.6, 1.6, 0.4],
            rope_parameters={"rope_type": "default", "rope_theta": 1e4})
CASES = {"no-norm-untied": {},
         "norm-before-gate-tied-biases": dict(mamba_rms_norm=True, mamba_norm_before_gate=True,
                                              tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                                              mamba_proj_bias=True, projectors_bias=True),
         "norm-after-gate": dict(mamba_rms_norm=True, mamba_norm_before_gate=False)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.FalconH1ForCausalLM(transformers.FalconH1Config(**{**BASE, **CASES[case]})).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    norm = {"no-norm-untied": "none", "norm-before-gate-tied-biases": "norm_gate", "norm-after-gate": "gated"}[case]
    assert (cfg.mixer, cfg.ssm_inner, cfg.ssm_head_dim, cfg.ssm_norm, cfg.head_dim) == ("parallel", 96, 16, norm, 24)
    assert cfg.parallel_in_multipliers == [1.7, 1.4] and cfg.logit_divisor == 1 / 0.4
    ids, mask, _ = assert_matches_transformers(hf, ours, "FalconH1ForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    with torch.no_grad():  # a prompt, then one token per step, equals the whole left-padded forward
        full = ours(ids, attention_mask=mask).logits
    steps = stepwise_logits(ours, ids, 14, mask)
    real = mask.bool()
    assert (steps - full)[real].abs().max() < 1e-4


@pytest.mark.parametrize("change,problem", [
    (dict(time_step_limit=[0.0, 10.0]), "time_step_limit"),
    (dict(mamba_proj_bias=True), "mamba_proj_bias .* and projectors_bias"),
    (dict(hidden_act="gelu"), "hidden_act 'gelu'"),
    (dict(mamba_n_heads=5), "mamba_n_heads \\* mamba_d_head"),
    (dict(ssm_multipliers=[1.0, 2.0]), "ssm_multipliers must hold 5"),
])
def test_what_llmarch_cannot_hold_is_named(change, problem):
    with pytest.raises(LlmarchError, match=problem):
        hf_model_config({**BASE, "model_type": "falcon_h1", "mamba_d_head": "auto", **change})


def test_to_hf_refuses_what_falcon_h1_cannot_compute(tmp_path):
    torch.manual_seed(0)
    transformers.FalconH1ForCausalLM(transformers.FalconH1Config(**BASE)).save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    for change, problem in ((dict(parallel_mixers=["attention", "mamba"], ssm_inner=None), "mixer|parallel_mixers"),
                            (dict(residual_multiplier=2.0), "residual_multiplier=1.0"),
                            (dict(o_bias=True), "o_bias equal to qkv_bias")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match=problem):
            to_hf(ours, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        ours.config = from_hf(tmp_path / "hf").config


def test_falcon_h1_sized_shape_counts_as_transformers():
    """A Falcon-H1-0.5B-like shape (36 layers 1024 wide, 8 heads of 64 over 2 KV heads, Mamba-2 of 24 heads of 64
    (d_ssm 1536) and a state of 128, MLP 2048, 32,784 tokens): llmarch's model (built on the meta device) has
    transformers' parameter count."""
    hf = transformers.FalconH1Config(**{
        **BASE, "vocab_size": 32784, "hidden_size": 1024, "num_hidden_layers": 36, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 2048, "mamba_d_ssm": 1536,
        "mamba_n_heads": 24, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 128})
    cfg = hf_model_config({**hf.to_dict(), "model_type": "falcon_h1"})
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        assert ours == transformers.FalconH1ForCausalLM(hf).num_parameters() > 4e8


@pytest.mark.parametrize("norm", [True, False], ids=["gated-norm", "no-norm"])
def test_gguf_round_trip_and_llama_cpp(norm, tmp_path):
    """Falcon-H1 as llama.cpp's falcon-h1: every multiplier folded into the weights as the converter folds them (so
    the file reads back with multipliers of 1 and the same logits), Mamba-2's own inner width in ssm.inner_size;
    decoded by llama.cpp (where installed) to llmarch's greedy tokens with llmarch's logits within 1e-4."""
    gguf = pytest.importorskip("gguf")
    from conftest import gguf_reads_back
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    torch.manual_seed(0)
    config = transformers.FalconH1Config(**{**BASE, "vocab_size": 272, "mamba_rms_norm": norm,
                                            "mamba_norm_before_gate": False})
    model = perturbed_from_hf(transformers.FalconH1ForCausalLM(config), tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    fields = {k: f.contents() for k, f in gguf.GGUFReader(str(path)).fields.items()}
    assert fields["general.architecture"] == "falcon-h1" and fields["falcon-h1.ssm.inner_size"] == 96
    cfg = gguf_reads_back(path, model).config
    assert (cfg.ssm_norm, cfg.parallel_out_multipliers, cfg.embed_multiplier) == ("gated" if norm else "none",
                                                                                   [1.0, 1.0], 1.0)


@pytest.mark.parametrize("change,problem", [
    (dict(mamba_rms_norm=True), "ssm_norm 'gated' or 'none'"),  # the norm before the gate (the config's default)
    (dict(tie_word_embeddings=True), "an untied head"),
    (dict(attention_bias=True), "no attention or Mamba-2 projection biases"),
])
def test_to_gguf_refuses_what_llama_cpp_computes_otherwise(change, problem, tmp_path):
    pytest.importorskip("gguf")
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    torch.manual_seed(0)
    transformers.FalconH1ForCausalLM(transformers.FalconH1Config(**{**BASE, **change})).save_pretrained(tmp_path / "hf")
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(from_hf(tmp_path / "hf"), tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


def test_info_reports_the_attention_parts_kv_heads(tmp_path, capsys):
    """`llmarch info` on a model whose layers run attention beside Mamba-2 names the attention's heads, KV heads
    included: the parallel mixer's attention part holds the KV cache."""
    from llmarch.cli import main

    transformers.FalconH1Config(**BASE).save_pretrained(tmp_path)
    assert main(["info", str(tmp_path)]) in (0, None)
    assert ", 4 heads (2 kv)," in capsys.readouterr().out
