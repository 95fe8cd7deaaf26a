"""Recent decoder families against transformers 5.25, through files: for each, a tiny seeded model (2 to 4 layers,
widths of 64, 1-D parameters perturbed, routers made decisive) saved with save_pretrained and read by from_hf: logits
on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers', cached decoding equal to the whole
forward, and a to_hf round trip that transformers loads to the same logits and llmarch to the same config.
Weights drawn with initializer_range 0.1, not 0.02, so that an activation or a RoPE base used wrongly shows.

aria_text: Aria's MoE language model (AriaTextForCausalLM), its shared experts GELU-gated here (hidden_act) beside
the routed experts, which are always SiLU-gated.
cohere_compass_text: Cohere's North text model (CohereCompassForCausalLM): a NoPE sliding layer and a full layer with
RoPE at base 5e5 (rope_parameters keyed by layer type), RoPE on halves, logit_scale 0.5.
lara_mini: a Gated DeltaNet, a sliding (RoPE) and a full (no positions) layer, its fused in_proj split (SPLITS).
gemma4_unified_text: a sliding and a wider full layer whose keys are its values, layer scalars moved off 1.
minimax_m3_vl_text: a dense then a mixture layer, clamped SwiGLUs at a limit that bites, half-head RoPE.
kolibri1_1: sliding and indexed layers, the second indexed layer reading the first's keys and values (NVFP4-rounded),
a dense first layer."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES, to_hf

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf, routed_apart
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             pad_token_id=0)


@torch.no_grad()
def decisive(hf, suffix: str):
    """routed_apart, and the routers it does not know by name (`suffix`) scaled as it scales the others."""
    for name, p in hf.named_parameters():
        if name.endswith(suffix):
            p.mul_(20.0)
    return routed_apart(hf)


def parity(hf, exported: str, tmp_path):
    """The whole check on a built transformers model; returns llmarch's model."""
    ours = perturbed_from_hf(hf.eval(), tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    ids, mask, generated = assert_matches_transformers(hf, ours, exported, tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")
    return ours


def test_aria_text(tmp_path):
    torch.manual_seed(0)
    config = transformers.AriaTextConfig(**SMALL, intermediate_size=32, moe_num_experts=4, moe_topk=2,
                                         moe_num_shared_experts=2, hidden_act="gelu",
                                         initializer_range=0.1)
    ours = parity(decisive(transformers.AriaTextForCausalLM(config), "mlp.router.weight"), "AriaTextForCausalLM",
                  tmp_path)
    cfg = ours.config
    assert (cfg.n_experts, cfg.n_shared_experts, cfg.shared_hidden, cfg.ffn, cfg.expert_ffn) == \
        (4, 2, 64, "geglu", "swiglu")
    ours.config = cfg.replace(shared_expert_gate=True)
    with pytest.raises(LlmarchError, match="ungated shared experts"):
        to_hf(ours, tmp_path / "refused")
    ours.config = cfg


def test_cohere_compass_text(tmp_path):
    torch.manual_seed(0)
    config = transformers.CohereCompassTextConfig(
        **SMALL, intermediate_size=96, sliding_window=6, logit_scale=0.5, initializer_range=0.1,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"sliding_attention": None, "full_attention": {"rope_type": "default", "rope_theta": 5e5}})
    ours = parity(transformers.CohereCompassForCausalLM(config), "CohereCompassForCausalLM", tmp_path)
    cfg = ours.config
    assert (cfg.block, cfg.shared_norm, cfg.logit_divisor, cfg.rope_theta) == ("parallel", True, 2.0, 5e5)
    assert (cfg.for_layer(0).positions, cfg.for_layer(0).sliding_window, cfg.for_layer(1).sliding_window) == \
        ("none", 6, None)
    with pytest.raises(LlmarchError, match="rope_parameters an entry"):
        FAMILIES["cohere_compass_text"].to_config({**config.to_dict(), "rope_parameters": {"rope_theta": 1e4}})


def test_lara_mini(tmp_path):
    torch.manual_seed(0)
    config = transformers.LaraMiniConfig(
        **{**SMALL, "num_hidden_layers": 3}, head_dim=16, sliding_window=6, initializer_range=0.1,
        layer_types=["linear_attention", "sliding_attention", "full_attention"], linear_num_key_heads=2,
        linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16, num_experts=4,
        num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48)
    ours = parity(routed_apart(transformers.LaraMiniForCausalLM(config)), "LaraMiniForCausalLM", tmp_path)
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(3)] == ["gated_deltanet", "attention", "attention"]
    assert (cfg.for_layer(1).sliding_window, cfg.for_layer(2).positions, cfg.norm, cfg.shared_hidden) == \
        (6, "none", "rmsnorm", 48)


