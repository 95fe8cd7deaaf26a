"""Qwen-VL's and Qwen3.5's videos from files (vision/video_files.py, vision/qwen_video.py, `llmarch generate --video`)
against transformers. Its video processors import torchvision, which is not installed here, so the pixels are checked
against its PIL image processor run on each frame (Qwen2VLImageProcessorPil: one frame's patches are its first
temporal half), the video's temporal patch k being frames 2k and 2k + 1 side by side, as the video processors'
patchify lays them out; Qwen3-VL's video smart_resize is transformers' own function, read from its source. The ids
are those of transformers' Qwen2VLProcessor, Qwen2_5_VLProcessor and Qwen3VLProcessor (Qwen3.5's too; their
replace_video_token and text replacement, timestamps included) over a video processor that hands them our pixels,
grid and frame metadata; Qwen2.5-VL's second_per_grid_ts is its processor's. `llmarch generate --video DIR`
(Qwen3.5's with an --image too) prints transformers' greedy continuation; bad input is one line."""
import ast
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import llmarch
from llmarch.checkpoint import save_model
from llmarch.data.tokenizer import ByteTokenizer, load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES
from llmarch.vision.qwen_video import _size_qwen3, video_processor_for, video_request
from llmarch.vision.video_files import FileFrames, pick, read_video

from test_cli_trust import call, one_line_error
from test_qwen_vl_images import CASES, TEXT, VISION, random_model, tokenizer

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
Image = pytest.importorskip("PIL.Image")

PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 16 * 16,
                                                                         "longest_edge": 40 * 40})
VIDEOS = {"qwen2_vl": dict(PIXELS, video_processor_type="Qwen2VLVideoProcessor"),
          "qwen2_5_vl": dict(PIXELS, video_processor_type="Qwen2VLVideoProcessor"),
          "qwen3_vl": dict(PIXELS, video_processor_type="Qwen3VLVideoProcessor", fps=2,
                           size={"shortest_edge": 16 * 16, "longest_edge": 5 * 40 * 40})}
VIDEOS["qwen3_5"] = VIDEOS["qwen3_vl"]  # Qwen3.5's video processor is Qwen3-VL's
PROMPT = "what happens?"


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A directory of 7 noise frames (21 x 37), named so that sorting by name is their order."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for k in range(7):
        Image.fromarray(rng.integers(0, 256, (21, 37, 3), dtype=np.uint8)).save(root / f"f{k:02d}.png")
    return root


def image_processor(**kw):
    return transformers.Qwen2VLImageProcessorPil(**{**PIXELS, **kw})


def per_frame_pairs(frames, **kw) -> torch.Tensor:
    """The video's patches as the image processor makes each frame's: temporal patch k is frames 2k and 2k + 1 (the
    last repeated to an even count), each patch (channels, 2 frames, p, p)."""
    frames = frames + frames[-1:] * (len(frames) % 2)
    one = [image_processor(**kw)(images=[f], return_tensors="pt")["pixel_values"].view(-1, 3, 2, 4, 4)[:, :, 0]
           for f in frames]
    return torch.cat([torch.stack([one[k], one[k + 1]], 2).flatten(1) for k in range(0, len(one), 2)])


