"""llama.cpp itself (llama-cpp-python) on GGUF files: what `llmarch convert --to-gguf` writes (F32, F16, Q8_0,
Q4_0) decodes to llmarch's greedy tokens with llmarch's logits; the converter-style Qwen3, Gemma 2/3 and Phi-3
files of test_gguf_archs.py give transformers' logits in llama.cpp too (so they mean there what from_gguf
reads them as); SentencePiece vocabularies tokenize and detokenize as checkpoint_tokenizer's. Skipped where
llama-cpp-python is not installed.

llama-cpp-python 0.3.36's CPU backend crashes (SIGSEGV) on this machine (AVX-512, AMX) when it places Q8_0,
Q4_0 or Q4_1 weights in its extra (repacked) buffer types, SmolLM2's Q4_1 file and a file llama.cpp quantized
itself alike, so the files are loaded through its C API with use_extra_bufts off, one token per decode."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.cli import main
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer

from test_gguf_archs import CASES, build, write_like_llama_cpp
from test_gguf_spm import SPECIAL_TEXTS, TEXTS, add_spm_vocab, spm_vocab, write_spm_gguf

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


class LlamaCpp:
    """One GGUF file in llama.cpp: step(token) decodes one token and returns the logits after it."""

    def __init__(self, path, n_ctx: int = 128, exact: bool = False):
        import llama_cpp._logger

        llama_cpp._logger.set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = False  # see the module docstring
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        assert self.model, f"llama.cpp cannot load {path}"
        ctx = llama_cpp.llama_context_default_params()
        ctx.n_ctx, ctx.n_threads, ctx.n_threads_batch = n_ctx, 1, 1  # a tiny model: no thread hand-offs
        if exact:  # an F32 KV cache and no flash attention (which rounds q to F16): llama.cpp's logits to ~1e-5
            ctx.type_k = ctx.type_v = 0  # GGML_TYPE_F32
            ctx.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(self.model, ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))

    def step(self, token: int) -> np.ndarray:
        one = (llama_cpp.llama_token * 1)(token)
        assert llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(one, 1)) == 0
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def greedy_against_llmarch(path, model, prompt: list[int], new: int = 8, exact: bool = False):
    """llama.cpp's greedy continuation of `prompt` on the file (seq), llmarch's by `model` (ours), and the largest
    |logit| difference between the two on seq's prefixes: what the GGUF family tests compare."""
    seq, theirs = llama_cpp_greedy(path, prompt, new, exact=exact)
    with torch.no_grad():
        ours = llmarch.generate(model, torch.tensor([prompt]), max_new_tokens=new)[0].tolist()
        logits = model(torch.tensor([seq[:-1]])).logits[0].numpy()
    return seq, ours, np.abs(theirs - logits).max()


def llama_cpp_greedy(path, prompt: list[int], new: int, exact: bool = False) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy continuation of `prompt` and its logits at every position but the last (exact: see
    LlamaCpp)."""
    lc = LlamaCpp(path, exact=exact)
    try:
        logits = [lc.step(t) for t in prompt]
        seq = list(prompt)
        for _ in range(new):
            seq.append(int(np.argmax(logits[-1])))
            if len(seq) < len(prompt) + new:
                logits.append(lc.step(seq[-1]))
    finally:
        lc.close()
    return seq, np.stack(logits)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random 2-layer llmarch LLaMA (vocabulary 320) with a byte-level BPE tokenizer of 300 tokens."""
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import train_bpe

    path = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=320, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                          ffn_hidden=128, context_length=64)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    save_model(model, path)
    train_bpe(["def main():\n    return 12345\n" * 40, "class Foo:\n    pass\n" * 40], vocab_size=300).save(path)
    return path


# measured max |dlogit| over prompt and 16 greedy tokens (logits up to 0.62): F32 1.1e-4, F16 2.2e-4 (llama.cpp
# keeps its KV cache in F16), Q8_0 4.6e-3, Q4_0 5.1e-3 (it quantizes the activations to Q8 for those products);
# greedy tokens equal for F32, F16, Q4_0; Q8_0 parts at the 3rd new token, where llmarch's top two are 4.1e-4 apart
@pytest.mark.parametrize("kind,tol", [("f32", 1e-3), ("f16", 1e-3), ("q8_0", 2e-2), ("q4_0", 2e-2), ("q4_1", 2e-2),
                                      ("q5_0", 2e-2), ("q5_1", 2e-2)])
