"""PEFT adapter files for LoRA on stacked MoE expert weights (peft's target_parameters) both ways, against the real
`peft` package on transformers' Mixtral, Qwen3-MoE and Qwen2-MoE (experts stacked as gate_up_proj and down_proj):
llmarch's adapters saved load with PeftModel.from_pretrained to the same logits, and an adapter that `peft` made
loads into llmarch to the same logits (fp32, 1e-4)."""
import pytest
import torch

import llmarch
from llmarch.adapters import LoRAConfig, apply_lora, lora_layers
from llmarch.adapters.experts import expert_sites
from llmarch.adapters.peft import load_peft, save_peft
from llmarch.errors import LlmarchError

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
transformers.logging.set_verbosity_error()
# peft warns that rank_pattern / alpha_pattern keys naming Parameters match no module, then applies them (the ranks
# asserted below)
pytestmark = pytest.mark.filterwarnings("ignore:The following (rank|alpha)_pattern keys", "ignore::FutureWarning")

V = 96
SHAPE = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             num_experts_per_tok=2, max_position_embeddings=64)
FAMILIES = {
    "mixtral": lambda: transformers.MixtralForCausalLM(transformers.MixtralConfig(
        intermediate_size=24, num_local_experts=4, **SHAPE)),
    # the first layer dense (decoder_sparse_step 2): only layer 1 has stacked experts
    "qwen3_moe": lambda: transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(
        intermediate_size=40, moe_intermediate_size=24, num_experts=4, decoder_sparse_step=2, norm_topk_prob=True,
        **SHAPE)),
    # experts beside a sigmoid-gated shared expert (an MLP, not a stacked site)
    "qwen2_moe": lambda: transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(
        intermediate_size=40, moe_intermediate_size=24, shared_expert_intermediate_size=48, num_experts=4, **SHAPE)),
}


def base(family, path):
    """A random transformers model, its router sharpened (transformers' 0.02 init routes near-uniformly, where a
    rounding difference could flip a top-k choice), saved to `path`."""
    torch.manual_seed(0)
    hf = FAMILIES[family]().eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("mlp.gate.weight"):
                p.mul_(20.0)
    hf.save_pretrained(path)
    return hf


def batch():
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, V, (2, 11), generator=g)


def logits(model, ids):
    with torch.no_grad():
        out = model(ids)
    return out.logits


def randomize(model):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        bs = [b for layer in lora_layers(model).values() for b in layer.lora_B.values()]
        for b in bs + [site.lora.lora_B for site in expert_sites(model).values()]:
            b.copy_(torch.randn(b.shape, generator=g) * 0.2)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ours_loads_in_peft(family, tmp_path):
    """Both stacked weights of a layer adapted (PEFT nests them: gate_up's tensors at experts.base_layer), one
    alone with its own rank and alpha (rank_pattern, alpha_pattern), and attention adapters beside them."""
    base(family, tmp_path / "base")
    model = llmarch.from_hf(tmp_path / "base")
    stacked = {f"blocks.1.mlp.experts.{w}": (4, 8.0) for w in ("gate_up", "down")}
    if family == "mixtral":
        stacked["blocks.0.mlp.experts.down"] = (2, 3.0)
    slices = {f"blocks.{i}.attn.qkv_proj": {"q": (0, 32), "v": (48, 16)} for i in range(2)}
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, targets=("qkv_proj", "experts")), slices=slices, stacked=stacked)
    randomize(model)
    save_peft(model, tmp_path / "adapter")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids = batch()
    mine = logits(model, ids)
    assert (logits(hf, ids) - mine).abs().max().item() <= 1e-4
    assert (mine - logits(llmarch.from_hf(tmp_path / "base"), ids)).abs().max() > 1e-2  # the adapters matter
    with llmarch.adapters.adapters_off(model):  # and the experts' do, apart from attention's
        for layer in lora_layers(model).values():
            layer.enabled = True
        assert (mine - logits(model, ids)).abs().max() > 1e-2


def test_peft_loads_in_ours(tmp_path):
    hf = base("mixtral", tmp_path / "base")
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["k_proj", "o_proj"],
                             target_parameters=["mlp.experts.down_proj", "mlp.experts.gate_up_proj"],
                             rank_pattern={"layers.1.mlp.experts.down_proj": 2}, alpha_pattern={"gate_up_proj": 3.0})
    hf = peft.get_peft_model(hf, config).eval()
    with torch.no_grad():  # peft's init_lora_weights=False leaves B small; make the update plain
        for name, p in hf.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    hf.save_pretrained(tmp_path / "adapter")
    model = load_peft(llmarch.from_hf(tmp_path / "base"), tmp_path / "adapter")
    assert {n: s.lora.rank for n, s in expert_sites(model).items()}["blocks.1.mlp.experts.down"] == 2
    ids = batch()
    expected = logits(hf, ids)
    assert (logits(model, ids) - expected).abs().max().item() <= 1e-4
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    save_peft(model, tmp_path / "again")  # and out again, patterns included
    again = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                           tmp_path / "again").eval()
    assert (logits(again, ids) - expected).abs().max().item() <= 1e-4


def test_expert_adapter_for_another_base(tmp_path):
    base("mixtral", tmp_path / "base")
    model = llmarch.from_hf(tmp_path / "base")
    apply_lora(model, LoRAConfig(rank=4, targets=("experts.down",)))
    save_peft(model, tmp_path / "adapter")
    base("qwen3_moe", tmp_path / "other")  # layer 0 has no experts
    with pytest.raises(LlmarchError, match="another base"):
        load_peft(llmarch.from_hf(tmp_path / "other"), tmp_path / "adapter")
