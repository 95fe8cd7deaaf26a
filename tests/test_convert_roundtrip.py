"""A round trip Hugging Face -> llmarch -> Hugging Face keeps the tokenizer and everything that comes with it
(special-token ids in config.json, generation_config.json, tokenizer_config.json with its chat template), as
`transformers` reads them; the byte tokenizer exports as a real HF tokenizer; `llmarch info` reads any model
directory; bad checkpoint files are one-line errors."""
import json
import struct

import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.checkpoint import save_model
from llmarch.cli import main
from llmarch.data import ByteTokenizer, load_tokenizer, train_bpe

from conftest import tiny

transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TEXTS = ["hello world", "<|im_start|>user\nhi there<|im_end|>\n", "héllo wörld — 😀\n\tok", ""]
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "how are you?"}]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def hf_chat(tmp_path_factory):
    """A tiny chat checkpoint as transformers writes it: LlamaForCausalLM, a BPE tokenizer with <|im_start|> (1)
    and <|im_end|> (2, the eos), a chat template in tokenizer_config.json, generation_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    d = tmp_path_factory.mktemp("hf-chat")
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(["hello world, how are you? hi there, be brief"] * 20, trainer=trainer)
    tk.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "additional_special_tokens": ["<|im_start|>",
                                                                                              "<|im_end|>"],
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False, "model_max_length": 64}, indent=2))
    (d / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=304, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                   bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False)
    transformers.LlamaForCausalLM(cfg).save_pretrained(d)
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2,
                                                          "pad_token_id": 2, "do_sample": False}, indent=2))
    return d


def same_tokenizer(a_dir, b_dir):
    a, b = (transformers.AutoTokenizer.from_pretrained(str(x)) for x in (a_dir, b_dir))
    for text in TEXTS:
        assert a(text).input_ids == b(text).input_ids
        assert a.decode(a(text).input_ids) == b.decode(b(text).input_ids)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "all_special_tokens"):
        assert getattr(a, name) == getattr(b, name), name
    for generation_prompt in (False, True):
        kw = dict(tokenize=False, add_generation_prompt=generation_prompt)
        assert a.apply_chat_template(CHAT, **kw) == b.apply_chat_template(CHAT, **kw)
    return b


def test_round_trip_keeps_ids_generation_config_and_chat_template(hf_chat, tmp_path, capsys):
    ours, back = tmp_path / "ours", tmp_path / "back"
    assert run(capsys, "convert", "--from-hf", hf_chat, "--out", ours)[0] == 0
    assert json.loads((ours / "config.json").read_text())["eos_id"] == 2
    tok = load_tokenizer(ours)  # llmarch's own checkpoint keeps the files beside its tokenizer.json
    assert tok.eos_id == 2 and tok.eos_ids == [2]
    for name in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        assert (ours / name).read_bytes() == (hf_chat / name).read_bytes(), name
    assert run(capsys, "convert", "--to-hf", ours, "--out", back)[0] == 0

    src_cfg, back_cfg = (json.loads((d / "config.json").read_text()) for d in (hf_chat, back))
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert back_cfg[name] == src_cfg[name], name
    for name in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        assert (back / name).read_bytes() == (hf_chat / name).read_bytes(), name
    assert not (back / "hf_token_ids.json").exists()
    hf_tok = same_tokenizer(hf_chat, back)
    assert hf_tok.eos_token == "<|im_end|>" and "<|im_start|>user" in hf_tok.apply_chat_template(CHAT, tokenize=False)
    assert transformers.GenerationConfig.from_pretrained(str(back)).eos_token_id == 2
    a, b = (transformers.AutoModelForCausalLM.from_pretrained(str(d)) for d in (hf_chat, back))
    ids = torch.tensor([hf_tok("hello world").input_ids])
    assert torch.equal(a(ids).logits, b(ids).logits)


def test_chat_template_jinja_file_and_eos_list_survive(hf_chat, tmp_path, capsys):
    """transformers 5 saves the template as chat_template.jinja; generation_config may list several eos ids."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(hf_chat, src)
    (src / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text())
    del tok_cfg["chat_template"]
    (src / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    gen = {"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": 2}
    (src / "generation_config.json").write_text(json.dumps(gen))
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "eos_token_id": [2, 0]}))
    assert run(capsys, "convert", "--from-hf", src, "--out", tmp_path / "ours")[0] == 0
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["eos_id"] is None  # a list is the tokenizer's
    assert load_tokenizer(tmp_path / "ours").eos_ids == [2, 0]
    assert run(capsys, "convert", "--to-hf", tmp_path / "ours", "--out", tmp_path / "back")[0] == 0
    assert (tmp_path / "back" / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    assert json.loads((tmp_path / "back" / "config.json").read_text())["eos_token_id"] == [2, 0]
    assert json.loads((tmp_path / "back" / "generation_config.json").read_text()) == gen
    same_tokenizer(src, tmp_path / "back")


def test_generation_stops_at_any_hf_eos(hf_chat, tmp_path, capsys):
    """generate ends at the first new token among generation_config's eos ids, and drops it from the text."""
    import shutil

    from llmarch.generate import generate_text

    model, tok = llmarch.load(hf_chat), load_tokenizer(hf_chat)
    prompt = tok.encode("hello")
    free = llmarch.generate(model, [prompt], max_new_tokens=12)[0][len(prompt):]  # no eos: all 12 new tokens
    stop_at = next(k for k in range(2, len(free)) if free[k] not in free[:k] + [2])
    src = tmp_path / "src"
    shutil.copytree(hf_chat, src)
    (src / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, free[stop_at]]}))
    assert run(capsys, "convert", "--from-hf", src, "--out", tmp_path / "ours")[0] == 0
    model, tok = llmarch.load(tmp_path / "ours"), load_tokenizer(tmp_path / "ours")
    end = min([stop_at, *([free.index(2)] if 2 in free else [])])
    expected = tok.decode(prompt + free[:end])
    assert generate_text(model, tok, ["hello"], 12) == [expected]
    code, out, _ = run(capsys, "generate", "--checkpoint", tmp_path / "ours", "--prompt", "hello",
                       "--max-new-tokens", 12, "--temperature", 0, "--no-stream")
    assert code == 0 and out.rstrip("\n") == expected


