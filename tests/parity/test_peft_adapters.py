"""PEFT adapter files both ways, against the real `peft` package: llmarch's LoRA saved in PEFT's format loads onto
the transformers model that llmarch exports (to_hf) to the same logits, and an adapter that `peft` made on a
transformers model loads onto llmarch's from_hf model to the same logits (fp32, 1e-4)."""
import json

import pytest
import torch

import llmarch
from llmarch.adapters import LoRAConfig, apply_lora, lora_layers
from llmarch.adapters.peft import load_peft, save_peft
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

SHAPE = dict(vocab_size=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffn_hidden=48,
             context_length=64)


def batch(vocab, lengths=(14, 9)):
    g = torch.Generator().manual_seed(3)
    T = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, T - n:] = 1
    return ids, mask


def theirs(model, ids, mask):
    with torch.no_grad():
        return model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits


def ours(model, ids, mask):
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits


def close(a, b, mask):
    real = mask.bool()
    assert (a[real] - b[real]).abs().max().item() <= 1e-4


def randomize(model):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for b in layer.lora_B.values():
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            for m in (layer.lora_magnitude or {}).values():
                m.mul_(1 + 0.3 * torch.rand(m.shape, generator=g))


@pytest.mark.parametrize("preset,options", [
    ("llama-tiny", dict(targets=("qkv_proj", "o_proj", "gate_up", "down", "lm_head"))),
    ("llama-tiny", dict(targets=("qkv_proj.q", "qkv_proj.v", "mlp.gate_up.up"), rslora=True, alpha=4)),
    ("qwen3-tiny", dict(targets=("qkv_proj", "gate_up"), dora=True)),
])
def test_ours_loads_in_peft(preset, options, tmp_path):
    torch.manual_seed(0)
    model = llmarch.build(preset, **SHAPE).eval()
    to_hf(model, tmp_path / "base")
    apply_lora(model, LoRAConfig(rank=4, **options))
    randomize(model)
    save_peft(model, tmp_path / "adapter", base=str(tmp_path / "base"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids, mask = batch(SHAPE["vocab_size"])
    mine = ours(model, ids, mask)
    close(theirs(hf, ids, mask), mine, mask)
    assert (mine - ours(llmarch.build(preset, **SHAPE).eval(), ids, mask)).abs().max() > 1e-3  # adapters matter


@pytest.mark.parametrize("options", [
    dict(target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"]),
    dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "lm_head"], use_rslora=True),
    dict(target_modules=["k_proj", "gate_proj", "up_proj"], use_dora=True),
    dict(target_modules=["q_proj", "v_proj", "down_proj"], rank_pattern={"v_proj": 2, "layers.1.mlp.down_proj": 3},
         alpha_pattern={"q_proj": 3.0}),
])
def test_peft_loads_in_ours(options, tmp_path):
    torch.manual_seed(0)
    conf = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    hf = transformers.LlamaForCausalLM(conf).eval()
    hf.save_pretrained(tmp_path / "base")
    hf = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **options)).eval()
    if options.get("use_dora"):
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if "lora_magnitude" in name:
                    p.mul_(1.2)
    hf.save_pretrained(tmp_path / "adapter")
    model = load_peft(from_hf(tmp_path / "base"), tmp_path / "adapter")
    ids, mask = batch(96)
    close(ours(model, ids, mask), theirs(hf, ids, mask), mask)
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    save_peft(model, tmp_path / "again")  # and out again, patterns included
    hf_again = peft.PeftModel.from_pretrained(transformers.LlamaForCausalLM.from_pretrained(tmp_path / "base"),
                                              tmp_path / "again").eval()
    close(theirs(hf_again, ids, mask), theirs(hf, ids, mask), mask)


def test_adapter_for_another_base(tmp_path):
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **SHAPE)
    apply_lora(model, LoRAConfig(rank=4))
    save_peft(model, tmp_path / "adapter")
    wider = llmarch.build("llama-tiny", **{**SHAPE, "d_model": 64})
    with pytest.raises(LlmarchError, match="another base"):
        load_peft(wider, tmp_path / "adapter")
    deeper = dict(json.loads((tmp_path / "adapter/adapter_config.json").read_text()), peft_type="IA3")
    (tmp_path / "adapter/adapter_config.json").write_text(json.dumps(deeper))
    with pytest.raises(LlmarchError, match="IA3"):
        load_peft(llmarch.build("llama-tiny", **SHAPE), tmp_path / "adapter")


def test_an_adapter_on_a_layer_held_fused_is_named_as_such(tmp_path):
    """A PEFT adapter on phi3's own fused qkv_proj: the model has that layer, llmarch holds it fused (its PEFT slices
    are ours, not PEFT's whole-layer ones); the error says so rather than blaming another base."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    conf = transformers.Phi3Config(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    transformers.Phi3ForCausalLM(conf).save_pretrained(tmp_path / "base")
    base = transformers.Phi3ForCausalLM.from_pretrained(tmp_path / "base")
    peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["qkv_proj"])).save_pretrained(tmp_path / "a")
    with pytest.raises(LlmarchError, match="a layer this model has but llmarch holds fused with others"):
        load_peft(from_hf(tmp_path / "base"), tmp_path / "a")


def chatml_checkpoint(path):
    """A tiny transformers Llama with a byte-level tokenizer that knows ChatML's special tokens and its template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from llmarch.data.tokenizer import _byte_chars

    chars = _byte_chars()
    tk = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>",
                                                  pad_token="<|endoftext|>")
    hf_tok.chat_template = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                            "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    torch.manual_seed(0)
    conf = transformers.LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                    eos_token_id=258, pad_token_id=256)
    transformers.LlamaForCausalLM(conf).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return hf_tok


def test_sft_of_a_hf_checkpoint_gives_a_peft_adapter(tmp_path):
    """llmarch finetune --task sft on a transformers checkpoint with its own chat template: the run's adapter
    folder loads with peft onto the original model and gives the logits of the run's (merged) checkpoint."""
    from llmarch.data.chat import template_for
    from llmarch.data.tokenizer import load_tokenizer
    from llmarch.train.finetune import FinetuneConfig, finetune

    hf_tok = chatml_checkpoint(tmp_path / "hf")
    convs = [[{"role": "user", "content": w}, {"role": "assistant", "content": w[::-1]}]
             for w in ("abc", "hello", "peft", "lora", "chat", "model", "adapt", "merge") * 4]
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    conv = convs[0]
    template = template_for(load_tokenizer(tmp_path / "hf"))
    assert template.render(conv) == hf_tok.apply_chat_template(conv, tokenize=False)
    fc = FinetuneConfig(task="sft", data=str(data), steps=3, batch_size=2, eval_every=3, lr=1e-2,
                        lora_targets="qkv_proj,gate_up.up,down")
    result = finetune(tmp_path / "hf", fc, tmp_path / "run", verbose=False)
    assert result.adapter is not None
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf = peft.PeftModel.from_pretrained(hf, result.adapter).eval()
    ids, mask = batch(259)
    close(theirs(hf, ids, mask), ours(llmarch.load(result.checkpoint).eval(), ids, mask), mask)
