import json

import pytest
import torch

import llmarch
from llmarch import LlmarchError, ModelConfig
from llmarch.analysis import model_facts

PUBLISHED = {"bert-base": 109_514_298, "bert-large": 335_174_458, "roberta-base": 124_697_433,
             "gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
             "gpt2-xl": 1_557_611_200, "llama2-7b": 6_738_415_616, "llama3-8b": 8_030_261_248,
             "deepseek-v3": 671_026_404_352, "deepseek-v2-lite": 15_706_484_224,
             "recurrentgemma-2b": 2_682_862_080, "xlstm-7b": 6_865_424_896, "rwkv-4-169m": 169_342_464}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts(name):
    model = llmarch.build(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[name]
    assert model_facts(llmarch.preset(name))["parameters"] == PUBLISHED[name]


def test_encoder_presets_equal_transformers_masked_lm():
    transformers = pytest.importorskip("transformers")
    roberta = dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)
    for name, kind, kw in [("bert-base", "Bert", {}), ("roberta-base", "Roberta", roberta),
                           ("bert-large", "Bert", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                       intermediate_size=4096))]:
        with torch.device("meta"):
            hf = getattr(transformers, f"{kind}ForMaskedLM")(getattr(transformers, f"{kind}Config")(**kw))
        assert sum(p.numel() for p in hf.parameters()) == PUBLISHED[name]


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny", "bert-tiny", "griffin-tiny"])
def test_cpu_presets_are_about_10m(name):
    n = model_facts(llmarch.preset(name))["parameters"]
    assert 7e6 < n < 13e6


def test_facts_formulae():
    cfg = llmarch.preset("llama3-8b")
    facts = model_facts(cfg)
    emb = 128256 * 4096
    assert facts["non_embedding_parameters"] == PUBLISHED["llama3-8b"] - emb
    assert facts["flops_per_token"] == 6 * (PUBLISHED["llama3-8b"] - emb) + 12 * 32 * 4096 * 8192
    assert facts["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 2
    gpt2 = model_facts(llmarch.preset("gpt2"), dtype="fp32")
    assert gpt2["kv_cache_bytes_per_token"] == 2 * 12 * 768 * 4
    # The tied head is a matmul: counted in FLOPs though not in non-embedding parameters.
    assert gpt2["flops_per_token"] == 6 * (gpt2["non_embedding_parameters"] + 50257 * 768) + 12 * 12 * 768 * 1024


@pytest.mark.parametrize("bad, message", [
    (dict(d_model=100, n_heads=3), "not divisible by n_heads"),
    (dict(n_heads=8, n_kv_heads=3), "not divisible by n_kv_heads"),
    (dict(ffn="swishy"), "unknown ffn 'swishy'"),
    (dict(norm="batchnorm"), "unknown norm"),
    (dict(positions="alibi2"), "unknown positions"),
    (dict(attention="flash9"), "unknown attention .flash9.; choose one of: full"),
    (dict(attn_impl="flash9"), "unknown attention implementation"),
    (dict(attention="sliding_window"), "a window size goes with sliding_window or longformer"),
    (dict(norm_placement="middle"), "unknown norm_placement"),
    (dict(n_layers=0), "n_layers must be a positive integer"),
    (dict(dropout=1.5), "dropout"),
])
def test_invalid_configs_name_the_problem(bad, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.preset("gpt-tiny").replace(**bad)


def test_unknown_preset_and_field():
    with pytest.raises(LlmarchError, match="unknown model 'gpt5'"):
        llmarch.build("gpt5")
    with pytest.raises(LlmarchError, match="unknown config field"):
        llmarch.build("gpt-tiny", n_layer=3)


def test_overrides_rederive_fields():
    cfg = llmarch.resolve("llama-tiny", n_layers=2, ffn="geglu", n_heads=4, n_kv_heads=None)
    assert (cfg.n_layers, cfg.ffn, cfg.n_kv_heads, cfg.head_dim) == (2, "geglu", 4, 64)
    model = llmarch.build("llama-tiny", n_layers=2, ffn="geglu")
    assert len(model.blocks) == 2 and model.blocks[0].mlp.gate_up.weight.shape == (2 * 768, 256)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_round_trip(tmp_path, suffix):
    cfg = llmarch.resolve("llama-tiny", n_layers=3, rope_theta=5e5)
    path = tmp_path / f"model{suffix}"
    cfg.save(path)
    assert ModelConfig.load(path) == cfg
    assert llmarch.resolve(str(path)) == cfg


def test_malformed_config_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(LlmarchError, match="cannot parse config"):
        ModelConfig.load(path)
    path.write_text(json.dumps({"d_model": "wide"}))
    with pytest.raises(LlmarchError, match="d_model must be an integer"):
        ModelConfig.load(path)


def test_mha_gqa_mqa_shapes():
    for kv in (8, 2, 1):
        model = llmarch.build("llama-tiny", n_layers=1, n_kv_heads=kv)
        assert model.blocks[0].attn.qkv_proj.weight.shape == ((8 + 2 * kv) * 32, 256)
        out = model(torch.randint(0, 8192, (1, 5))).logits
        assert out.shape == (1, 5, 8192)


def test_config_saved_with_residual_affine_loads_as_the_affine_residual_mix():
    """ZAYA1's affine residual adds were a boolean field before they joined the residual_mix registry: a config
    saved then still loads, to the same computation."""
    data = llmarch.resolve("llama-tiny").to_dict()
    data.pop("residual_mix")
    assert ModelConfig.from_dict({**data, "residual_affine": True}).residual_mix == "affine"
    assert ModelConfig.from_dict({**data, "residual_affine": False}).residual_mix == "none"
