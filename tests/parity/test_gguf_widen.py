"""GGUF in and out for architectures llama.cpp has that llmarch's families already compute: JetBrains Mellum 2
(`mellum`, as convert_hf_to_gguf.py's MellumModel writes it: Qwen3-MoE's tensors, a sliding window over the layers
it flags with their own RoPE base) and IBM Granite with windows and sinks (`granite_swa`, GraniteSWAModel's:
Granite's tensors and scalars, the sinks, the window's layers and the NoPE ones flagged) and Poolside Laguna
(`laguna`, LagunaModel's: query heads per layer, a softplus gate per head, each layer type's RoPE, sigmoid-routed
experts with their bias beside a shared one) and GLM (`chatglm`, ChatGLMModel's for GlmForCausalLM: adjacent-pair
RoPE on half of each head, the fused gate | up as ffn_up) and Sarvam MoE (`bailingmoe2`, SarvamMoEModel's: q, k, v
fused, per-head q/k norms, dense layers then sigmoid-routed experts with their bias beside shared ones). Each tiny
random model (from a transformers config, 1-D parameters perturbed, routers made decisive, through from_hf) is
written by to_gguf with llmarch's byte tokenizer, read back by from_gguf to equal logits (F32, max |dlogit| <=
1e-5), and llama.cpp (llama-cpp-python 0.3.36, where installed) decodes the file greedily to llmarch's tokens with
llmarch's logits; what llama.cpp would compute otherwise is refused before a file is left."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import llama_cpp_against, perturbed, perturbed_from_hf, routed_apart
from test_gguf_ggufmore import written

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
transformers.logging.set_verbosity_error()


# one RoPE base for both layer types: llama.cpp 0.3.36's mellum graph rotates the sliding layers with the full ones'
MELLUM = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, sliding_window=6, layer_types=["sliding_attention", "full_attention"],
              moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, pad_token_id=0,
              rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 100.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})


def tiny_mellum(tmp_path, **changes):
    torch.manual_seed(0)
    hf = routed_apart(transformers.MellumForCausalLM(transformers.MellumConfig(**{**MELLUM, **changes})))
    return perturbed_from_hf(hf, tmp_path / "hf")


# tied: llama.cpp's mellum requires `output`, so the head goes out as a copy of the embedding and reads back tied
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_mellum_round_trip_and_llama_cpp(tied, tmp_path):
    model = tiny_mellum(tmp_path, tie_word_embeddings=tied)
    path, back = written(model, tmp_path, "mellum")
    assert (back.config.layer_types, back.config.tie_embeddings) == (model.config.layer_types, tied)
    # the 24-token prompt reaches past the window of 6; measured 2.4e-7 apart (tied and untied)
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 27)), exact=True)
    assert seq == ours and apart <= 1e-5


def test_mellum_file_with_a_sliding_base_reads_as_the_converter_meant(tmp_path):
    """A file as MellumModel writes a Mellum whose sliding layers have a base of their own (rope.freq_base_swa)
    reads as transformers' model (llama.cpp 0.3.36 would rotate them with rope.freq_base)."""
    from test_gguf_deepseek import FLOAT, rewrite

    two = {"full_attention": {"rope_type": "default", "rope_theta": 50000.0},
           "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}
    path, _ = written(tiny_mellum(tmp_path / "one"), tmp_path, "mellum")
    rewrite(path, tmp_path / "two.gguf", {"mellum.rope.freq_base": (50000.0, FLOAT),
                                          "mellum.rope.freq_base_swa": (100.0, FLOAT)}, arch="mellum")
    want = tiny_mellum(tmp_path / "two", rope_parameters=two)  # the same weights, each type its own base
    back = llmarch.from_gguf(tmp_path / "two.gguf")
    assert back.config.layer_overrides == want.config.layer_overrides
    ids = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        assert (back(ids).logits - want(ids).logits).abs().max() <= 1e-5


@pytest.mark.parametrize("changes,problem", [
    (dict(attention_bias=True), "attention_bias"),  # llama.cpp's mellum loads no o bias
    (dict(mlp_layer_types=["dense", "sparse"]), "dense layers"),  # and makes every layer a mixture
    (dict(norm_topk_prob=False), "norm_topk_prob"),  # and renormalises the top-k weights
    # and rotates every layer with rope.freq_base (measured: bases 5e4 and 100 decoded 0.17 apart, one base 2.4e-7)
    (dict(rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 50000.0},
                           "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}),
     "full layers' RoPE base"),
])
def test_mellum_refuses_what_llama_cpp_computes_otherwise(changes, problem, tmp_path):
    model = tiny_mellum(tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


GRANITE_SWA = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, sliding_window=6,
                   layer_types=["full_attention", "sliding_attention", "sliding_attention"],
                   layer_rope_theta=[10000.0, 0, 10000.0], attention_multiplier=0.2, embedding_multiplier=3.0,
                   residual_multiplier=0.5, logits_scaling=2.0)


def tiny_granite_swa(tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.GraniteSWAForCausalLM(transformers.GraniteSWAConfig(**{**GRANITE_SWA, **changes}))
    return perturbed_from_hf(hf, tmp_path / "hf")


# a full layer, a sliding one without RoPE, a sliding one with it; each head's sink logit perturbed off 0
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_granite_swa_round_trip_and_llama_cpp(tied, tmp_path):
    model = tiny_granite_swa(tmp_path, tie_word_embeddings=tied)
    path, back = written(model, tmp_path, "granite_swa")
    assert (back.config.layer_types, back.config.layer_overrides) == (model.config.layer_types,
                                                                      model.config.layer_overrides)
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert "blk.2.attn_sinks.weight" in names and ("output.weight" in names) != tied
    # measured 2.4e-7 (tied) and 8.9e-8 apart; q and k left unpermuted, llama.cpp decoded other tokens
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 27)), exact=True)
    assert seq == ours and apart <= 1e-5


