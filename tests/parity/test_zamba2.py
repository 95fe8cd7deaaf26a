"""Zamba2 (`model_type: zamba2`) against transformers, through files as the other families' parity tests: a tiny
seeded random Zamba2ForCausalLM (1-D parameters perturbed) of Mamba-2 and hybrid layers, the hybrid ones running
shared transformer blocks (two, cycled, or one) with per-layer adapters on gate_up (and on q, k, v), with and
without RoPE, GQA, biases. Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal
to transformers', cached decoding equal to the whole forward, a to_hf round trip that transformers loads with the
same logits and that reads back to the same config; the parameter count equals transformers' (the shared blocks'
weights held once)."""
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

BASE = dict(vocab_size=128, hidden_size=32, num_hidden_layers=5, num_attention_heads=4, n_mamba_heads=4,
            mamba_d_state=8, mamba_ngroups=2, intermediate_size=48, adapter_rank=4, chunk_size=8,
            initializer_range=0.1, layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "hybrid"])
CASES = {"two-blocks-qkv-adapters-rope-tied": dict(num_mem_blocks=2, use_shared_attention_adapter=True,
                                                   use_mem_rope=True),
         "one-block-gqa-biases-tanh": dict(num_key_value_heads=2, add_bias_linear=True, hidden_act="gelu_pytorch_tanh")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.Zamba2ForCausalLM(transformers.Zamba2Config(**{**BASE, **CASES[case]})).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(5)] == ["mamba2", "shared_block", "mamba2", "shared_block",
                                                      "shared_block"]
    blocks = CASES[case].get("num_mem_blocks", 1)
    assert [b.seq_mixer.block_id for b in ours.blocks if hasattr(b.seq_mixer, "block_id")] == [0, 1 % blocks, 0]
    assert sum(p.numel() for p in ours.parameters()) == hf.num_parameters()
    ids, mask, _ = assert_matches_transformers(hf, ours, "Zamba2ForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    with torch.no_grad():  # a prompt, then one token per step, equals the whole left-padded forward
        full = ours(ids, attention_mask=mask).logits
    steps = stepwise_logits(ours, ids, 9, mask)
    assert (steps - full)[mask.bool()].abs().max() < 1e-4


def test_shared_weights_are_one_parameter_used_by_several_layers(tmp_path):
    """The shared block's weights are held once (shared_blocks.0), not per layer; layers 1 and 4 both run block 0,
    so a change to its weights changes what both compute."""
    torch.manual_seed(0)
    hf = transformers.Zamba2ForCausalLM(transformers.Zamba2Config(**{**BASE, "num_mem_blocks": 2}))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    names = [n for n, _ in ours.named_parameters() if ".qkv_proj." in n]
    assert names == ["shared_blocks.0.attn.qkv_proj.weight", "shared_blocks.1.attn.qkv_proj.weight"]
    calls = []
    ours.shared_blocks[0].register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    with torch.no_grad():
        ours(torch.tensor([[3, 4, 5]]))
    assert len(calls) == 2


def test_a_file_storing_every_layers_copy_of_its_shared_block_reads_the_same(tmp_path):
    """A checkpoint that stores the shared block again under each later hybrid layer (layer 4's copy of layer 1's
    block, as a file written without transformers' tie may): the copies are the same tensors, not read."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    hf = transformers.Zamba2ForCausalLM(transformers.Zamba2Config(**{**BASE, "num_mem_blocks": 2}))
    hf.save_pretrained(tmp_path / "hf")
    file = tmp_path / "hf" / "model.safetensors"
    state = load_file(file)
    state.update({k.replace("layers.1.", "layers.4."): v.clone() for k, v in state.items()
                  if k.startswith("model.layers.1.shared_transformer.")})
    save_file(state, file, metadata={"format": "pt"})
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert torch.allclose(from_hf(tmp_path / "hf")(ids).logits, hf(ids).logits, atol=1e-4)


@pytest.mark.parametrize("change,problem", [
    (dict(use_long_context=True), "use_long_context"),
    (dict(tie_word_embeddings=False), "unties the shared blocks"),
    (dict(rms_norm_eps=1e-6), "rms_norm_eps"),
    (dict(use_shared_attention_adapter=True, num_key_value_heads=2), "num_key_value_heads"),
    (dict(hidden_act="relu"), "hidden_act 'relu'"),
    (dict(layers_block_type=["mamba", "attention"]), "unknown layer type 'attention'"),
    (dict(n_mamba_heads=3), "n_mamba_heads"),
])
def test_what_llmarch_cannot_hold_is_named(change, problem):
    with pytest.raises(LlmarchError, match=problem):
        hf_model_config({**BASE, "model_type": "zamba2", **change})


def test_to_hf_refuses_what_zamba2_cannot_compute(tmp_path):
    torch.manual_seed(0)
    transformers.Zamba2ForCausalLM(transformers.Zamba2Config(**BASE)).save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    for change, problem in ((dict(shared_adapters=["qkv"]), "shared_adapters"), (dict(tie_embeddings=False), "tie"),
                            (dict(attn_scale=0.5), "attn_scale"),
                            (dict(ssm_norm="none"), "ssm_norm")):
        ours.config = ours.config.replace(**change)
        with pytest.raises(LlmarchError, match=problem):
            to_hf(ours, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        ours.config = from_hf(tmp_path / "hf").config


def test_zamba2_sized_shape_counts_as_transformers():
    """transformers' default Zamba2Config (Zamba2-2.7B's shape: 54 layers 2560 wide, 9 of them hybrid, 32 heads over
    the 5120-wide concatenation, Mamba-2 of 80 heads of 64 and a state of 64, MLP 10240, 32,000 tokens) with two
    shared blocks and q, k, v adapters: llmarch's model (built on the meta device) has transformers' parameter
    count."""
    hf = transformers.Zamba2Config(num_mem_blocks=2, use_shared_attention_adapter=True, use_mem_rope=True,
                                   n_mamba_heads=80)
    cfg = hf_model_config({**hf.to_dict(), "model_type": "zamba2"})
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        assert ours == transformers.Zamba2ForCausalLM(hf).num_parameters() > 2e9


def test_step_sizes_clamped_at_time_step_min_as_transformers_clamps_them(tmp_path):
    """A layer's dt_bias pushed to -12, so softplus gives steps near 6e-6, below time_step_min = 1e-3: transformers'
    scan clamps them up to 1e-3 (its dt_limit), and so does llmarch (ssm_dt_floor), in the whole forward and in each
    decoding step alike (transformers' own one-token step does not clamp: its generate is not compared here)."""
    from test_hf_families import assert_close_on_real_tokens, hf_logits, padded_batch

    torch.manual_seed(0)
    hf = transformers.Zamba2ForCausalLM(transformers.Zamba2Config(**BASE)).eval()
    with torch.no_grad():
        hf.model.layers[0].mamba.dt_bias.fill_(-12.0)
        hf.model.layers[1].mamba_decoder.mamba.dt_bias.fill_(-12.0)
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    assert ours.config.ssm_dt_floor == 1e-3
    ids, mask = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(full, hf_logits(hf, ids, mask), mask)
    assert (stepwise_logits(ours, ids, 9, mask) - full)[mask.bool()].abs().max() < 1e-4