def byte_run(tmp_path, tok):
    ckpt = tmp_path / "byte-ckpt"
    save_model(tiny(vocab_size=tok.vocab_size), ckpt)
    tok.save(ckpt)
    return ckpt


@pytest.mark.parametrize("options", [{}, {"mask": True, "sentinels": 2}])
def test_byte_tokenizer_exports_as_a_real_hf_tokenizer(tmp_path, capsys, options):
    tok = ByteTokenizer(**options)
    code, _, err = run(capsys, "convert", "--to-hf", byte_run(tmp_path, tok), "--out", tmp_path / "hf")
    assert code == 0, err
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for text in [*TEXTS, "\x00\x01 \x7f\u0100 spaces  ", "a" * 300]:
        ids = tok.encode(text)
        assert hf(text).input_ids == ids
        assert hf.decode(ids) == tok.decode(ids) == text
    assert hf.decode([0xE2, 0x82, 65]) == tok.decode([0xE2, 0x82, 65])  # a cut multi-byte character
    assert hf.decode([104, 105, 256], skip_special_tokens=True) == tok.decode([104, 105, 256]) == "hi"
    assert hf.eos_token == "<|endoftext|>" and hf.eos_token_id == 256 and len(hf) == tok.vocab_size
    for i in [tok.mask_id, *tok.sentinel_ids]:
        if i is not None:
            assert hf.convert_tokens_to_ids(tok.token_text(i)) == i
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == 256
    assert transformers.GenerationConfig.from_pretrained(str(tmp_path / "hf")).eos_token_id == 256
    assert run(capsys, "convert", "--from-hf", tmp_path / "hf", "--out", tmp_path / "back")[0] == 0
    assert load_tokenizer(tmp_path / "back").encode("héllo") == tok.encode("héllo")