def test_gemma4_unified_text(tmp_path):
    torch.manual_seed(0)
    S, F = "sliding_attention", "full_attention"
    config = transformers.Gemma4UnifiedTextConfig(
        **SMALL, head_dim=16, global_head_dim=32, intermediate_size=96, sliding_window=6, layer_types=[S, F],
        attention_k_eq_v=True, num_global_key_value_heads=1, final_logit_softcapping=30.0, initializer_range=0.1)
    hf = transformers.Gemma4UnifiedForCausalLM(config)
    with torch.no_grad():
        for name, b in hf.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(torch.rand(1) + 0.5)
    ours = parity(hf, "Gemma4UnifiedForCausalLM", tmp_path)
    cfg = ours.config
    assert (cfg.ple_dim, cfg.n_experts, cfg.for_layer(1).head_dim, cfg.for_layer(1).attn_k_eq_v) == (0, 0, 32, True)
    ours.config = cfg.replace(ple_dim=8, ple_vocab=128)
    with pytest.raises(LlmarchError, match="no per-layer input embeddings"):
        to_hf(ours, tmp_path / "refused")
    ours.config = cfg


def test_minimax_m3_vl_text(tmp_path):
    torch.manual_seed(0)
    config = transformers.MiniMaxM3VLTextConfig(
        **SMALL, head_dim=16, rotary_dim=8, intermediate_size=32, dense_intermediate_size=96,
        shared_intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, mlp_layer_types=["dense", "sparse"],
        routed_scaling_factor=1.5, swiglu_alpha=1.5, swiglu_limit=0.5, initializer_range=0.1,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5})
    ours = parity(routed_apart(transformers.MiniMaxM3VLForCausalLM(config)), "MiniMaxM3VLForCausalLM", tmp_path)
    cfg = ours.config
    assert (cfg.norm, cfg.ffn, cfg.moe_dense_first, cfg.rotary_dim, cfg.router_scale, cfg.shared_hidden) == \
        ("rmsnorm_offset", "swiglu_clamped", 1, 8, 1.5, 48)
    with pytest.raises(LlmarchError, match="minimax_m3_sparse"):
        FAMILIES["minimax_m3_vl_text"].to_config({**config.to_dict(), "layer_types": ["minimax_m3_sparse"] * 2})


def test_kolibri1_1(tmp_path):
    torch.manual_seed(0)
    S, X = "sliding_attention", "indexed_attention"
    config = transformers.Kolibri1_1Config(
        **{**SMALL, "num_hidden_layers": 4}, head_dim=16, sliding_window=6, layer_types=[S, X, S, X],
        kv_source_layers=[0, 1, 2, 1], index_layers=[1], index_num_heads=2, mlp_only_layers=[0],
        mlp_only_intermediate_size=80, moe_intermediate_size=32, shared_expert_intermediate_size=48, num_experts=4,
        num_experts_per_tok=2, norm_topk_prob=True, initializer_range=0.1)
    ours = parity(routed_apart(transformers.Kolibri1_1ForCausalLM(config)), "Kolibri1_1ForCausalLM", tmp_path)
    cfg = ours.config
    assert [cfg.kv_source(i) for i in range(4)] == [0, 1, 2, 1] and cfg.context_length == 2048 + 128 + 8
    assert (cfg.for_layer(3).positions, cfg.for_layer(3).kv_fp4, cfg.moe_dense_first, cfg.ffn_hidden) == \
        ("none", True, 1, 80)
    assert ours.blocks[3].attn.qkv_proj.weight.shape[0] == 64  # queries only: its keys and values are layer 1's
    with pytest.raises(LlmarchError, match="kv_source_layers: layer 3 reads layer 2"):
        cfg.replace(kv_source_layers=[0, 1, 2, 2])
