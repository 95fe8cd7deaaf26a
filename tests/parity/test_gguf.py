"""GGUF files in: a tiny `transformers` LLaMA / Qwen2 written as GGUF the way llama.cpp's converter writes it
(q/k rows permuted for LLaMA, llama.cpp's tensor names and metadata keys) loads with llmarch.from_gguf to the
same logits; the real SmolLM2-135M-Instruct (Q4_1) answers a chat prompt sensibly."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.cli import main

from fixtures_gguf import smollm2_gguf  # noqa: F401 (a fixture)
from test_hf_families import COMMON, assert_close_on_real_tokens, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")


def llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf.py's LlamaModel.permute, as llama.cpp writes q and k."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(hf, path, arch: str, q8: bool = False) -> None:
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], c.num_hidden_layers)
    for name, t in hf.state_dict().items():
        if arch == "llama" and ".q_proj." in name:
            t = llama_cpp_permute(t, c.num_attention_heads)
        if arch == "llama" and ".k_proj." in name:
            t = llama_cpp_permute(t, c.num_key_value_heads)
        array = t.float().numpy()
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if q8 and array.ndim == 2:
            w.add_tensor(gguf_name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gguf_name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch,model,extra", [
    ("llama", "LlamaForCausalLM", dict(num_key_value_heads=2, rope_theta=5e5, tie_word_embeddings=False)),
    ("qwen2", "Qwen2ForCausalLM", dict(num_key_value_heads=2)),
])
def test_tiny_gguf_logits_equal_transformers(arch, model, extra, tmp_path):
    torch.manual_seed(0)
    conf = getattr(transformers, model.replace("ForCausalLM", "Config"))(**COMMON, **extra)
    hf = getattr(transformers, model)(conf).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    write_gguf(hf, tmp_path / "tiny.gguf", arch)
    ours = llmarch.from_gguf(tmp_path / "tiny.gguf")
    ids, mask = padded_batch(128)
    with torch.no_grad():
        got = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(got, hf_logits(hf, ids, mask), mask)
    write_gguf(hf, tmp_path / "q8.gguf", arch, q8=True)  # Q8_0 blocks, dequantized by the gguf package
    with torch.no_grad():
        q8 = llmarch.from_gguf(tmp_path / "q8.gguf")(ids, attention_mask=mask).logits
    real = mask.bool()
    assert (q8[real] - got[real]).abs().max() < 0.05 * got.abs().max()


def test_bad_gguf_is_one_line_exit_2(tmp_path, capsys):
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**COMMON)).eval()
    write_gguf(hf, tmp_path / "ok.gguf", "llama")
    data = (tmp_path / "ok.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:len(data) // 2])
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    w = gguf.GGUFWriter(str(tmp_path / "arch.gguf"), "arctic")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for name, text in (("cut.gguf", "truncated or corrupt GGUF"), ("junk.gguf", "truncated or corrupt GGUF"),
                       ("arch.gguf", "GGUF architecture 'arctic' is not supported")):
        code = main(["generate", "--checkpoint", str(tmp_path / name), "--prompt", "x"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and text in err, err


def test_q4_1_blocks_are_int4_groups_of_32_exactly():
    """llama.cpp's Q4_1 (per 32 weights: w = d q + m, q in 0..15) is llmarch's int4 at G 32 with zero = m + 8 d:
    round-to-nearest on the dequantized block finds the same codes and values again."""
    from llmarch.quant.rtn import int4_dequantize, int4_rtn

    rng = np.random.default_rng(0)
    w = rng.standard_t(4, size=(64, 256)).astype(np.float32)
    q41 = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_1)
    deq = torch.from_numpy(gguf.quants.dequantize(q41, gguf.GGMLQuantizationType.Q4_1).copy())
    assert torch.equal(int4_dequantize(*int4_rtn(deq, 32)), deq)


def test_smollm2_answers_a_chat_prompt(smollm2_gguf):  # noqa: F811
    from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
    from llmarch.generate.text import generate_text

    model, tok = llmarch.load(smollm2_gguf), checkpoint_tokenizer(smollm2_gguf)
    assert model.config.n_layers == 30 and model.config.n_kv_heads == 3 and model.config.tied_head
    assert "<|im_start|>" in tok.side_files["tokenizer_config.json"].decode()  # the chat template travels
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.encode(prompt)[:2] == [1, 4093]  # <|im_start|> is one control token, then "user"
    text = generate_text(model, tok, [prompt], max_new_tokens=12, temperature=0)[0]
    assert "Paris" in text.split("assistant")[-1], text  # special tokens are left out of the text


def test_smollm2_quantized_from_gguf_keeps_its_answer(smollm2_gguf, tmp_path, capsys):  # noqa: F811
    """Q4_1 is int4 in groups of 32 with a scale and a minimum: `quantize --method int4 --group-size 32` finds
    the file's own codes again, now on the int4 kernel, and the answer stays."""
    out = tmp_path / "int4"
    assert main(["quantize", "--checkpoint", str(smollm2_gguf), "--method", "int4", "--group-size", "32",
                 "--out", str(out)]) == 0
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(out), "--prompt", prompt, "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0
    assert "Paris" in capsys.readouterr().out


