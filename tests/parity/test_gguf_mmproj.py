"""llama.cpp's vision projector files (interop/gguf_mmproj.py) against llama.cpp itself and transformers: a tiny
random Gemma 3 checkpoint (norm gains and biases perturbed, the tower's and projector's matrices drawn N(0, 0.1); a
tower 24 wide beside a text model 32 wide, so a transposed projection cannot pass) converted by llama.cpp's own
convert_hf_to_gguf.py --mmproj (its tensors rewritten as F32: the converter forces the projection to F16), its text
model by llmarch's to_gguf. llmarch's image embeddings equal llama.cpp's (llama-cpp-python's mtmd: tokenize,
encode an image chunk, read its embeddings) on an image at the tower's size; its logits with the image equal
transformers' (fp32, 1e-4); its greedy tokens after a prompt with the image equal llama.cpp's (mtmd_helper_eval_chunks,
then one token a decode), cached decoding equal to the whole forward; `llmarch generate --mmproj` answers as the
Python API does; bad files refused in one line; `convert --to-gguf --mmproj-out` files llama.cpp reads to the same
embeddings. A tiny Idefics3 likewise: its vision config and logits from_hf's, llama.cpp's embeddings and greedy
tokens ours. Skipped without llama.cpp's sources (the converter) or, for the
llama.cpp comparisons, without llama-cpp-python."""
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.interop.gguf_writer import to_gguf, write_out
from llmarch.vision.config import vision_config
from llmarch.vision.image_files import read_image
from llmarch.vision.prompt_parts import vision_of
from llmarch.vision.prompts import image_request

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
Image = pytest.importorskip("PIL.Image")

from test_gemma3_vision import TEXT, VISION, saved_gemma3  # noqa: E402
from conftest import perturbed  # noqa: E402
from test_cli_trust import call  # noqa: E402
from test_vision_images import tokenizer  # noqa: E402

LLAMA_CPP_SRC = Path(os.environ.get("LLAMA_CPP_SRC", "/work/llama-cpp-src"))
# llama.cpp's gemma3 reads every layer but each sixth as sliding: two sliding layers, a window past the prompts
GEMMA3_TEXT = dict(TEXT, sliding_window=64, layer_types=["sliding_attention"] * 2)