def test_llama_cpp_decodes_our_gguf_as_llmarch(kind, tol, tiny_checkpoint, tmp_path):
    out = tmp_path / f"{kind}.gguf"
    assert main(["convert", "--to-gguf", str(tiny_checkpoint), "--gguf-type", kind, "--out", str(out)]) == 0
    tok = checkpoint_tokenizer(out)
    vocab = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    for text in TEXTS + ["class Foo(x):  pass  # 12345678 ok?!\n\n", "it's don't   we'll"]:
        assert vocab.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text), text
    prompt = tok.encode("def main():\n    return 12")
    seq, theirs = llama_cpp_greedy(out, prompt, 16)
    model = llmarch.load(out)
    with torch.no_grad():
        ours = llmarch.generate(model, torch.tensor([prompt]), max_new_tokens=16)[0].tolist()
        logits = model(torch.tensor([seq[:-1]])).logits[0].numpy()
    assert np.abs(theirs - logits).max() <= tol
    if kind in ("f32", "f16"):
        assert ours == seq
    else:  # Q8 activations: tokens equal up to a near-tie in llmarch's logits
        split = next((i for i, (a, b) in enumerate(zip(ours, seq)) if a != b), len(seq))
        if split < len(seq):
            top2 = np.sort(logits[split - 1])[-2:]
            assert top2[1] - top2[0] <= 2 * tol, (kind, split, top2)


# measured max |dlogit| against transformers (logits up to 0.71): Qwen3 3.7e-4, Gemma 2 8.5e-4, Gemma 3 8.5e-4,
# Phi-3 2.5e-4, Phi-3 LongRoPE 3.5e-4, over 30 tokens (past Gemma's window of 6, into LongRoPE's long factors)
@pytest.mark.parametrize("case", sorted(CASES))
def test_llama_cpp_reads_converter_style_files_as_transformers(case, tmp_path):
    vocab_size = len(spm_vocab()[0])
    hf = build(case, amplify=False, vocab_size=vocab_size)
    write_like_llama_cpp(hf, tmp_path / "x.gguf", case.split("-")[0], vocab=add_spm_vocab)
    torch.manual_seed(1)
    prompt = torch.randint(3, vocab_size, (30,)).tolist()
    lc = LlamaCpp(tmp_path / "x.gguf")
    try:
        theirs = np.stack([lc.step(t) for t in prompt])
    finally:
        lc.close()
    with torch.no_grad():
        want = hf(torch.tensor([prompt])).logits[0].numpy()
        ours = llmarch.from_gguf(tmp_path / "x.gguf")(torch.tensor([prompt])).logits[0].numpy()
    assert np.abs(theirs - want).max() <= 5e-3 and np.abs(ours - want).max() <= 1e-4


@pytest.mark.parametrize("prefix", [None, False])
@pytest.mark.parametrize("written_by", ["converter", "llmarch"])
def test_llama_cpp_tokenizes_sentencepiece_as_llmarch(prefix, written_by, tmp_path):
    """A SentencePiece vocabulary as the converter writes it, and as llmarch's to_gguf writes it back."""
    write_spm_gguf(tmp_path / "spm.gguf", add_space_prefix=prefix)
    path = tmp_path / "spm.gguf"
    if written_by == "llmarch":
        from llmarch.interop.gguf_writer import to_gguf

        path = tmp_path / "out.gguf"
        to_gguf(llmarch.from_gguf(tmp_path / "spm.gguf"), path, "f32", checkpoint_tokenizer(tmp_path / "spm.gguf"))
    ours = checkpoint_tokenizer(path)
    theirs = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in TEXTS + SPECIAL_TEXTS:
        ids = ours.encode(text)
        assert theirs.tokenize(text.encode(), add_bos=True, special=True) == ids, text
        # without BOS: llama_detokenize drops add_space_prefix's space only then (it keeps it after a BOS), and
        # only from the first token (after a leading control token it keeps it: " user"; we give "user")
        if not text.startswith(("<|im_start|>", "<s>")):
            assert detokenize(theirs, ids[1:]) == ours.decode(ids[1:]) == ours.decode(ids), text


def detokenize(llm, ids: list[int]) -> str:
    """llama.cpp's llama_detokenize (BOS and control tokens left out; llama-cpp-python's own detokenize also
    drops a space after BOS, which llama.cpp does only where add_space_prefix put it there)."""
    import ctypes

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_detokenize(vocab, (llama_cpp.llama_token * len(ids))(*ids), len(ids), buf, 4096, True, False)
    return buf.raw[:n].decode()