@pytest.mark.parametrize("arch,model", [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
def test_convert_to_gguf_reads_back(arch, model, tmp_path, capsys):
    """llmarch checkpoint -> `convert --to-gguf` (F32 exact, Q8_0 and Q4_0 close) -> from_gguf; its byte-level BPE
    tokenizer and chat template travel in the metadata."""
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import train_bpe
    from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer

    torch.manual_seed(0)
    conf = getattr(transformers, model.replace("ForCausalLM", "Config"))(**{**COMMON, "vocab_size": 320},
                                                                        num_key_value_heads=2)
    hf = getattr(transformers, model)(conf).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = llmarch.from_hf(tmp_path / "hf")
    tok = train_bpe(["def main():\n    return 12345\n" * 40, "class Foo:\n    pass\n" * 40], vocab_size=300)
    tok.side_files["tokenizer_config.json"] = b'{"chat_template": "{{ messages }}"}'
    save_model(ours, tmp_path / "ckpt")
    tok.save(tmp_path / "ckpt")
    ids, mask = padded_batch(320)
    want = ours(ids, attention_mask=mask).logits.detach()
    real = mask.bool()
    # measured max |dlogit|: Q8_0 0.007, Q4_0 0.10-0.12, on logits up to 0.69-0.74
    for kind, tol in (("f32", 1e-5), ("q8_0", 0.05), ("q4_0", 0.25)):
        out = tmp_path / f"{kind}.gguf"
        assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--gguf-type", kind, "--out", str(out)]) == 0
        with torch.no_grad():
            got = llmarch.load(out)(ids, attention_mask=mask).logits
        assert (got[real] - want[real]).abs().max() <= tol * max(1.0, want.abs().max().item())
    back = checkpoint_tokenizer(tmp_path / "f32.gguf")
    text = "def main():\n    return 12345 + x\n"
    assert back.encode(text) == tok.encode(text) and back.decode(back.encode(text)) == text
    assert back.eos_id == tok.eos_id and b"{{ messages }}" in back.side_files["tokenizer_config.json"]
    assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "f32.gguf")]) == 2
    assert "new .gguf file" in capsys.readouterr().err
    # and back to Hugging Face with the tokenizer from the file's metadata (convert had dropped it)
    assert main(["convert", "--to-hf", str(tmp_path / "f32.gguf"), "--out", str(tmp_path / "back")]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    if arch == "llama":  # transformers 5 picks Qwen2Tokenizer by model_type, which splits its own way
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert hf_tok.chat_template == "{{ messages }}"
    assert llmarch.load(tmp_path / "back") is not None and checkpoint_tokenizer(tmp_path / "back").encode(text) \
        == tok.encode(text)
    again = getattr(transformers, model).from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask).logits[real] - want[real]).abs().max() <= 1e-4