def convert_mmproj(folder: Path, out: Path) -> None:
    """llama.cpp's converter on a checkpoint folder, as a subprocess: its mmproj file, F32 where it lets."""
    if not (LLAMA_CPP_SRC / "convert_hf_to_gguf.py").is_file():
        pytest.skip(f"llama.cpp's sources (its converter) are not at {LLAMA_CPP_SRC}")
    env = dict(os.environ, PYTHONPATH=f"{LLAMA_CPP_SRC / 'gguf-py'}:{LLAMA_CPP_SRC}")
    done = subprocess.run([sys.executable, str(LLAMA_CPP_SRC / "convert_hf_to_gguf.py"), str(folder), "--mmproj",
                           "--outtype", "f32", "--outfile", str(out)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def rewrite(src: Path, dst: Path, tensors: dict | None = None, drop: tuple = (), meta: dict | None = None) -> None:
    """A GGUF file copied with every tensor F32, `tensors` (name -> array) in place of the file's or added, `drop`ped
    tensors left out and `meta` keys set to other strings or integers."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), arch=r.fields["general.architecture"].contents())
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in (meta or {}):
            value = meta[key]
            w.add_key_value(key, value, gguf.GGUFValueType.STRING if isinstance(value, str) else f.types[0])
        elif f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, f.contents(), f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(key, f.contents(), f.types[0])
    arrays = {}
    for t in r.tensors:
        if t.name not in drop:
            shape = tuple(int(n) for n in reversed(t.shape))
            values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
            arrays[t.name] = np.ascontiguousarray((tensors or {}).get(t.name, values), dtype=np.float32)
    arrays.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (tensors or {}).items() if k not in arrays})
    write_out(w, arrays)


def text_and_image(path: Path, family: str, size: tuple[int, int] = (16, 16)) -> tuple[Path, Path]:
    """The text part of llmarch's from_hf model of path/hf as `family`'s F32 GGUF file (path/text.gguf), and a seeded
    noise image of (height, width) `size` (path/image.png)."""
    ours = llmarch.from_hf(path / "hf")
    text = llmarch.build(ours.config.replace(vision=None, hf_model_type=family))
    text.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("vision.")})
    to_gguf(text, path / "text.gguf", "f32", checkpoint_tokenizer(path / "hf"))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path / "image.png")
    return path / "text.gguf", path / "image.png"


def logits_gap(files, prompt: str, **hf_arguments) -> float:
    """The largest difference of the logits with the image between the model read from the two files and
    transformers', the model read checked for from_hf's vision config and family first."""
    text, mmproj, hf, image = files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    want = llmarch.from_hf(Path(text).parent / "hf")
    assert model.config.hf_model_type == want.config.hf_model_type
    assert vision_of(model.config.vision) == vision_of(want.config.vision)
    ids, arguments = image_request(model, checkpoint_tokenizer(text, mmproj=mmproj), prompt, [read_image(image)])
    ids = torch.tensor([ids])
    with torch.no_grad():
        return float((model(ids, **arguments).logits - hf(input_ids=ids, **arguments, **hf_arguments).logits)
                     .abs().max())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(text model .gguf, mmproj .gguf, transformers model, image path)."""
    from safetensors.torch import load_file, save_file

    path = tmp_path_factory.mktemp("gemma3-gguf")
    hf, _, _ = saved_gemma3(path / "hf", GEMMA3_TEXT, dict(VISION, hidden_size=24))
    (path / "hf" / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    weights = path / "hf" / "model.safetensors"  # the published layout, which llama.cpp's converter reads
    save_file({k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in load_file(weights).items()},
              weights, metadata={"format": "pt"})
    convert_mmproj(path / "hf", path / "mmproj-f16.gguf")
    exact = hf.model.multi_modal_projector.mm_input_projection_weight.detach().numpy()
    rewrite(path / "mmproj-f16.gguf", path / "mmproj.gguf", {"mm.input_projection.weight": exact})
    ours = llmarch.from_hf(path / "hf")
    text = llmarch.build(ours.config.replace(vision=None, hf_model_type="gemma3_text", bidirectional_token=None))
    text.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("vision.")})
    to_gguf(text, path / "text.gguf", "f32", checkpoint_tokenizer(path / "hf"))
    image = path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    return path / "text.gguf", path / "mmproj.gguf", hf, image


class Mtmd:
    """llama.cpp's text model and mmproj (llama-cpp-python's C API: an F32 KV cache, no flash attention, one
    thread) with one prompt holding one image (mtmd's media marker; or an audio clip, its 16 kHz samples)."""

    def __init__(self, text_path, mmproj_path, prompt: str, image):
        import llama_cpp._logger
        import llama_cpp.mtmd_cpp as mtmd

        self.llama_cpp, self.mtmd = llama_cpp, mtmd
        llama_cpp._logger.set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = False  # test_llama_cpp.py: its repacked buffers crash on this machine
        self.model = llama_cpp.llama_model_load_from_file(str(text_path).encode(), params)
        ctx = llama_cpp.llama_context_default_params()
        ctx.n_ctx, ctx.n_threads, ctx.n_threads_batch, ctx.type_k, ctx.type_v = 128, 1, 1, 0, 0
        ctx.flash_attn_type = 0
        self.ctx = llama_cpp.llama_init_from_model(self.model, ctx)
        cp = mtmd.mtmd_context_params_default()
        cp.use_gpu, cp.n_threads, cp.warmup, cp.print_timings, cp.flash_attn_type = False, 1, False, False, 0
        self.mctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self.model, cp)
        assert self.mctx, "llama.cpp cannot load the mmproj"
        if isinstance(image, np.ndarray):  # 16 kHz audio samples
            self.samples = np.ascontiguousarray(image, dtype=np.float32)
            self.bitmap = mtmd.mtmd_bitmap_init_from_audio(len(self.samples), self.samples.ctypes.data_as(
                ctypes.POINTER(ctypes.c_float)))
        else:
            rgb = np.ascontiguousarray(np.asarray(Image.open(image).convert("RGB")), dtype=np.uint8)
            self.bitmap = mtmd.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], rgb.ctypes.data_as(
                ctypes.POINTER(ctypes.c_uint8)))
        text = mtmd.mtmd_input_text()
        text.text, text.text_len, text.add_special, text.parse_special = prompt.encode(), len(prompt.encode()), \
            True, True
        self.chunks = mtmd.mtmd_input_chunks_init()
        assert mtmd.mtmd_tokenize(self.mctx, self.chunks, ctypes.byref(text),
                                  (mtmd.mtmd_bitmap_p_ctypes * 1)(self.bitmap), 1) == 0

    def parts(self) -> list:
        """The prompt's chunks: a list of token ids for text, the chunk itself for the image."""
        out = []
        for i in range(self.mtmd.mtmd_input_chunks_size(self.chunks)):
            chunk = self.mtmd.mtmd_input_chunks_get(self.chunks, i)
            if self.mtmd.mtmd_input_chunk_get_type(chunk) == 0:  # MTMD_INPUT_CHUNK_TYPE_TEXT
                n = ctypes.c_size_t()
                ids = self.mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                out.append([ids[k] for k in range(n.value)])
            else:
                out.append(chunk)
        return out

    def embeddings(self, chunk) -> torch.Tensor:
        n = self.mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        assert self.mtmd.mtmd_encode_chunk(self.mctx, chunk) == 0
        d = self.llama_cpp.llama_model_n_embd_inp(self.model)  # Qwen3-VL's: its DeepStack features beside
        return torch.from_numpy(np.ctypeslib.as_array(self.mtmd.mtmd_get_output_embd(self.mctx), shape=(n * d,))
                                .reshape(n, d).copy())

    def greedy(self, n: int) -> list[int]:
        """The prompt decoded (the image's tokens non-causally, as mtmd decodes Gemma 3's), then n greedy tokens."""
        lc = self.llama_cpp
        past = lc.llama_pos(0)
        assert self.mtmd.mtmd_helper_eval_chunks(self.mctx, self.ctx, self.chunks, 0, 0, 64, True,
                                                 ctypes.byref(past)) == 0
        vocab, out = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model)), []
        batch = lc.llama_batch_init(1, 0, 1)
        try:
            for _ in range(n):
                logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, -1), shape=(vocab,))
                out.append(int(logits.argmax()))
                batch.n_tokens, batch.token[0], batch.pos[0], batch.n_seq_id[0] = 1, out[-1], past.value, 1
                batch.seq_id[0][0], batch.logits[0] = 0, True
                assert lc.llama_decode(self.ctx, batch) == 0
                past.value += 1
        finally:
            lc.llama_batch_free(batch)
        return out

    def close(self):
        self.mtmd.mtmd_input_chunks_free(self.chunks)
        self.mtmd.mtmd_bitmap_free(self.bitmap)
        self.mtmd.mtmd_free(self.mctx)
        self.llama_cpp.llama_free(self.ctx)
        self.llama_cpp.llama_model_free(self.model)