def test_video_pixels_equal_the_image_processor_per_frame_pair(frames):
    video = read_video(frames, fps=4)
    arguments, stamps = video_processor_for(VIDEOS["qwen2_vl"], "qwen2_vl")([video])
    assert arguments["video_grid_thw"].tolist() == [[4, 6, 10]]  # 7 frames + 1 repeated; 24 x 40 pixels
    assert torch.equal(arguments["pixel_values_videos"], per_frame_pairs(video.frames))
    assert stamps == [[0.125, 0.625, 1.125, 1.5]] and arguments["second_per_grid_ts"].tolist() == [0.5]
    arguments, stamps = video_processor_for(VIDEOS["qwen3_vl"], "qwen3_vl")([video])
    index = np.linspace(0, 6, 4).round().astype(int)  # int(7 / 4 x 2) = 3 frames, at least min_frames = 4
    h, w = _size_qwen3(4, 21, 37, 8, 2, 16 * 16, 5 * 40 * 40)
    resized = [video.frames[i].resize((w, h), Image.BICUBIC) for i in index]
    half = dict(do_resize=False, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert arguments["video_grid_thw"].tolist() == [[2, h // 4, w // 4]]
    assert torch.equal(arguments["pixel_values_videos"], per_frame_pairs(resized, **half))
    assert stamps == [[(index[0] + index[1]) / 8, (index[2] + index[3]) / 8]]


def test_qwen3_video_resize_is_transformers():
    """Qwen3-VL's video smart_resize against transformers' function, read from its module's source (the module
    imports torchvision)."""
    source = Path(transformers.__file__).parent / "models/qwen3_vl/video_processing_qwen3_vl.py"
    tree = ast.parse(source.read_text())
    scope = {"math": math}
    exec(compile(ast.Module([n for n in tree.body if getattr(n, "name", "") == "smart_resize"], []), "t", "exec"),
         scope)
    for t, h, w in ((4, 21, 37), (2, 5, 300), (16, 480, 640), (3, 1000, 30), (9, 64, 64)):
        assert _size_qwen3(t, h, w, 32, 2, 128 * 32 * 32, 32 * 32 * 768 * 4) == \
            scope["smart_resize"](t, h, w, 2, 32, 128 * 32 * 32, 32 * 32 * 768 * 4)
    with pytest.raises(LlmarchError, match="at least temporal_patch_size"):
        _size_qwen3(1, 32, 32, 32, 2, 1, 10 ** 6)


def tiny(case: str, tok):
    """The ModelConfig of a tiny `case` checkpoint with `tok`'s image and video tokens."""
    text = dict(TEXT, vocab_size=len(tok))
    vision = dict(VISION, depth=1, hidden_size=32, out_hidden_size=32, intermediate_size=40, num_heads=2)
    if case == "qwen2_vl":
        vision = dict(VISION, depth=1, embed_dim=32, hidden_size=32, mlp_ratio=2)
    if case == "qwen2_5_vl":
        vision = dict(vision, window_size=16, fullatt_block_indexes=[0])
    if case == "qwen3_vl":
        text = dict(text, head_dim=8, rope_parameters=dict(rope_type="default", rope_theta=1e4,
                                                           mrope_section=[1, 1, 2], mrope_interleaved=True))
        vision = dict(vision, num_position_embeddings=16, deepstack_visual_indexes=[0])
    if case == "qwen3_5":
        text, vision = dict(text, **CASES[case][2]), dict(vision, num_position_embeddings=16)
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (("image_token_id", "<|image_pad|>"),
                                                        ("video_token_id", "<|video_pad|>"))}
    return FAMILIES[case].to_config(dict(model_type=case, text_config=text, vision_config=vision, **ids))


class FakeVideos:
    """What transformers' processors read of a video processor, handing on what llmarch's made."""
    merge_size, temporal_patch_size = 2, 2

    def __init__(self, arguments, metadata):
        self.arguments, self.metadata = arguments, metadata

    def __call__(self, videos, **kwargs):
        from transformers.feature_extraction_utils import BatchFeature

        return BatchFeature({**{k: v for k, v in self.arguments.items() if k != "second_per_grid_ts"},
                             "video_metadata": self.metadata})


def processor(kind, tok, videos):
    class Faked(getattr(transformers, kind)):
        def check_argument_for_proper_class(self, name, argument):
            return None

    return Faked(image_processor=image_processor(), tokenizer=tok, video_processor=videos)


@pytest.mark.parametrize("case,kind", [("qwen2_vl", "Qwen2VLProcessor"), ("qwen2_5_vl", "Qwen2_5_VLProcessor"),
                                       ("qwen3_vl", "Qwen3VLProcessor"), ("qwen3_5", "Qwen3VLProcessor")])
def test_prompt_ids_are_the_processors(case, kind, frames, tmp_path):
    from transformers.video_utils import VideoMetadata

    hf_tok = tokenizer()
    hf_tok.save_pretrained(tmp_path)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(VIDEOS[case]))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        dict(PIXELS, image_processor_type="Qwen2VLImageProcessor")))
    tok = load_tokenizer(tmp_path)
    model = llmarch.build(tiny(case, hf_tok))
    video, image = read_video(frames, fps=4), Image.open(next(frames.iterdir()))
    index = np.arange(7) if not case.startswith("qwen3") else np.linspace(0, 6, 4).round().astype(int)
    metadata = [VideoMetadata(total_num_frames=7, fps=4.0, frames_indices=index)]
    image_part, video_part = (f"<|vision_start|><|{k}_pad|><|vision_end|>" for k in ("image", "video"))
    # a prompt without the tokens gets the images, then the videos, at its start; else they stay where they are
    for ours, text in ((PROMPT, image_part + video_part + PROMPT), (video_part + "and" + image_part,) * 2):
        ids, arguments = video_request(model, tok, ours, [image], [video])
        theirs = processor(kind, hf_tok, FakeVideos(arguments, metadata))(
            text=text, images=[image], videos=[video.frames], return_tensors="pt")
        assert ids == theirs["input_ids"][0].tolist()
        assert torch.equal(arguments["pixel_values"], theirs["pixel_values"])
    assert ("second_per_grid_ts" in arguments) == (case == "qwen2_5_vl")
    if case == "qwen2_5_vl":
        assert arguments["second_per_grid_ts"].tolist() == list(theirs["second_per_grid_ts"]) == [0.5]
    if case.startswith("qwen3"):  # frames 0, 2 and 4, 6 at 4 a second: 0.25 s and 1.25 s, as "%.1f" writes them
        stamp = tok.encode("<0.2 seconds>")  # the last prompt's: it starts with the video's first frame
        assert ids[:len(stamp)] == stamp and ids[len(stamp)] == tok.encode("<|vision_start|>")[0]
    with pytest.raises(LlmarchError, match=r"2 <\|video_pad\|> token\(s\) for 1 video\(s\)"):
        video_request(model, tok, "<|video_pad|><|video_pad|>", [], [video])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved by transformers beside its tokenizer and video processor config."""
    tok = tokenizer()
    hf = random_model("Qwen2_5_VL", text_config=dict(TEXT, vocab_size=len(tok)),
                      vision_config=dict(VISION, depth=2, hidden_size=32, out_hidden_size=32, intermediate_size=40,
                                         window_size=16, fullatt_block_indexes=[1], tokens_per_second=3),
                      image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
                      video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
                      vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"))
    hf.generation_config.eos_token_id = tok.eos_token_id
    path = tmp_path_factory.mktemp("qwen2_5_vl_video")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "video_preprocessor_config.json").write_text(json.dumps(VIDEOS["qwen2_5_vl"]))
    return path, hf, tok


def test_cli_generate_with_a_video(checkpoint, frames, capsys):
    """`llmarch generate --video DIR --video-fps 4`: transformers' greedy continuation of the processor's ids with
    the video's pixels and second_per_grid_ts (0.5 s a temporal patch, 3 tokens a second: frames 0, 1, 3, 4 apart)."""
    path, hf, hf_tok = checkpoint
    model = llmarch.from_hf(path)
    ids, arguments = video_request(model, load_tokenizer(path), PROMPT, [], [read_video(frames, fps=4)])
    x = torch.tensor([ids])
    out = hf.generate(input_ids=x, mm_token_type_ids=2 * (x == hf.config.video_token_id).int(), max_new_tokens=5,
                      do_sample=False, **arguments)
    code, printed, err = call(capsys, "generate", "--checkpoint", path, "--video", frames, "--video-fps", 4,
                              "--prompt", PROMPT, "--temperature", 0, "--max-new-tokens", 5)
    assert code == 0, err
    assert printed == hf_tok.decode(out[0], skip_special_tokens=True) + "\n"