def test_granite_swa_refuses_a_second_rope_base(tmp_path):
    model = tiny_granite_swa(tmp_path, layer_rope_theta=[10000.0, 0, 500.0])  # llama.cpp has one base
    with pytest.raises(LlmarchError, match="one base"):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


LAGUNA = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, sliding_window=6, num_attention_heads_per_layer=[4, 8, 8],
              layer_types=["full_attention", "sliding_attention", "sliding_attention"],
              mlp_layer_types=["dense", "sparse", "sparse"], moe_intermediate_size=32,
              shared_expert_intermediate_size=48, num_experts=4, num_experts_per_tok=2, moe_routed_scaling_factor=1.5,
              pad_token_id=0)


def tiny_laguna(tmp_path, **changes):
    torch.manual_seed(0)
    hf = routed_apart(transformers.LagunaForCausalLM(transformers.LagunaConfig(**{**LAGUNA, **changes})))
    return perturbed_from_hf(hf, tmp_path / "hf")


# a full layer of 4 query heads rotating half of each (LagunaConfig's default RoPE: base 5e5 on half, 1e4 on all of
# a sliding layer's), two sliding ones of 8 heads; a dense first layer, then experts with their bias and a shared one
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_laguna_round_trip_and_llama_cpp(tied, tmp_path):
    model = tiny_laguna(tmp_path, tie_word_embeddings=tied)
    assert model.config.layer_types == ["full_attention", "sliding_attention_heads8", "sliding_attention_heads8"]
    path, back = written(model, tmp_path, "laguna")
    assert (back.config.layer_overrides, back.config.tie_embeddings) == (model.config.layer_overrides, tied)
    fields = gguf.GGUFReader(str(path)).fields
    assert (fields["laguna.rope.dimension_count"].contents(), fields["laguna.rope.dimension_count_swa"].contents()) \
        == (8, 16)
    # measured 3.0e-7 (untied) and 3.6e-7 apart
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 27)), exact=True)
    assert seq == ours and apart <= 1e-5


@pytest.mark.parametrize("changes,problem", [
    (dict(attention_bias=True), "attention_bias"),  # llama.cpp's laguna loads no o bias
    (dict(moe_router_logit_softcapping=0.5), "soft-cap"),  # and caps no router logits
])
def test_laguna_refuses_what_llama_cpp_computes_otherwise(changes, problem, tmp_path):
    model = tiny_laguna(tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


# GLM (glm-4-9b-chat-hf): half of each head rotated in adjacent pairs, q, k, v biases, the fused gate | up
@pytest.mark.parametrize("tied,bias", [(False, True), (True, False)], ids=["untied-biased", "tied-unbiased"])
def test_chatglm_round_trip_and_llama_cpp(tied, bias, tmp_path):
    torch.manual_seed(0)
    config = transformers.GlmConfig(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, pad_token_id=0,
                                    tie_word_embeddings=tied, attention_bias=bias)
    model = perturbed_from_hf(transformers.GlmForCausalLM(config), tmp_path / "hf")
    path, back = written(model, tmp_path, "chatglm")
    assert (back.config.rope_fraction, back.config.qkv_bias, back.config.tie_embeddings) == (0.5, bias, tied)
    # measured 1.8e-7 and 3.0e-7 apart; with q and k permuted as LLaMA's, llama.cpp decoded other tokens
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 11)), exact=True)
    assert seq == ours and apart <= 1e-5


