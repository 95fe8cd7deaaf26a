"""QLoRA (adapters/quantized.py): LoRA over frozen int4 weights that stay packed, gradients to the adapters and
through the quantized kernels to the layers below (quant/grad.py), `finetune --method qlora` and its checkpoint
in `generate`, its PEFT adapter in the `peft` library, its export as a float transformers checkpoint, and its bad
input."""
import copy
import json

import pytest
import torch
from safetensors.torch import load_file

import llmarch
from llmarch.adapters import LoRAConfig, adapters_off, apply_lora, lora_layers, merge, remove_lora
from llmarch.adapters.peft import save_peft
from llmarch.adapters.quantized import LoRAInt4Linear, LoRAQuantized
from llmarch.checkpoint import save_model
from llmarch.cli import main
from llmarch.data import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.quant import Int4Linear, Int8Linear, quantize
from llmarch.quant import grad, tiles
from llmarch.quant.rtn import int4_dequantize, int4_rtn, int8_rtn, pack_nibbles

from conftest import byte_checkpoint

SHAPE = dict(vocab_size=96, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=128, context_length=64)
TARGETS = ("qkv_proj", "o_proj", "gate_up", "down", "lm_head")


def ids(shape=(2, 12)):
    return torch.randint(0, SHAPE["vocab_size"], shape, generator=torch.Generator().manual_seed(1))


def int4_model(compute_dtype="bfloat16", **extra):
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **{**SHAPE, **extra}).eval()
    return quantize(model, "int4", group_size=32, compute_dtype=compute_dtype)


def randomize_b(model, std=0.1):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for b in layer.lora_B.values():
                b.copy_(torch.randn(b.shape, generator=g) * std)


def test_zero_b_leaves_the_int4_logits_unchanged():
    model, x = int4_model(), ids()
    before = model(x).logits
    apply_lora(model, LoRAConfig(rank=4, targets=TARGETS))
    assert all(isinstance(layer, LoRAInt4Linear) for layer in lora_layers(model).values())
    assert torch.equal(model(x).logits, before)
    randomize_b(model)
    assert (model(x).logits - before).abs().max() > 1e-2  # the adapters act once B is not zero
    with adapters_off(model):
        assert torch.equal(model(x).logits, before)
    remove_lora(model)  # the int4 layers again, the same buffers
    assert type(model.blocks[0].mlp.down) is Int4Linear and torch.equal(model(x).logits, before)


def test_only_adapters_train_and_the_int4_base_stays_as_it_was():
    model, x = int4_model(), ids()
    apply_lora(model, LoRAConfig(rank=4, targets=TARGETS))
    randomize_b(model)
    base = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    packed = {n: m.packed.clone() for n, m in model.named_modules() if isinstance(m, Int4Linear)}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(x).logits.square().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert {n for n, p in model.named_parameters() if p.grad is not None} == trainable
    # layer 0's adapters only learn through every frozen int4 layer above them: the gradient got through
    assert model.blocks[0].attn.qkv_proj.lora_A["q"].grad.abs().sum() > 0
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert all(torch.equal(m.packed, packed[n]) for n, m in model.named_modules() if isinstance(m, Int4Linear))