def test_cli_generate_qwen3_5_with_an_image_and_a_video(frames, capsys, tmp_path):
    """A tiny Qwen3.5 checkpoint (its hybrid text model; Qwen3-VL's tower without DeepStack): `llmarch generate
    --image F --video DIR` prints transformers' greedy continuation of Qwen3VLProcessor's ids (the image, then each
    video frame after its timestamp; test_prompt_ids_are_the_processors) with the image's and the video's pixels."""
    from llmarch.vision.image_files import read_image

    tok = tokenizer()
    prefix, vision, text = CASES["qwen3_5"]
    image_id, video_id = tok.convert_tokens_to_ids("<|image_pad|>"), tok.convert_tokens_to_ids("<|video_pad|>")
    hf = random_model(prefix, text_config=dict(TEXT, vocab_size=len(tok), **text), vision_config=dict(vision, depth=1),
                      image_token_id=image_id, video_token_id=video_id,
                      vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"))
    hf.generation_config.eos_token_id = tok.eos_token_id
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(VIDEOS["qwen3_5"]))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        dict(PIXELS, image_processor_type="Qwen2VLImageProcessor")))
    image = sorted(frames.iterdir())[3]
    ids, arguments = video_request(llmarch.from_hf(tmp_path), load_tokenizer(tmp_path), PROMPT, [read_image(image)],
                                   [read_video(frames, fps=4)])
    x = torch.tensor([ids])
    out = hf.generate(input_ids=x, mm_token_type_ids=(x == image_id).int() + 2 * (x == video_id).int(),
                      max_new_tokens=5, do_sample=False, **arguments)
    code, printed, err = call(capsys, "generate", "--checkpoint", tmp_path, "--image", image, "--video", frames,
                              "--video-fps", 4, "--prompt", PROMPT, "--temperature", 0, "--max-new-tokens", 5)
    assert code == 0, err
    assert printed == tok.decode(out[0], skip_special_tokens=True) + "\n"


