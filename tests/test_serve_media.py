"""Audio and video in chat (serve/media.py, serve/images.py) against transformers, on the tiny random checkpoints of
test_audio_prompts.py (Qwen2-Audio) and test_qwen_vl_videos.py (Qwen2.5-VL): the server's input_audio parts answer
as transformers' greedy reply to its processor's chat prompt; an audio prompt decoded in a running batch beside a
text prompt has each one's logits alone; `llmarch chat`'s /video and the server's video_url parts lay a conversation
out as the processor does its apply_chat_template text; refusals are one line (HTTP 400, OpenAI's error shape)."""
import base64
import json

import pytest
import torch

import llmarch
from llmarch.audio.prompts import audio_request
from llmarch.data.tokenizer import load_tokenizer
from llmarch.data.wav import read_wav
import test_audio_prompts
import test_qwen_vl_images
import test_qwen_vl_videos

transformers = pytest.importorskip("transformers")
pytest.importorskip("starlette")

QUESTION = "what is the sound?"
qwen2_audio = test_audio_prompts.qwen2_audio  # the fixtures of the checkpoints, shared


def post(path, tok, messages, **body):
    """POST /v1/chat/completions to a server of the checkpoint -> (status, JSON)."""
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app

    server = Server(llmarch.load(path), tok, "m", max_batch=2)
    with TestClient(build_app(server)) as client:
        reply = client.post("/v1/chat/completions", json=dict(messages=messages, max_tokens=5, temperature=0, **body))
    return reply.status_code, reply.json()


def audio_part(wav) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav.read_bytes()).decode(),
                                                   "format": "wav"}}


def test_server_chat_with_a_clip(qwen2_audio):
    """An input_audio part: transformers' greedy reply to the processor's chat prompt, and its prompt length."""
    path, hf, proc, wavs = qwen2_audio
    messages = [{"role": "user", "content": [{"type": "audio", "audio_url": str(wavs[1])},
                                             {"type": "text", "text": QUESTION}]}]
    inputs = proc(text=proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                  audio=[read_wav(wavs[1])], return_tensors="pt")
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False,
                      eos_token_id=proc.tokenizer.eos_token_id)[0, inputs["input_ids"].shape[1]:]
    asked = [{"role": "user", "content": [audio_part(wavs[1]), {"type": "text", "text": QUESTION}]}]
    status, reply = post(path, load_tokenizer(path), asked)
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"] == proc.decode(new, skip_special_tokens=True)
    assert reply["usage"]["prompt_tokens"] == inputs["input_ids"].shape[1]


def test_running_batch_decodes_a_clip_beside_text(qwen2_audio):
    """An audio prompt joins a running batch beside a text prompt that started first: every decoded step's logits are
    transformers' of that row alone (within 1e-4), its greedy tokens the same."""
    from llmarch.generate.batch import RunningBatch

    path, hf, _, wavs = qwen2_audio
    model, tok = llmarch.load(path), load_tokenizer(path)
    heard, arguments = audio_request(model, tok, QUESTION, [read_wav(wavs[0])])
    plain = tok.encode("a dog barks in the rain")
    batch, new = RunningBatch(model, rows=2, max_len=len(heard) + 8), 5
    tokens, logits = {}, {}
    for row, (ids, given) in enumerate([(plain, None), (heard, arguments)]):
        states, first = batch.prefill(ids, images=given)
        batch.join(row, states, len(ids), batch.rope_delta(ids, given))
        tokens[row], logits[row] = [int(first.argmax())], [first]
    for _ in range(new - 1):
        out = batch.decode(torch.tensor([tokens[0][-1], tokens[1][-1]]))
        for row in (0, 1):
            tokens[row].append(int(out[row].argmax()))
            logits[row].append(out[row])
    worst = 0.0
    for row, (ids, given) in enumerate([(plain, {}), (heard, arguments)]):
        with torch.no_grad():
            full = hf(input_ids=torch.tensor([ids + tokens[row][:-1]]), **given).logits[0, len(ids) - 1:]
        assert full.argmax(-1).tolist() == tokens[row]
        worst = max(worst, float((torch.stack(logits[row]) - full).abs().max()))
    assert worst <= 1e-4, worst


def test_server_audio_refusals_are_one_line(qwen2_audio, tmp_path):
    path, _, _, wavs = qwen2_audio
    text = tmp_path / "text"
    llmarch.to_hf(llmarch.build("llama-tiny", vocab_size=300, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2,
                                hf_model_type="llama"), text)
    load_tokenizer(path).save(text)
    part = audio_part(wavs[0])
    mp3 = {"type": "input_audio", "input_audio": dict(part["input_audio"], format="mp3")}
    garbled = {"type": "input_audio", "input_audio": dict(part["input_audio"], data="not base64!")}
    not_wav = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....").decode(),
                                                      "format": "wav"}}
    for where, bad, said in [(text, part, "reads no audio clips"), (path, mp3, "format 'mp3' is not read"),
                             (path, garbled, "base64 does not decode"), (path, not_wav, "audio 0 of the request"),
                             (path, {"type": "audio", "audio": str(wavs[0])}, "OpenAI's input_audio part")]:
        status, reply = post(where, load_tokenizer(where), [{"role": "user", "content": [bad, "hi"][:1]}])
        message = reply["error"]["message"]
        assert status == 400 and said in message and "\n" not in message, message
        assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["param"] == "messages"