@pytest.mark.parametrize("layer,rows", [("int4", 128), ("int4", 48), ("int4-nibbles", 48), ("int8", 48)])
def test_input_gradient_through_a_quantized_layer(layer, rows, monkeypatch):
    """dL/dx = dL/dy W with W the weight as round-to-nearest quantized it, a few column slices at a time (the slice
    size forced small): read from the CPU tiles (128 rows, where this build packs them as tiles.py reads them),
    through the kernel (48 rows), from plain nibbles (the layout off the CPU), and from int8."""
    monkeypatch.setattr(grad, "COLUMN_BYTES", 1 << 10)
    assert not tiles.readable(48)  # and on an AVX-512 build, 128 rows take the fast path
    assert tiles.readable(128) or torch.backends.cpu.get_cpu_capability() != "AVX512"
    torch.manual_seed(0)
    w = torch.randn(rows, 640)
    if layer == "int8":
        q = Int8Linear.from_weight(w, None, torch.float32)
        codes, scales = int8_rtn(w)
        expected = codes.float() * scales[:, None]
    else:
        q = Int4Linear.from_weight(w, None, 64, torch.float32)
        expected = int4_dequantize(*int4_rtn(w, 64))
        if layer == "int4-nibbles":
            q.packed, q.tiles = pack_nibbles(q.codes()), None
    x = torch.randn(3, 5, 640, requires_grad=True)
    y = q(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(x.grad, g @ expected, atol=1e-4)


def test_the_model_holds_packed_int4_and_no_float_copy_of_a_base_weight():
    model = int4_model()
    apply_lora(model, LoRAConfig(rank=4, targets=TARGETS))
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, layer in lora_layers(model).items():
        assert layer.packed.dtype == torch.uint8 and layer.packed.numel() == layer.out_features * layer.in_features // 2
        full = (layer.out_features, layer.in_features)
        assert not any(t.shape == full and t.is_floating_point() for n, t in tensors.items() if n.startswith(name))
    floats = {n for n, t in tensors.items() if t.is_floating_point() and t.numel() >= 64 * 64}
    assert floats == {"embed.weight"}  # the only large float tensor: the embedding table, which is not quantized


def test_merge_is_refused_and_a_checkpoint_round_trips(tmp_path):
    model, x = int4_model(), ids()
    apply_lora(model, LoRAConfig(rank=4, targets=("qkv_proj.q", "qkv_proj.v", "down"), rslora=True))
    randomize_b(model)
    with pytest.raises(LlmarchError, match="quantized weight"):
        merge(model)
    with pytest.raises(LlmarchError, match="quantize before apply_lora"):
        quantize(apply_lora(llmarch.build("llama-tiny", **SHAPE), LoRAConfig(rank=2)), "int4", group_size=32)
    save_model(model, tmp_path / "ckpt")
    again = llmarch.load(tmp_path / "ckpt")
    assert torch.equal(again(x).logits, model(x).logits)
    assert sorted(again.blocks[1].attn.qkv_proj.lora_A) == ["q", "v"]


@pytest.fixture
def checkpoint(tmp_path):
    return byte_checkpoint(tmp_path)


def test_cli_qlora_run_generates_and_bad_input(checkpoint, tmp_path, capsys):
    data = tmp_path / "convs.jsonl"
    words = ["abcd", "bcad", "dcab", "cabd", "adbc", "bdca", "cdab", "dbca"] * 2
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": w},
                                                     {"role": "assistant", "content": w[::-1]}]}) + "\n"
                            for w in words))
    base = ["finetune", "--task", "sft", "--checkpoint", str(checkpoint), "--data", str(data), "--method", "qlora",
            "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--lora-rank", "4", "--lr", "1e-2"]
    assert main([*base, "--qlora-group-size", "32", "--out", str(tmp_path / "run")]) == 0
    assert "over int4 weights in groups of 32" in "".join(capsys.readouterr())
    tuned = llmarch.load(tmp_path / "run")  # int4 codes and unmerged adapters, as trained
    assert any(b.abs().sum() > 0 for layer in lora_layers(tuned).values() for b in layer.lora_B.values())
    assert main(["generate", "--checkpoint", str(tmp_path / "run"), "--prompt", "abcd", "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip()
    narrow = tmp_path / "narrow"  # width 96: groups of 64 do not divide it
    save_model(llmarch.build("llama-tiny", vocab_size=257, n_layers=1, d_model=96, n_heads=4, n_kv_heads=2,
                             ffn_hidden=128, context_length=64), narrow)
    ByteTokenizer().save(narrow)
    int8 = tmp_path / "int8"
    assert main(["quantize", "--checkpoint", str(checkpoint), "--method", "int8", "--out", str(int8)]) == 0
    capsys.readouterr()
    for args, message in (([*base, "--checkpoint", str(narrow)], "does not divide the width 96"),
                          ([*base, "--checkpoint", str(int8)], "already quantized (int8)"),
                          ([*base, "--qlora-group-size", "48"], "group_size must be one of"),
                          ([*base, "--lora-dora", "true"], "DoRA over quantized weights")):
        assert main([*args, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_peft_adapter_of_a_qlora_model_in_peft(tmp_path):
    """The PEFT adapter loads onto the transformers model whose weights are the int4 model's, dequantized, to the
    same logits (1e-4, the kernels computing in fp32). Onto the original full-precision model it cannot match
    that closely: the int4 base itself differs from it by the quantization error, which is what it shows."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    original = llmarch.build("llama-tiny", **SHAPE).eval()
    dequantized = copy.deepcopy(original)
    model = quantize(copy.deepcopy(original), "int4", group_size=32, compute_dtype="float32")
    with torch.no_grad():
        for name, layer in model.named_modules():
            if isinstance(layer, (Int4Linear, Int8Linear)):
                dequantized.get_submodule(name).weight.copy_(layer.dequantized())
    llmarch.to_hf(dequantized, tmp_path / "dequantized")
    llmarch.to_hf(original, tmp_path / "original")
    config = LoRAConfig(rank=4, targets=("qkv_proj", "o_proj", "gate_up.up", "down"))
    apply_lora(model, config)
    randomize_b(model)
    save_peft(model, tmp_path / "adapter")
    save_peft(apply_lora(copy.deepcopy(original), config), tmp_path / "float-lora")
    names = [set(load_file(tmp_path / d / "adapter_model.safetensors")) for d in ("adapter", "float-lora")]
    assert names[0] == names[1]  # the key names of a LoRA on the full-precision model
    x = ids()
    with torch.no_grad():
        ours = model(x).logits
        assert (ours - dequantized(x).logits).abs().max() > 1e-2  # the adapters matter
        gaps = {}
        for base in ("dequantized", "original"):
            hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / base).eval()
            hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
            gaps[base] = (hf(x).logits - ours).abs().max().item()
    assert gaps["dequantized"] <= 1e-4
    assert gaps["original"] > 1e-3  # the quantization error of the base, not of the adapter


@pytest.mark.parametrize("preset,method,targets", [
    ("llama-tiny", "int4", TARGETS),
    ("llama-tiny", "int8", ("qkv_proj.q", "down")),
    ("qwen3-tiny", "int4", ("qkv_proj", "lm_head")),  # a tied head with its own int4 copy: exported untied
    # the experts quantized one linear per expert; adapters on one expert's gate_up and every expert's down
    ("mixtral-tiny", "int4", ("qkv_proj", "experts.gate_up.1", "*.experts.down.*")),
])
def test_to_hf_of_a_qlora_model_is_the_float_model(preset, method, targets, tmp_path):
    """`convert --to-hf` of a QLoRA checkpoint: its int4 / int8 weights dequantized with the adapters merged in,
    which transformers runs to the quantized model's logits (1e-4, its kernels computing in fp32), the quantized
    model untouched."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    extra = dict(n_experts=4, ffn_hidden=64) if preset == "mixtral-tiny" else {}
    model = llmarch.build(preset, **{**SHAPE, **extra}).eval()
    quantize(model, method, group_size=32, compute_dtype="float32")
    apply_lora(model, LoRAConfig(rank=4, targets=targets))
    randomize_b(model)
    x = ids()
    with torch.no_grad():
        before = model(x).logits
        save_model(model, tmp_path / "qlora")
        assert main(["convert", "--to-hf", str(tmp_path / "qlora"), "--out", str(tmp_path / "hf")]) == 0
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
        assert (hf(x).logits - before).abs().max().item() <= 1e-4
        assert torch.equal(model(x).logits, before)
        assert any(isinstance(m, LoRAQuantized) for m in model.modules())
        with adapters_off(model):  # the adapters are in the export
            assert (hf(x).logits - model(x).logits).abs().max() > 1e-2


def test_qlora_on_stacked_experts_takes_the_stacked_weight_names(tmp_path):
    """LoRA names a mixture's experts by their stacked weight (blocks.1.mlp.experts.gate_up); over an int4 base
    each expert is its own quantized layer (experts.gate_up.0, .1 ...), which the same name now selects (it was
    refused)."""
    torch.manual_seed(0)
    model = llmarch.build("mixtral-tiny", vocab_size=64, d_model=64, n_layers=1, n_heads=4, n_kv_heads=2,
                          ffn_hidden=64, n_experts=4, context_length=32)
    quantize(model, "int4", group_size=32)
    apply_lora(model, LoRAConfig(rank=2, targets=("experts.gate_up",)))
    adapted = sorted(lora_layers(model))
    assert adapted == [f"blocks.0.mlp.experts.gate_up.{e}" for e in range(4)]