def mtmd(files, prompt: str) -> Mtmd:
    pytest.importorskip("llama_cpp.mtmd_cpp", reason="llama-cpp-python (with mtmd) is not installed")
    text, mmproj, _, image = files
    return Mtmd(text, mmproj, prompt, image)


def reference(files, prompt: str, n: int = 6) -> tuple[list, torch.Tensor, list[int], torch.Tensor]:
    """llama.cpp on a prompt holding one image: its chunks, the image chunk's embeddings, n greedy tokens after the
    prompt and the logits after the last of them."""
    ref = mtmd(files, prompt)
    try:
        parts = ref.parts()
        theirs = ref.embeddings(next(p for p in parts if not isinstance(p, list)))
        tokens = ref.greedy(n)
        lc = ref.llama_cpp
        vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(ref.model))
        last = torch.from_numpy(np.ctypeslib.as_array(lc.llama_get_logits_ith(ref.ctx, -1), shape=(vocab,)).copy())
    finally:
        ref.close()
    return parts, theirs, tokens, last


def with_llama_cpp(files, image_prompt: str) -> tuple:
    """llama.cpp's chunks, image embeddings and 6 greedy tokens on "the cat <__media__> sat on", and the model read
    from the two files with the arguments of its image (prompted by `image_prompt`)."""
    text, mmproj, _, image = files
    parts, theirs, want, _ = reference(files, "the cat <__media__> sat on")
    model = llmarch.from_gguf(text, mmproj=mmproj)
    _, arguments = image_request(model, checkpoint_tokenizer(text, mmproj=mmproj), image_prompt, [read_image(image)])
    return parts, theirs, want, model, arguments