BPE_TEXTS = ["def main():\n    return 12345678\n", "class Foo:  pass it's $100 <a|b> x+y=z ^~", "a  b   c\n\n d",
             "x1234567y 89 it'll we'VE", "  (a.b) -- [c]{d}  \t\n", "héllo wörld ✓ 你好",
             "CamelCaseWord HTTPServer getHTTPResponse/path\r\nIt'S DON'T", "ÀÉÎ straße ΑΒΓ αβγ Ωmega ½ ² ٣",
             "你好世界，こんにちは カタカナ 한국어。end  ", "trailing spaces   ", "a.b,c!d?e…f。g，h"]


@pytest.mark.parametrize("pre", ["default", "gpt-2", "smollm", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-v3",
                                 "deepseek-coder", "falcon", "starcoder", "bloom", "viking", "tekken", "gpt-4o",
                                 "dbrx", "stablelm2", "olmo", "refact", "command-r", "smaug-bpe", "chatglm-bpe"])
def test_llama_cpp_splits_byte_level_bpe_as_llmarch(pre, tmp_path):
    """tokenizer.ggml.pre names a split (punctuation, digits, contractions, spaces, scripts, case) that
    gguf_tokenizer.py rebuilds (gguf_splits.py): llama.cpp's ids on the same vocabulary and merges are ours, on a
    vocabulary trained on the texts themselves, so that merges span what one split parts and another does not."""
    import json

    import gguf

    from llmarch.data.tokenizer import train_bpe
    from llmarch.interop.gguf_splits import DIGITS_NAMES, GPT2_NAMES, SPLITS

    tok = train_bpe(["def main():\n    return 12345\n" * 40, "class Foo:\n    pass it's $100 <a|b> x+y=z\n" * 40]
                    + [t * 20 for t in BPE_TEXTS], vocab_size=600)
    vocab = tok.tk.get_vocab()
    w = gguf.GGUFWriter(str(tmp_path / "bpe.gguf"), "llama")
    for key, value in dict(block_count=1, context_length=64, embedding_length=32, feed_forward_length=64,
                           head_count=2, head_count_kv=2, layer_norm_rms_eps=1e-5).items():
        getattr(w, f"add_{key}")(value)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(sorted(vocab, key=vocab.get))
    merges = json.loads(tok.tk.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(0)
    w.add_tensor("token_embd.weight", np.zeros((len(vocab), 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = checkpoint_tokenizer(tmp_path / "bpe.gguf")
    theirs = llama_cpp.Llama(model_path=str(tmp_path / "bpe.gguf"), vocab_only=True, verbose=False)
    for text in BPE_TEXTS:
        assert theirs.tokenize(text.encode(), add_bos=False, special=True) == ours.encode(text), text
        assert ours.decode(ours.encode(text)) == text
    from llmarch.interop.gguf_tokenizer import write_tokenizer  # and GGUF out names the split as it was named

    w = gguf.GGUFWriter(str(tmp_path / "again.gguf"), "llama")
    write_tokenizer(w, ours, len(vocab))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    again = gguf.GGUFReader(str(tmp_path / "again.gguf")).fields["tokenizer.ggml.pre"].contents()
    for kin in (GPT2_NAMES, DIGITS_NAMES):  # written under the first name llama.cpp gives the same split
        assert (again == kin[0]) == (pre in kin) or again in SPLITS and SPLITS[again] == SPLITS.get(pre)


def test_llama_cpp_reads_the_byte_tokenizer_as_llmarch(tmp_path):
    """`convert --to-gguf` of a checkpoint with llmarch's byte tokenizer: llama.cpp loads the file, tokenizes
    every text to the byte tokenizer's ids (special-token names as text too, with special parsing off, as
    ByteTokenizer reads them), detokenizes them back, and decodes greedily as llmarch."""
    from test_gguf import BYTE_TEXTS, byte_checkpoint

    tok = byte_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "byte.gguf"
    assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--gguf-type", "f32", "--out", str(out)]) == 0
    theirs = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    for text in BYTE_TEXTS:
        ids = tok.encode(text)
        assert theirs.tokenize(text.encode(), add_bos=False, special=False) == ids, text
        assert detokenize(theirs, ids) == tok.decode(ids) == text, text
    assert theirs.tokenize(b"a<|mask|>", add_bos=False, special=True) == [97, 257]
    prompt = tok.encode("def main():")
    seq, logits = llama_cpp_greedy(out, prompt, 8)
    model = llmarch.load(out)
    with torch.no_grad():
        assert llmarch.generate(model, torch.tensor([prompt]), max_new_tokens=8)[0].tolist() == seq
        assert np.abs(model(torch.tensor([seq[:-1]])).logits[0].numpy() - logits).max() <= 1e-3
