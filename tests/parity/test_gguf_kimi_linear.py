"""Kimi Linear as GGUF `kimi-linear`, as convert_hf_to_gguf.py's KimiLinearModel writes it: a tiny random model (KDA
and latent attention layers, a dense first layer, grouped sigmoid routing with an expert bias) from transformers,
through from_hf, written by to_gguf with llmarch's byte tokenizer, read back by from_gguf to equal logits (F32,
max |dlogit| <= 1e-4), and decoded by llama.cpp (llama-cpp-python, where installed) greedily to llmarch's tokens
with llmarch's logits; what llama.cpp cannot represent is refused."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed_from_hf, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

TYPES = ["linear_attention", "linear_attention", "full_attention", "linear_attention"]
CONFIG = dict(vocab_size=272, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
              intermediate_size=96, moe_intermediate_size=32, kv_lora_rank=32, q_lora_rank=None, qk_rope_head_dim=8,
              qk_nope_head_dim=16, v_head_dim=12, num_local_experts=8, num_experts_per_tok=2, n_shared_experts=1,
              n_group=4, topk_group=2, routed_scaling_factor=2.0, linear_num_heads=4, linear_head_dim=16,
              layer_types=TYPES, bos_token_id=1, eos_token_id=2, pad_token_id=0)
# no dense layer, two shared experts, ungrouped routing
CASES = {"base": CONFIG, "all-sparse": dict(CONFIG, n_shared_experts=2, n_group=1, topk_group=1,
                                            mlp_layer_types=["sparse"] * 4)}


def tiny(case, tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.KimiLinearForCausalLM(transformers.KimiLinearConfig(**{**CASES[case], **changes})).eval()
    with torch.no_grad():  # |q|, |k| well above the L2 norms' eps, which llama.cpp and transformers set apart
        for name, p in hf.named_parameters():
            if name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")) and "layers.2." not in name:
                p.mul_(10.0)
        return perturbed_from_hf(routed_apart(hf), tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gguf_round_trip_and_llama_cpp(case, tmp_path):
    model = tiny(case, tmp_path)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == "kimi-linear"
    back = gguf_reads_back(path, model, exact=True, apart=1e-3)
    assert back.config.hf_model_type == "kimi_linear"
    assert [back.config.layer_mixer(i) for i in range(4)] == ["kda", "kda", "mla", "kda"]


@pytest.mark.parametrize("changes, problem", [
    (dict(linear_num_heads=2, linear_head_dim=32), "takes the KDA heads from attention.head_count"),
    (dict(norm_topk_prob=False), "renormalised"),
    (dict(q_lora_rank=24), "no query compression"),
])
def test_what_llama_cpp_cannot_hold_is_refused(changes, problem, tmp_path):
    model = tiny("base", tmp_path, **changes)
    with pytest.raises(llmarch.LlmarchError, match=problem):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