VIDEO_TEMPLATE = test_qwen_vl_images.TEMPLATE.replace(  # Qwen2-VL's template writes a video part so
    "{% elif c['type'] == 'text' %}", "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}")
frames = test_qwen_vl_videos.frames


@pytest.fixture(scope="module")
def qwen_video(tmp_path_factory):
    """(path, transformers model, tokenizer): test_qwen_vl_videos' tiny Qwen2.5-VL, its template placing videos."""
    tok = test_qwen_vl_images.tokenizer()
    tok.chat_template = VIDEO_TEMPLATE
    hf = test_qwen_vl_images.random_model(
        "Qwen2_5_VL", text_config=dict(test_qwen_vl_images.TEXT, vocab_size=len(tok)),
        vision_config=dict(test_qwen_vl_images.VISION, depth=1, hidden_size=32, out_hidden_size=32,
                           intermediate_size=40, window_size=16, fullatt_block_indexes=[0], tokens_per_second=3),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"))
    path = tmp_path_factory.mktemp("qwen_video_chat")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "video_preprocessor_config.json").write_text(json.dumps(test_qwen_vl_videos.VIDEOS["qwen2_5_vl"]))
    (path / "preprocessor_config.json").write_text(json.dumps(
        dict(test_qwen_vl_videos.PIXELS, image_processor_type="Qwen2VLImageProcessor")))
    return path, hf, tok


def mp4(frames_dir) -> bytes:
    """The frames (cropped to even sizes) as an MPEG-4 file at 4 frames a second, written by PyAV."""
    av = pytest.importorskip("av")
    import io

    from PIL import Image

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 36, 20, "yuv420p"
        for f in sorted(frames_dir.iterdir()):
            frame = av.VideoFrame.from_image(Image.open(f).convert("RGB").crop((0, 0, 36, 20)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def test_terminal_chat_with_a_video(qwen_video, frames):
    """`llmarch chat`'s /video DIR: the prompt is the ids of transformers' processor on its apply_chat_template text
    with a video part (the frames at 2 a second, /video's rate), and the reply transformers' greedy continuation."""
    from transformers.video_utils import VideoMetadata

    from llmarch.serve.terminal import Conversation, chat_loop
    from llmarch.vision.video_files import read_video

    path, hf, hf_tok = qwen_video
    model, tok = llmarch.load(path), load_tokenizer(path)
    conversation = Conversation(model, tok, max_tokens=5, temperature=0)
    lines, shown = iter([f"/video {frames}", "what happens?", f"/video {frames / 'none'}", "/exit"]), []
    chat_loop(conversation, lambda _: next(lines), shown.append)
    assert "(video added to the next message)\n" in shown
    assert any(s.startswith("(error:") and "none" in s for s in shown), shown
    video = read_video(frames)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}]
    conversation.history.pop()  # the reply, asked again of transformers
    ids, arguments = conversation.prompt()
    metadata = [VideoMetadata(total_num_frames=7, fps=2.0, frames_indices=list(range(7)))]
    proc = test_qwen_vl_videos.processor("Qwen2_5_VLProcessor", hf_tok, test_qwen_vl_videos.FakeVideos(arguments,
                                                                                                       metadata))
    text = proc.apply_chat_template(messages, chat_template=VIDEO_TEMPLATE, add_generation_prompt=True,
                                    tokenize=False)
    theirs = proc(text=text, videos=[video.frames], return_tensors="pt")
    assert ids == theirs["input_ids"][0].tolist()
    assert arguments["second_per_grid_ts"].tolist() == list(theirs["second_per_grid_ts"]) == [1.0]
    x = torch.tensor([ids])
    out = hf.generate(input_ids=x, mm_token_type_ids=2 * (x == hf.config.video_token_id).int(), max_new_tokens=5,
                      do_sample=False, **arguments)[0, len(ids):]
    reply = Conversation(model, tok, max_tokens=5, temperature=0)
    reply.attach(frames, "video")
    assert reply.reply("what happens?", lambda _: None) == hf_tok.decode(out, skip_special_tokens=True)


def test_server_chat_with_a_video_file(qwen_video, frames, tmp_path):
    """A video_url part with an MP4 data URL: the reply `llmarch chat` gives the same file (/video FILE)."""
    from llmarch.serve.terminal import Conversation

    path, _, _ = qwen_video
    (tmp_path / "clip.mp4").write_bytes(data := mp4(frames))
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    conversation.attach(tmp_path / "clip.mp4", "video")
    expected = conversation.reply("what happens?", lambda _: None)
    url = "data:video/mp4;base64," + base64.b64encode(data).decode()
    asked = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                          {"type": "text", "text": "what happens?"}]}]
    status, reply = post(path, load_tokenizer(path), asked)
    assert status == 200 and reply["choices"][0]["message"]["content"] == expected, reply
    for bad, said in [("data:video/mp4;base64,AAAA", "video 0 of the request cannot be decoded"),
                      ("https://example.com/v.mp4", "fetches no URLs")]:
        asked[0]["content"][0]["video_url"]["url"] = bad
        status, reply = post(path, load_tokenizer(path), asked)
        assert status == 400 and said in reply["error"]["message"], reply


def test_a_url_part_without_its_url_is_named():
    from llmarch.serve.images import chat_images
    from llmarch.serve.requests import BadRequest

    for kind in ("image", "video"):
        with pytest.raises(BadRequest, match=f"^messages\\[0\\]: the {kind}_url part needs {kind}_url.url$"):
            chat_images([{"role": "user", "content": [{"type": f"{kind}_url", f"{kind}_url": {}}]}])