SARVAM = dict(vocab_size=272, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
              num_key_value_heads=2, head_dim=16, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
              n_shared_experts=1, first_k_dense_replace=1, eos_token_id=None, pad_token_id=0)


def tiny_sarvam(tmp_path, **changes):
    """Sarvam MoE as transformers runs it (Glm4MoeForCausalLM over SarvamMoEConfig, the original tensor names):
    RoPE over the whole head, per-head QK-norm, a dense layer, then sigmoid-routed experts with their bias beside a
    shared one."""
    torch.manual_seed(0)
    hf = routed_apart(transformers.Glm4MoeForCausalLM(transformers.SarvamMoEConfig(**{**SARVAM, **changes})))
    return perturbed_from_hf(hf, tmp_path / "hf")


# tied: llama.cpp's bailingmoe2 requires `output`, so the head goes out as a copy of the embedding and reads back tied
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_bailingmoe2_round_trip_and_llama_cpp(tied, tmp_path):
    model = tiny_sarvam(tmp_path, tie_word_embeddings=tied)
    path, back = written(model, tmp_path, "bailingmoe2")
    assert (back.config.hf_model_type, back.config.tie_embeddings) == ("sarvam_moe", tied)
    assert "blk.1.attn_qkv.weight" in {t.name for t in gguf.GGUFReader(str(path)).tensors}
    # measured 7.5e-8 (untied) and 8.9e-8 apart
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 11)), exact=True)
    assert seq == ours and apart <= 1e-5


@pytest.mark.parametrize("changes,problem", [
    (dict(attention_bias=True), "attention_bias"),  # llama.cpp's bailingmoe2 loads no attention biases
    (dict(n_routed_experts=4, n_group=2, topk_group=1), "n_group"),  # nor router groups
])
def test_bailingmoe2_refuses_what_llama_cpp_computes_otherwise(changes, problem, tmp_path):
    model = tiny_sarvam(tmp_path, **changes)
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()


# InternLM3 (LLaMA exactly; `qkv_bias` and `bias`): the converter's InternLM3Model writes it as llama, q and k permuted
@pytest.mark.parametrize("bias", [True, False], ids=["biased", "unbiased"])
def test_internlm3_written_as_llama(bias, tmp_path):
    from llmarch.interop.internlm3 import to_config

    torch.manual_seed(0)
    model = perturbed(llmarch.build(to_config(dict(
        model_type="internlm3", vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, qkv_bias=bias, bias=bias,
        tie_word_embeddings=False))))
    path, back = written(model, tmp_path, "llama")
    assert (back.config.hf_model_type, back.config.qkv_bias, back.config.bias) == ("llama", bias, bias)
    # measured 1.8e-7 apart, biased and not
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 11)), exact=True)
    assert seq == ours and apart <= 1e-5


def tiny_falcon_mamba(tmp_path, **changes):
    torch.manual_seed(0)
    config = transformers.FalconMambaConfig(**{**dict(vocab_size=272, hidden_size=64, state_size=8, num_hidden_layers=2,
                                                      expand=2, conv_kernel=4, layer_norm_epsilon=1e-5,
                                                      mixer_rms_eps=1e-5, pad_token_id=0), **changes})
    return perturbed_from_hf(transformers.FalconMambaForCausalLM(config), tmp_path / "hf")


# Falcon Mamba: the converter's MambaModel with ssm.dt_b_c_rms, whose norms take the layers' epsilon in llama.cpp
def test_falcon_mamba_written_as_mamba(tmp_path):
    model = tiny_falcon_mamba(tmp_path)
    path, back = written(model, tmp_path, "mamba")
    assert gguf.GGUFReader(str(path)).fields["mamba.ssm.dt_b_c_rms"].contents() is True
    assert (back.config.hf_model_type, back.config.ssm_inner_norm) == ("falcon_mamba", True)
    # measured 1.9e-6 apart; written without dt_b_c_rms (llama.cpp then skips the norms), 0.44 apart
    seq, ours, apart = llama_cpp_against(path, model, list(range(3, 11)), exact=True)
    assert seq == ours and apart <= 1e-5


def test_falcon_mamba_with_a_mixer_epsilon_of_its_own_is_refused(tmp_path):
    model = tiny_falcon_mamba(tmp_path, mixer_rms_eps=1e-6)  # falcon-mamba-7b's; llama.cpp takes the layers' 1e-5
    with pytest.raises(LlmarchError, match="ssm_inner_norm_eps"):
        to_gguf(model, tmp_path / "x.gguf", "f16", ByteTokenizer())
    assert not (tmp_path / "x.gguf").exists()