def assert_greedy(model, ids: torch.Tensor, arguments: dict, want: list[int]) -> None:
    """generate's greedy tokens after ids are `want`, and so is the whole forward's argmax (cached decoding)."""
    got = llmarch.generate(model, ids, len(want), temperature=0.0, **arguments)
    assert got[0, ids.shape[1]:].tolist() == want
    with torch.no_grad():
        whole = model(got, **arguments).logits[0, ids.shape[1] - 1:-1].argmax(-1)
    assert whole.tolist() == want


def chunk_embeddings(text, mmproj, image) -> list[torch.Tensor]:
    """llama.cpp's mtmd on a prompt of one image: each image chunk's embeddings."""
    ref = mtmd((text, mmproj, None, image), "<__media__>")
    try:
        return [ref.embeddings(p) for p in ref.parts() if not isinstance(p, list)]
    finally:
        ref.close()


def _values(reader) -> tuple[dict, dict]:
    """A GGUF file's clip.* metadata and its tensors (float32, Hugging Face's dimension order) by name."""
    keys = {k: f.contents() for k, f in reader.fields.items() if k.startswith("clip.")}
    return keys, {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}


def assert_written_as_converted(files, out: Path, differ: dict | None = None) -> None:
    """The mmproj `out` (llmarch's, of the checkpoint folder beside the text model) is the converter's (files[1]):
    the same clip.* keys and values but those in `differ` (key -> our value), the same tensors (F32 both); llama.cpp's
    mtmd reads it to the converter file's embeddings, llmarch to its model, exactly."""
    text, mmproj, image = files[0], files[1], files[-1]
    (keys, tensors), (ours, our_tensors) = _values(gguf.GGUFReader(str(mmproj))), _values(gguf.GGUFReader(str(out)))
    for key, value in (differ or {}).items():
        assert ours.pop(key) == value
        keys.pop(key, None)
    assert sorted(ours) == sorted(keys)
    for key, value in keys.items():
        assert np.allclose(ours[key], value, rtol=1e-6) if not isinstance(value, str) else ours[key] == value, key
    assert sorted(our_tensors) == sorted(tensors)
    assert all(np.array_equal(our_tensors[name], t) for name, t in tensors.items())  # F32 both: the same values
    want, got = chunk_embeddings(text, mmproj, image), chunk_embeddings(text, out, image)
    assert len(got) == len(want) and all(torch.equal(g, w) for g, w in zip(got, want))
    theirs = llmarch.from_gguf(text, mmproj=mmproj).state_dict()
    again = llmarch.from_gguf(text, mmproj=out).state_dict()
    assert theirs.keys() == again.keys() and all(torch.equal(again[k], theirs[k]) for k in theirs)


def assert_cli_writes_the_converters_mmproj(files, tmp_path: Path, capsys, differ: dict | None = None) -> None:
    """`convert --to-gguf --mmproj-out` of the checkpoint folder beside the text model writes the converter's
    mmproj (assert_written_as_converted)."""
    code, _, err = call(capsys, "convert", "--to-gguf", Path(files[0]).parent / "hf", "--gguf-type", "f32", "--out",
                        tmp_path / "text.gguf", "--mmproj-out", tmp_path / "mmproj.gguf")
    assert code == 0, err
    assert_written_as_converted(files, tmp_path / "mmproj.gguf", differ)