def test_info_reads_a_gguf_header_without_dequantizing(smollm2_gguf, capsys):  # noqa: F811
    """SmolLM2's file: 134.5M parameters, 210 Q4_1 matrices, the Q8_0 embedding and 61 F32 norms, 5.74 bits per
    parameter as stored; as llmarch loads it (fp32), 4 bytes per parameter."""
    import json

    assert main(["info", str(smollm2_gguf), "--dtype", "fp32", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["parameters"] == 134_515_008
    assert facts["file_tensor_types"] == {"Q8_0": 1, "F32": 61, "Q4_1": 210}
    assert 5.5 < 8 * facts["file_weight_bytes"] / facts["parameters"] < 6.0
    assert facts["weight_bytes"] == 4 * facts["parameters"]


def test_finetune_reads_a_gguf_checkpoint_with_its_chat_template(tmp_path, capsys):
    """`finetune --task sft --checkpoint x.gguf`: the weights, the tokenizer and the chat template all from the
    file (the SFT loss masks by the template's assistant turns, so a template that did not travel would fail)."""
    import json

    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import train_bpe

    torch.manual_seed(0)
    tok = train_bpe(["user: abc\nassistant: cba\n" * 40, "def main():\n    return 1\n" * 40], vocab_size=300)
    tok.side_files["tokenizer_config.json"] = json.dumps({"chat_template": (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}")}).encode()
    save_model(llmarch.build("llama-tiny", vocab_size=320, n_layers=1, d_model=64, n_heads=4, n_kv_heads=2,
                             ffn_hidden=128, context_length=64), tmp_path / "ckpt")
    tok.save(tmp_path / "ckpt")
    gguf = tmp_path / "tiny.gguf"
    assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--out", str(gguf)]) == 0
    data = tmp_path / "chats.jsonl"
    words = ["abc", "bca", "cab", "acb", "bac", "cba"] * 4
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": w},
                                                     {"role": "assistant", "content": w[::-1]}]}) + "\n"
                            for w in words))
    capsys.readouterr()
    assert main(["finetune", "--task", "sft", "--checkpoint", str(gguf), "--data", str(data), "--out",
                 str(tmp_path / "sft"), "--steps", "1", "--eval-every", "1", "--batch-size", "2"]) == 0
    assert "held-out assistant loss" in capsys.readouterr().out


BYTE_TEXTS = ["def main():\n    return 12345\n", "héllo wörld ✓ 你好  \t\n\n x", "it's <|endoftext|> <|mask|>"]


def byte_checkpoint(path) -> "llmarch.data.tokenizer.ByteTokenizer":
    """A random 1-layer llmarch LLaMA with llmarch's byte tokenizer (mask and two sentinels: 260 ids of 272 rows)."""
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer

    torch.manual_seed(0)
    save_model(llmarch.build("llama-tiny", vocab_size=272, n_layers=1, d_model=64, n_heads=4, n_kv_heads=2,
                             ffn_hidden=128, context_length=64), path)
    tok = ByteTokenizer(mask=True, sentinels=2)
    tok.save(path)
    return tok


