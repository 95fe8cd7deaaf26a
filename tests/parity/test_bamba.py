"""Bamba (`model_type: bamba`) against transformers, through files as the other families' parity tests: a tiny
seeded random BambaForCausalLM (1-D parameters perturbed) whose layers are Mamba-2, attention, Mamba-2 (attention
at attn_layer_indices, RoPE on half of each head), with dense SwiGLU FFNs; logits on a left-padded batch within
1e-4 (fp32), 32 greedy tokens equal to transformers', a to_hf round trip that transformers loads with the same
logits and that reads back to the same config."""
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
            intermediate_size=96, attn_layer_indices=[1], mamba_n_heads=8, mamba_n_groups=2, mamba_d_state=16,
            mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8, initializer_range=0.1, bos_token_id=1,
            eos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5})


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_logits_generation_and_round_trip(tied, tmp_path):
    torch.manual_seed(0)
    hf = transformers.BambaForCausalLM(transformers.BambaConfig(**{**BASE, "tie_word_embeddings": tied})).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(3)] == ["mamba2", "attention", "mamba2"]
    assert (cfg.rope_fraction, cfg.tie_embeddings) == (0.5, tied)
    assert_matches_transformers(hf, ours, "BambaForCausalLM", tmp_path)
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_what_llmarch_cannot_hold_is_named():
    with pytest.raises(LlmarchError, match="attention_bias and mlp_bias differ"):
        hf_model_config({**BASE, "model_type": "bamba", "attention_bias": True})
    with pytest.raises(LlmarchError, match="time_step_limit"):
        hf_model_config({**BASE, "model_type": "bamba", "time_step_limit": [0.0, 10.0]})


def test_gguf_round_trip_and_llama_cpp(tmp_path):
    """Bamba as llama.cpp's granitehybrid (the converter's GraniteHybridModel takes BambaForCausalLM too): the
    per-layer KV-head count tells the layers apart, RoPE on (rope.scaling.finetuned) over rope.dimension_count
    dims, none of Granite's scalars; read back to equal logits and decoded by llama.cpp (where installed) to
    llmarch's greedy tokens. A partly rotated head is refused: llama.cpp rotates it otherwise (its logits were 0.61
    from llmarch's, which equal transformers')."""
    gguf = pytest.importorskip("gguf")
    from conftest import gguf_reads_back
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    torch.manual_seed(0)
    whole = {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 1.0}
    hf = transformers.BambaForCausalLM(transformers.BambaConfig(**{**BASE, "vocab_size": 272}))
    partial = perturbed_from_hf(hf, tmp_path / "partial")
    with pytest.raises(LlmarchError, match="needs rope_fraction=1"):
        to_gguf(partial, tmp_path / "partial.gguf", "f32", ByteTokenizer())
    assert not (tmp_path / "partial.gguf").exists()
    torch.manual_seed(0)
    config = transformers.BambaConfig(**{**BASE, "vocab_size": 272, "rope_parameters": whole})
    hf = transformers.BambaForCausalLM(config)
    model = perturbed_from_hf(hf, tmp_path / "hf")
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    fields = {k: f.contents() for k, f in gguf.GGUFReader(str(path)).fields.items()}
    assert fields["general.architecture"] == "granitehybrid" and "granitehybrid.logit_scale" not in fields
    assert list(fields["granitehybrid.attention.head_count_kv"]) == [0, 2, 0]
    assert fields["granitehybrid.rope.scaling.finetuned"] is True and fields["granitehybrid.rope.dimension_count"] == 16
    cfg = gguf_reads_back(path, model).config
    assert (cfg.hf_model_type, cfg.rope_fraction) == ("bamba", 1.0)


def test_bamba_9b_shape_counts_as_transformers():
    """Bamba-9B's shape (32 layers 4096 wide, attention at 9, 18 and 27 with 8 KV heads, Mamba-2 of 128 heads of
    64 and a state of 128, FFN 14336, 128,256 tokens): llmarch's model (built on the meta device) has transformers'
    parameter count."""
    import llmarch

    hf = transformers.BambaConfig(**{
        **BASE, "vocab_size": 128256, "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 14336, "attn_layer_indices": [9, 18, 27],
        "mamba_n_heads": 128, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 128})
    cfg = hf_model_config({**hf.to_dict(), "model_type": "bamba"})
    ours = sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters())
    with torch.device("meta"):
        theirs = transformers.BambaForCausalLM(hf).num_parameters()
    assert ours == theirs > 9e9