def assert_bad_mmproj_refused(files, tmp_path: Path, capsys, change: dict, problem: str) -> None:
    """The mmproj rewritten with `change` (rewrite's arguments) is refused by from_gguf naming `problem`, and by
    `llmarch generate` in one line, exit 2."""
    text, mmproj, _, image = files
    rewrite(mmproj, tmp_path / "bad.gguf", **change)
    with pytest.raises(LlmarchError, match=problem):
        llmarch.from_gguf(text, mmproj=tmp_path / "bad.gguf")
    code, _, stderr = call(capsys, "generate", "--checkpoint", text, "--mmproj", tmp_path / "bad.gguf", "--image",
                           image, "--prompt", "x", "--max-new-tokens", "1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and problem in stderr


def ids_of(parts: list, image_token: int, per_image: int) -> torch.Tensor:
    """llama.cpp's prompt as llmarch's input_ids: the image chunk as its count of image tokens."""
    return torch.tensor([sum((p if isinstance(p, list) else [image_token] * per_image for p in parts), [])])


def test_reads_the_family_model_and_its_image_processor(files):
    text, mmproj, hf, image = files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    want = llmarch.from_hf(Path(text).parent / "hf")
    assert vision_config(model.config.vision) == vision_config(want.config.vision)
    assert model.config.hf_model_type == "gemma3"
    assert model.config.bidirectional_token == want.config.bidirectional_token
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    processor = json.loads(tok.side_files["preprocessor_config.json"])
    assert processor["size"] == {"height": 16, "width": 16} and processor["image_mean"] == [0.5] * 3
    # the logits with an image are transformers' (the mmproj's projection is its exact fp32 values here)
    ids, arguments = image_request(model, tok, "the cat <start_of_image> sat", [read_image(image)])
    with torch.no_grad():
        got = model(torch.tensor([ids]), **arguments).logits
        ref = hf(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"],
                 token_type_ids=(torch.tensor([ids]) == model.config.vision["image_token_id"]).long()).logits
    assert (got - ref).abs().max() <= 1e-4  # seen: 2e-7


def test_image_embeddings_and_greedy_tokens_are_llama_cpps(files):
    parts, theirs, want, model, arguments = with_llama_cpp(files, "<start_of_image>")
    with torch.no_grad():
        ours = model.vision.projector(model.vision.tower(arguments["pixel_values"]))[0]
    diff = (ours - theirs).abs().max()
    assert diff <= 5e-4 * theirs.abs().max(), diff  # seen: 2.1e-4 of 1.28 (ggml's CPU kernels)
    assert_greedy(model, ids_of(parts, model.config.vision["image_token_id"], ours.shape[0]), arguments, want)


def test_generate_cli_with_mmproj(files, capsys):
    text, mmproj, _, image = files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    ids, arguments = image_request(model, tok, "the cat", [read_image(image)])
    out = llmarch.generate(model, torch.tensor([ids]), 5, temperature=0.0, **arguments)
    code, stdout, _ = call(capsys, "generate", "--checkpoint", text, "--mmproj", mmproj, "--image", image,
                           "--prompt", "the cat", "--max-new-tokens", "5", "--temperature", "0", "--no-stream")
    assert code == 0 and stdout.strip().endswith(tok.decode(out[0, len(ids):].tolist()).strip())


@pytest.mark.parametrize("change, problem", [
    (dict(meta={"clip.projector_type": "nope"}), "mmproj projector type 'nope' is not supported"),
    (dict(drop=("v.blk.1.attn_q.weight",)), "missing tensor"),
    (dict(meta={"clip.vision.projection_dim": 48}), "projects images to width 48"),
    (dict(text=True), "is not a vision projector file"),
])
def test_bad_mmproj_is_one_line(files, tmp_path, capsys, change, problem):
    text, mmproj, _, image = files
    bad = text if change.pop("text", False) else tmp_path / "bad.gguf"
    if bad != text:
        rewrite(mmproj, bad, **change)
    with pytest.raises(LlmarchError, match=problem):
        llmarch.from_gguf(text, mmproj=bad)
    code, _, stderr = call(capsys, "generate", "--checkpoint", text, "--mmproj", bad, "--image", image, "--prompt",
                           "x", "--max-new-tokens", "1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and problem.split("'")[0] in stderr


def test_convert_writes_an_mmproj_llama_cpp_reads(files, tmp_path, capsys):
    text, _, hf, image = files
    out, mmproj = tmp_path / "text.gguf", tmp_path / "mmproj.gguf"
    code, _, err = call(capsys, "convert", "--to-gguf", Path(text).parent / "hf", "--gguf-type", "f32", "--out", out,
                        "--mmproj-out", mmproj)
    assert code == 0, err
    model = llmarch.from_gguf(out, mmproj=mmproj)
    tok = checkpoint_tokenizer(out, mmproj=mmproj)
    ids, arguments = image_request(model, tok, "the cat <start_of_image> sat", [read_image(image)])
    with torch.no_grad():  # the round trip keeps transformers' logits
        got = model(torch.tensor([ids]), **arguments).logits
        ref = hf(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"],
                 token_type_ids=(torch.tensor([ids]) == model.config.vision["image_token_id"]).long()).logits
        ours = model.vision.projector(model.vision.tower(arguments["pixel_values"]))[0]
    assert (got - ref).abs().max() <= 1e-4
    ref = mtmd((out, mmproj, hf, image), "<__media__>")
    try:
        theirs = ref.embeddings(next(p for p in ref.parts() if not isinstance(p, list)))
    finally:
        ref.close()
    assert (ours - theirs).abs().max() <= 5e-4 * theirs.abs().max()
    code, _, err = call(capsys, "convert", "--to-gguf", Path(text).parent / "hf", "--out", tmp_path / "again.gguf",
                        "--mmproj-out", mmproj)  # an existing file is never overwritten
    assert code == 2 and "--mmproj-out must be a new .gguf file" in err and not (tmp_path / "again.gguf").exists()


@pytest.fixture(scope="module")
def idefics3_files(tmp_path_factory):
    """Idefics3's (SmolVLM's layout: a tower 24 wide, a LLaMA 48 wide) text model, mmproj, image, transformers
    folder."""
    from test_smolvlm import TEXT as I3_TEXT, TOWER

    path = tmp_path_factory.mktemp("idefics3-gguf")
    # mtmd looks up "\n\n" and "\n" as single tokens around the image (MTMD_SLICE_TMPL_IDEFICS3)
    tok = tokenizer(["<unk>", "<s>", "</s>", "<image>", "<fake_token_around_image>", "<global-img>", "\n\n", "\n"])
    tok.save_pretrained(path / "hf")
    torch.manual_seed(0)
    config = transformers.Idefics3Config(text_config=dict(I3_TEXT, hidden_size=48, head_dim=12, vocab_size=len(tok)),
                                         vision_config=dict(TOWER, hidden_size=24), scale_factor=2,
                                         image_token_id=tok.convert_tokens_to_ids("<image>"))
    hf = perturbed(transformers.Idefics3ForConditionalGeneration(config))
    with torch.no_grad():
        for key, p in hf.named_parameters():
            if key.startswith("model.vision_model.") and p.dim() > 1:
                p.normal_(0, 0.1)
    hf.save_pretrained(path / "hf")
    transformers.Idefics3ImageProcessor(size={"longest_edge": 16}, max_image_size={"longest_edge": 16},
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(path / "hf")
    convert_mmproj(path / "hf", path / "mmproj.gguf")
    text, image = text_and_image(path, "llama")
    return text, path / "mmproj.gguf", llmarch.from_hf(path / "hf"), image


def test_idefics3_reads_as_transformers_and_decodes_as_llama_cpp(idefics3_files):
    """The tower and connector read as from_hf reads them (the same logits); llama.cpp's mtmd cuts an image of the
    tower's size into one tile and the overview (transformers reads it whole, once): each chunk's embeddings ours,
    and its greedy tokens after the prompt ours on the same ids."""
    text, mmproj, want, image = idefics3_files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    assert vision_config(model.config.vision) == vision_config(want.config.vision)
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    ids, arguments = image_request(model, tok, "the cat <image> sat", [read_image(image)])
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([ids]), **arguments).logits,
                           want(torch.tensor([ids]), **arguments).logits)
        ours = model.vision.projector(model.vision.tower(arguments["pixel_values"]))[0]
    ref = mtmd(idefics3_files, "the cat <__media__> sat")
    try:
        parts = ref.parts()
        chunks = [p for p in parts if not isinstance(p, list)]
        tokens = ref.greedy(6)
        theirs = [ref.embeddings(c) for c in chunks]
    finally:
        ref.close()
    assert len(chunks) == 2 and all((ours - t).abs().max() <= 5e-4 * t.abs().max() for t in theirs)
    ids = ids_of(parts, model.config.vision["image_token_id"], ours.shape[0])
    pixels = arguments["pixel_values"].expand(len(chunks), -1, -1, -1)
    assert llmarch.generate(model, ids, 6, temperature=0.0, pixel_values=pixels)[0, ids.shape[1]:].tolist() == tokens


def test_idefics3_convert_writes_the_converters_mmproj(idefics3_files, tmp_path, capsys):
    assert_cli_writes_the_converters_mmproj(idefics3_files, tmp_path, capsys)