def test_convert_to_gguf_writes_the_byte_tokenizer(tmp_path, capsys):
    """llmarch's byte tokenizer goes into the file as a merge-less gpt2 vocabulary: read back, it encodes and
    decodes every text to the byte tokenizer's ids (the special tokens' names aside: in the file they are control
    tokens, matched whole), its specials at their ids; the weights read back exactly. A checkpoint without a
    tokenizer is refused in one line and leaves no file."""
    from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer

    tok = byte_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "byte.gguf"
    assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--gguf-type", "f32", "--out", str(out)]) == 0
    fields = gguf.GGUFReader(str(out)).fields
    assert fields["tokenizer.ggml.model"].contents() == "gpt2" and fields["tokenizer.ggml.merges"].contents() == []
    back = checkpoint_tokenizer(out)
    for text in BYTE_TEXTS[:2]:
        assert back.encode(text) == tok.encode(text) and back.decode(tok.encode(text)) == tok.decode(tok.encode(text))
    assert back.encode("a<|endoftext|><|mask|><extra_id_1>") == [97, 256, 257, 259]
    assert back.eos_id == 256 and back.mask_id == 257 and back.sentinel_ids == [258, 259]
    ids = torch.randint(0, 272, (1, 12))
    with torch.no_grad():
        want = llmarch.load(tmp_path / "ckpt")(ids).logits
        assert (llmarch.load(out)(ids).logits - want).abs().max() <= 1e-5
    (tmp_path / "ckpt" / "tokenizer.json").unlink()
    capsys.readouterr()
    assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "none.gguf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no tokenizer.json" in err, err
    assert not list(tmp_path.glob("*none.gguf*"))


def test_to_gguf_refuses_a_tokenizer_it_cannot_write(tmp_path):
    """A vocabulary larger than the model's rows, a WordPiece one that is not BERT's (no BertNormalizer and
    BertPreTokenizer, which llama.cpp's WPM tokenizer stands for): one-line errors, and no file."""
    from tokenizers import Tokenizer, models

    from llmarch.data.tokenizer import BPETokenizer, ByteTokenizer
    from llmarch.errors import LlmarchError
    from llmarch.interop.gguf_writer import to_gguf

    model = llmarch.build("llama-tiny", vocab_size=200, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2,
                          ffn_hidden=64)
    wordpiece = BPETokenizer(Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")), eos_id=0)
    for tok, problem in ((ByteTokenizer(), "tokenizer has 257 tokens"), (wordpiece, "BERT's WordPiece .* differs")):
        with pytest.raises(LlmarchError, match=problem):
            to_gguf(model, tmp_path / "x.gguf", "f16", tok)
        assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("key, change, message", [
    ("tokenizer.ggml.tokens", None, "tokenizer.ggml.tokens is missing"),
    ("tokenizer.ggml.eos_token_id", 10**6, "eos id 1000000 is not one of its"),
    ("tokenizer.ggml.merges", ["zzzq yyyq"], "tokenizer metadata is inconsistent"),
])
def test_damaged_tokenizer_metadata_is_one_line_exit_2(tmp_path, capsys, key, change, message):
    """A .gguf whose tokenizer metadata is missing or contradicts itself: one line naming it, exit 2 (these were
    tracebacks from the tokenizer's construction)."""
    import gguf as gguf_package
    import numpy as np

    from llmarch.data.tokenizer import train_bpe
    from llmarch.interop.gguf_writer import to_gguf

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", n_layers=1, d_model=64, n_heads=4, n_kv_heads=2, ffn_hidden=128,
                          vocab_size=320, context_length=64).eval()
    to_gguf(model, tmp_path / "good.gguf", "f32", train_bpe(["def main():\n    return 1\n" * 40], vocab_size=300))
    reader = gguf_package.GGUFReader(str(tmp_path / "good.gguf"))
    w = gguf_package.GGUFWriter(str(tmp_path / "bad.gguf"), reader.fields["general.architecture"].contents())
    for k, f in reader.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture" or (k == key and change is None):
            continue
        vtype = f.types[0]
        value = change if k == key else f.contents()
        sub = f.types[-1] if vtype == gguf_package.GGUFValueType.ARRAY else None
        w.add_key_value(k, value, vtype, sub_type=sub)
    for t in reader.tensors:
        w.add_tensor(t.name, np.array(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert main(["generate", "--checkpoint", str(tmp_path / "bad.gguf"), "--prompt", "def", "--max-new-tokens",
                 "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