def test_seconds_without_videos_are_refused(checkpoint):
    """second_per_grid_ts times videos: alone it would be read by nothing, so it is refused, not dropped."""
    model = llmarch.from_hf(checkpoint[0])
    with pytest.raises(LlmarchError, match="second_per_grid_ts times videos"):
        model(torch.tensor([[1, 2, 3]]), second_per_grid_ts=torch.tensor([0.5]))


def test_bad_videos_are_one_line(checkpoint, frames, capsys, tmp_path):
    path, _, _ = checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.png").write_bytes((frames / "f00.png").read_bytes())
    (tmp_path / "mixed" / "b.txt").write_text("not a frame")
    base = ["generate", "--checkpoint", path, "--prompt", PROMPT, "--max-new-tokens", 2]
    one_line_error(capsys, "holds no frame images", *base, "--video", empty)
    one_line_error(capsys, "is not an image file", *base, "--video", tmp_path / "mixed")
    one_line_error(capsys, "no such file or directory", *base, "--video", tmp_path / "none")
    one_line_error(capsys, "frame rate must be positive", *base, "--video", frames, "--video-fps", 0)
    refused = "cannot be decoded" if importlib.util.find_spec("av") else "needs PyAV"  # a file that is no video
    one_line_error(capsys, refused, *base, "--video", tmp_path / "mixed" / "b.txt")
    one_line_error(capsys, "--video goes with --prompt", "generate", "--checkpoint", path, "--audio", "x.wav",
                   "--video", frames)
    save_model(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, d_model=32, n_heads=2, context_length=32),
               tmp_path / "text")
    ByteTokenizer().save(tmp_path / "text")
    one_line_error(capsys, "reads no videos", "generate", "--checkpoint", tmp_path / "text", "--prompt", "hi",
                   "--video", frames)


def test_video_file_with_pyav(frames, tmp_path):
    """A video file (PyAV, where installed): every frame at the file's rate, as transformers' pyav loader reads it."""
    av = pytest.importorskip("av")
    from transformers.video_utils import load_video

    path = tmp_path / "clip.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=5)
        stream.width, stream.height, stream.pix_fmt = 36, 20, "rgb24"  # lossless
        for f in sorted(frames.iterdir()):
            frame = av.VideoFrame.from_image(Image.open(f).crop((0, 0, 36, 20)))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    video = read_video(path)
    theirs, metadata = load_video(str(path), backend="pyav")
    assert video.fps == metadata.fps == 5 and len(video.frames) == len(theirs) == 7
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(pick(video.frames, range(7)), theirs))
    # a file's frames are decoded when the processor has chosen them, only those (a long video never sits whole)
    assert isinstance(video.frames, FileFrames)
    assert [np.asarray(a).tolist() for a in pick(video.frames, [1, 4, 4])] == [theirs[i].tolist() for i in (1, 4, 4)]
