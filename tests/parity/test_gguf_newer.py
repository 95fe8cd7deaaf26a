"""GGUF in and out for the newer families of llama.cpp 0.3.36 that llmarch's one-module-a-family archs cover with
little of their own (interop/gguf_archs/afmoe.py ...): a tiny random model of each from transformers (routers
routed apart, 1-D parameters perturbed) through from_hf, written by to_gguf (F32) as llama.cpp's converter writes it,
read back by from_gguf to equal logits and decoded by llama.cpp (llama-cpp-python, where installed) greedily to
llmarch's tokens with llmarch's logits; a Q8_0 file of each reads back within 5% of the logits' largest (afmoe:
3.4%, its embeddings times sqrt(d) amplifying the rounding; measured). What llama.cpp computes otherwise is
refused, one line."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, perturbed, routed_apart

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16)
COHERE2_MOE = dict(SMALL, num_hidden_layers=4, intermediate_size=32, prefix_dense_intermediate_size=96, num_experts=4,
                   num_experts_per_tok=2, num_shared_experts=1, sliding_window=8, first_k_dense_replace=1)
COHERE2_TYPES = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
CASES = {  # name: (transformers config class, its fields, GGUF architecture)
    # layers 0-2 slide over 8 keys with RoPE, layer 3 sees all without; layer 0 dense, then 4 experts (top 2 by
    # sigmoid plus an expert bias, renormalised, times 1.5) and a shared one; embeddings times sqrt(d)
    "afmoe": ("AfmoeConfig", dict(SMALL, num_hidden_layers=4, sliding_window=8, moe_intermediate_size=32,
                                  num_experts=4, num_experts_per_tok=2, num_shared_experts=1, route_scale=1.5,
                                  mup_enabled=True), "afmoe"),
    # EXAONE 3.5: LLaMA under GPT-2-like names, read as Hugging Face holds them (no q/k permutation)
    "exaone": ("ExaoneConfig", dict(SMALL, num_layers=2, head_dim=None), "exaone"),
    # HY V3: per-head QK-norm; layer 0 dense, then 4 experts (top 2 by sigmoid plus an expert bias, renormalised,
    # times 2.826) and a shared one
    "hy_v3": ("HYV3Config", dict(SMALL, num_hidden_layers=3, moe_intermediate_size=32, num_experts=4,
                                 num_experts_per_tok=2, num_shared_experts=1), "hy_v3"),
    # Cohere2-MoE: bias-free LayerNorm, layers 0-2 sliding over 8 keys with RoPE, layer 3 full without; layer 0 dense,
    # then 4 experts (softmax top 2) and a shared one, averaged
    "cohere2_moe": ("Cohere2MoeConfig", COHERE2_MOE, "cohere2moe"),
    # RMSNorm, sigmoid routing not renormalised, the dense layer 0 full attention with RoPE (force_rope)
    "cohere2_moe-sigmoid": ("Cohere2MoeConfig", dict(COHERE2_MOE, rms_norm_eps=1e-6, expert_selection_fn="sigmoid",
                                                     norm_topk_prob=False, layer_types=COHERE2_TYPES), "cohere2moe"),
}
REFUSED = [  # (case, config changes, what the error says)
    ("afmoe", dict(mup_enabled=False), "sqrt"),
    ("afmoe", dict(global_attn_every_n_layers=2), "each 4th"),
    ("cohere2_moe", dict(shared_expert_combination_strategy="sum"), "averages"),
    ("cohere2_moe", dict(layer_types=COHERE2_TYPES, prefix_dense_sliding_window_pattern=4), "every dense first"),
]


def config(case, **changes):
    conf_cls, fields, _ = CASES[case]
    return getattr(transformers, conf_cls)(**{**fields, **changes})


@pytest.fixture(scope="module", params=sorted(CASES))
def tiny(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config(request.param)).eval()
    with torch.no_grad():
        perturbed(routed_apart(hf)).save_pretrained(folder / "hf")
    return request.param, llmarch.from_hf(folder / "hf"), folder


def test_gguf_round_trip_and_llama_cpp(tiny):
    case, model, folder = tiny
    path = folder / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == CASES[case][2]
    back = gguf_reads_back(path, model, exact=True, apart=1e-5)
    assert back.config.hf_model_type == model.config.hf_model_type


def test_q8_0_reads_back_close(tiny):
    case, model, folder = tiny
    to_gguf(model, folder / "q8.gguf", "q8_0", ByteTokenizer())
    assert "Q8_0" in {t.tensor_type.name for t in gguf.GGUFReader(str(folder / "q8.gguf")).tensors}
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        want, got = model(ids).logits, llmarch.from_gguf(folder / "q8.gguf")(ids).logits
    assert 0 < (got - want).abs().max() < 0.05 * want.abs().max()


@pytest.mark.parametrize("case, changes, problem", REFUSED)
def test_what_llama_cpp_computes_otherwise_is_refused(case, changes, problem, tmp_path):
    from llmarch.interop.hf import FAMILIES

    conf = config(case, **changes).to_dict()
    with pytest.raises(LlmarchError, match=problem) as e:
        to_gguf(llmarch.build(FAMILIES[conf["model_type"]].to_config(conf)), tmp_path / "x.gguf", "f32",
                ByteTokenizer())
    assert "\n" not in str(e.value) and not (tmp_path / "x.gguf").exists()