def test_llmarch_bpe_tokenizer_exports_with_its_special_tokens(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    save_model(tiny(vocab_size=300), ckpt)
    tok = train_bpe(["def main():\n    return 0\n" * 50, "import os, sys\n"], vocab_size=300, mask=True)
    tok.save(ckpt)
    assert run(capsys, "convert", "--to-hf", ckpt, "--out", tmp_path / "hf")[0] == 0
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for text in ["def main():\n    return 0\n", "import os"]:
        assert hf(text).input_ids == tok.encode(text) and hf.decode(tok.encode(text)) == text
    assert (hf.eos_token, hf.eos_token_id, hf.mask_token_id) == ("<|endoftext|>", tok.eos_id, tok.mask_id)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == tok.eos_id


def test_info_reads_hf_dirs_configs_checkpoints_and_runs(hf_chat, tmp_path, capsys):
    code, out, _ = run(capsys, "info", hf_chat, "--json")
    facts = json.loads(out)
    assert code == 0 and facts["parameters"] == sum(p.numel() for p in llmarch.from_hf(hf_chat).parameters())
    assert json.loads(run(capsys, "info", hf_chat / "config.json", "--json")[1]) == facts
    ckpt = tmp_path / "run" / "step-000001"
    save_model(llmarch.from_hf(hf_chat), ckpt)
    (tmp_path / "run" / "latest").write_text("step-000001\n")
    for target in (ckpt, tmp_path / "run", ckpt / "config.json"):
        assert json.loads(run(capsys, "info", target, "--json")[1]) == facts, target
    code, out, _ = run(capsys, "info", hf_chat, "--n-layers", 2)
    assert code == 0 and "2 layers" in out
    for bad in (tmp_path / "nowhere", tmp_path / "nowhere.json", tmp_path):
        code, out, err = run(capsys, "info", bad)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "does not exist" in run(capsys, "info", tmp_path / "nowhere")[2]


def hf_dir(tmp_path):
    llmarch.to_hf(tiny(), tmp_path)
    return tmp_path


def test_hf_config_missing_or_wrong_fields(tmp_path, capsys):
    d = hf_dir(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "hidden_size"}))
    with pytest.raises(LlmarchError, match="lacks hidden_size, which model_type llama needs"):
        llmarch.from_hf(d)
    code, _, err = run(capsys, "info", d)
    assert code == 2 and "lacks hidden_size" in err and len(err.strip().splitlines()) == 1
    (d / "config.json").write_text(json.dumps({**cfg, "hidden_size": "big"}))
    with pytest.raises(LlmarchError, match="d_model must be an integer, got 'big'"):  # ModelConfig's own check
        llmarch.from_hf(d)
    (d / "config.json").write_text(json.dumps({**cfg, "rope_parameters": [10000]}))
    with pytest.raises(LlmarchError, match="has a field of the wrong type or value for model_type llama"):
        llmarch.from_hf(d)
    (d / "config.json").write_text(json.dumps([cfg]))
    with pytest.raises(LlmarchError, match="holds a JSON list, not an object"):
        llmarch.from_hf(d)


def test_index_weight_map_of_the_wrong_shape(tmp_path):
    from llmarch.interop.hf import to_hf

    d = tmp_path
    to_hf(tiny(), d, max_shard_bytes=20_000)
    index = d / "model.safetensors.index.json"
    good = json.loads(index.read_text())
    for weight_map, message in [(list(good["weight_map"]), "weight_map is a JSON list, not an object"),
                                ({"model.norm.weight": 3}, "maps tensor model.norm.weight to 3"),
                                ({"model.norm.weight": "../x.safetensors"}, "not a file name in its directory")]:
        index.write_text(json.dumps({**good, "weight_map": weight_map}))
        with pytest.raises(LlmarchError, match=message):
            llmarch.from_hf(d)
    index.write_text(json.dumps([1, 2]))
    with pytest.raises(LlmarchError, match="has no weight_map"):
        llmarch.from_hf(d)


def write_safetensors(path, header, data=b"\0" * 64):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize("header, message", [
    ([1, 2], "the header is a JSON list"),
    ({"w": [0, 4]}, "header entry w is not an object"),
    ({"w": {"dtype": "F32", "shape": [1]}}, "header entry w is not an object"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, r"data_offsets \[-4, 0\]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, r"data_offsets \[8, 4\]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, r"data_offsets \[0\]"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, r"shape \[-1\]"),
    ({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}}, "shape '1'"),
    ({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, "unsupported dtype"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "v": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "tensor v starts at data byte 4.*overlapping"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "tensor w starts at data byte 4"),
])
def test_safetensors_header_of_the_wrong_shape(tmp_path, header, message):
    from llmarch.interop.safetensors_io import SafetensorsFile

    write_safetensors(tmp_path / "model.safetensors", header)
    with pytest.raises(LlmarchError, match=message):
        SafetensorsFile(tmp_path / "model.safetensors")


def test_bad_generation_config_is_one_line(hf_chat, tmp_path, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(hf_chat, src)
    (src / "generation_config.json").write_text(json.dumps({"eos_token_id": "<|im_end|>"}))
    code, _, err = run(capsys, "convert", "--from-hf", src, "--out", tmp_path / "out")
    assert code == 2 and "eos_token_id must be a token id" in err and len(err.strip().splitlines()) == 1
