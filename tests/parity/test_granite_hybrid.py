"""IBM Granite 4.0 (granitemoehybrid) against transformers, through files as the other families' parity tests: a
tiny seeded random GraniteMoeHybridForCausalLM (1-D parameters perturbed) whose layers are Mamba-2, attention,
Mamba-2, with Granite's four scalars far from 1; with experts plus the shared MLP and no positions (Granite 4.0-H's
shape), and without experts (the shared MLP alone) with RoPE. Logits on a left-padded batch within 1e-4 (fp32), 32
greedy tokens equal to transformers', a to_hf round trip that transformers loads with the same logits and that
reads back to the same config."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=48, shared_intermediate_size=96, num_local_experts=4, num_experts_per_tok=2,
            embedding_multiplier=12.0, attention_multiplier=1 / 16, residual_multiplier=0.22, logits_scaling=8.0,
            initializer_range=0.1, bos_token_id=1, eos_token_id=2, layer_types=["mamba", "attention", "mamba"],
            position_embedding_type="nope", mamba_n_heads=8, mamba_n_groups=2, mamba_d_state=16, mamba_d_conv=4,
            mamba_expand=2, mamba_chunk_size=8, tie_word_embeddings=True)
CASES = {"moe-nope-tied": {},
         "dense-rope-untied": dict(num_local_experts=0, position_embedding_type="rope", tie_word_embeddings=False),
         # a shared MLP of 100, not a multiple of the experts' 48: one of its own width (shared_hidden)
         "moe-shared-100": dict(shared_intermediate_size=100)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.GraniteMoeHybridForCausalLM(transformers.GraniteMoeHybridConfig(**{**BASE, **CASES[case]})).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(3)] == ["mamba2", "attention", "mamba2"]
    shared = {"moe-nope-tied": (4, 2, 96), "moe-shared-100": (4, 1, 100), "dense-rope-untied": (0, 0, 0)}[case]
    assert (cfg.n_experts, cfg.n_shared_experts, cfg.shared_hidden) == shared
    assert cfg.positions == ("rope" if "rope" in case else "none") and cfg.residual_multiplier == 0.22
    assert_matches_transformers(hf, ours, "GraniteMoeHybridForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


@pytest.mark.parametrize("change,problem", [
    (dict(layer_types=["mamba", "sliding", "mamba"]), "unknown layer type 'sliding'"),
    (dict(time_step_limit=[0.0, 10.0]), "time_step_limit"),
    (dict(attention_bias=True), "attention_bias=True"),
])
def test_what_llmarch_cannot_hold_is_named(change, problem):
    with pytest.raises(LlmarchError, match=problem):
        hf_model_config({**BASE, "model_type": "granitemoehybrid", **change})


def test_to_hf_refuses_what_granite_4_cannot_compute(tmp_path):
    """What transformers' GraniteMoeHybrid would compute otherwise is refused before anything is written."""
    from llmarch.interop import to_hf

    torch.manual_seed(0)
    hf = transformers.GraniteMoeHybridForCausalLM(transformers.GraniteMoeHybridConfig(**BASE))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    for change, problem in ((dict(sliding_window=8), "sliding_window=None"), (dict(embed_scale=True), "embed_scale"),
                            (dict(attn_softcap=30.0), "attn_softcap=None")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match=problem):
            to_hf(ours, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        ours.config = from_hf(tmp_path / "hf").config


@pytest.mark.parametrize("experts,shared", [(64, 1024), (0, 8192), (72, 4000)])
def test_full_size_shapes_count_as_transformers(experts, shared):
    """A Granite 4.0-H-sized config (40 layers, attention every tenth, 1536 wide, Mamba-2 of 48 heads of 64 and a
    state of 128): llmarch's model (built on the meta device) has transformers' parameter count, with experts and
    a shared MLP (one whose width is no multiple of the experts' too) or the shared MLP alone."""
    import llmarch

    types = ["attention" if i % 10 == 5 else "mamba" for i in range(40)]
    hf = transformers.GraniteMoeHybridConfig(**{
        **BASE, "vocab_size": 100352, "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 12,
        "num_key_value_heads": 4, "intermediate_size": 512, "shared_intermediate_size": shared,
        "num_local_experts": experts, "num_experts_per_tok": 6, "layer_types": types, "mamba_n_heads": 48,
        "mamba_n_groups": 1, "mamba_d_state": 128, "mamba_d_head": 64})
    cfg = hf_model_config({**hf.to_dict(), "model_type": "granitemoehybrid"})
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        assert ours == transformers.GraniteMoeHybridForCausalLM(hf).num_parameters()
