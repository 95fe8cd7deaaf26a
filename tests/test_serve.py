"""The server (serve/) driven by the official `openai` client over loopback: completions (with echo, logprobs,
stop strings, n, seeds), chat with the template, streaming, metrics, and OpenAI-style errors after which it
still answers. Greedy answers equal `generate`'s for the prompt alone, several requests at once included."""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from llmarch.data.tokenizer import ByteTokenizer  # noqa: E402
from llmarch.generate import generate  # noqa: E402
from llmarch.models import TransformerLM  # noqa: E402
from llmarch.presets import resolve  # noqa: E402
from llmarch.serve.app import Server, build_app  # noqa: E402

CONTEXT = 96


def tiny_model() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(resolve("llama-tiny", vocab_size=257, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                 ffn_hidden=128, context_length=CONTEXT))


class Running:
    """A server on a free loopback port, in a thread of this process."""

    def __init__(self, max_batch=4, max_queue=16, model=None, tok=None, name="tiny", speculation=None):
        self.tok = tok or ByteTokenizer()
        self.server = Server(model or tiny_model(), self.tok, name, max_batch, max_queue, speculation)
        self.uv = uvicorn.Server(uvicorn.Config(build_app(self.server), host="127.0.0.1", port=0,
                                                log_level="warning"))
        self.thread = threading.Thread(target=self.uv.run, daemon=True)
        self.thread.start()
        while not self.uv.started:
            time.sleep(0.02)
        port = self.uv.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0)

    def close(self):
        self.uv.should_exit = True
        self.thread.join()


@pytest.fixture(scope="module")
def srv():
    running = Running()
    yield running
    running.close()


@pytest.fixture(scope="module")
def reference():
    """Greedy text `generate` gives a prompt alone (a model of its own: the server's is busy)."""
    model, tok = tiny_model(), ByteTokenizer()

    def answer(prompt: str, n: int) -> str:
        ids = tok.encode(prompt)
        out = generate(model, [ids], n, eos_id=tok.eos_id)[0][len(ids):]
        return tok.decode(t for t in out if t != tok.eos_id)
    return answer


def test_completion_greedy_equals_generate(srv, reference):
    r = srv.client.completions.create(model="tiny", prompt="def main(", max_tokens=20, temperature=0)
    assert r.choices[0].text == reference("def main(", 20)
    assert r.usage.prompt_tokens == 9 and r.usage.completion_tokens == 20
    assert r.choices[0].finish_reason == "length"


def test_concurrent_requests_equal_sequential(srv, reference):
    prompts = [f"{i} x" * (1 + i % 5) for i in range(10)]

    def ask(p):
        return srv.client.completions.create(model="tiny", prompt=p, max_tokens=12 + len(p) % 7,
                                             temperature=0).choices[0].text
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, prompts))
    assert got == [reference(p, 12 + len(p) % 7) for p in prompts]


def test_prompt_list_n_and_seed(srv):
    r = srv.client.completions.create(model="tiny", prompt=["ab", "cd"], max_tokens=5, n=2, temperature=1.0,
                                      seed=7)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    again = srv.client.completions.create(model="tiny", prompt=["ab", "cd"], max_tokens=5, n=2,
                                          temperature=1.0, seed=7)
    assert [c.text for c in r.choices] == [c.text for c in again.choices]
    assert r.usage.prompt_tokens == 4


def test_echo_logprobs_without_new_tokens(srv):
    """As evaluation harnesses score a text: echo, logprobs, max_tokens 0."""
    r = srv.client.completions.create(model="tiny", prompt="hello", max_tokens=0, echo=True, logprobs=2)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == "hello"
    assert lp.tokens == list("hello") and lp.token_logprobs[0] is None
    assert all(p < 0 for p in lp.token_logprobs[1:]) and lp.text_offset == [0, 1, 2, 3, 4]
    assert all(len(t) == 2 for t in lp.top_logprobs[1:])
    with torch.no_grad():
        logits = tiny_model()(torch.tensor([list(b"hello")])).logits[0].log_softmax(-1)
    assert lp.token_logprobs[1] == pytest.approx(float(logits[0, ord("e")]), abs=1e-4)


def test_generated_logprobs(srv):
    r = srv.client.completions.create(model="tiny", prompt="ab", max_tokens=4, logprobs=0, temperature=0)
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == 4 and "".join(lp.tokens) == r.choices[0].text


def test_streamed_logprobs_equal_the_unstreamed(srv):
    """Echo, logprobs and n=2, streamed: each choice's chunks joined give the unstreamed logprobs, the prompt's
    rows included and text offsets running on across chunks (they restarted at 0 in every chunk, and only
    choice 0 had the prompt's rows)."""
    body = {"prompt": "ab", "max_tokens": 5, "logprobs": 1, "echo": True, "n": 2, "temperature": 0}
    whole = httpx.post(srv.url + "/v1/completions", json=body).json()["choices"]
    joined = {i: {"tokens": [], "token_logprobs": [], "text_offset": []} for i in range(2)}
    with httpx.stream("POST", srv.url + "/v1/completions", json={**body, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for c in json.loads(line[6:])["choices"]:
                    for key in joined[c["index"]]:
                        joined[c["index"]][key] += (c["logprobs"] or {}).get(key, [])
    for c in whole:
        assert joined[c["index"]] == {k: c["logprobs"][k] for k in joined[c["index"]]}
    assert joined[1]["text_offset"][:3] == [0, 1, 2]


def test_stop_string(srv, reference):
    full = reference("def main(", 30)
    stop = full[8:10]
    r = srv.client.completions.create(model="tiny", prompt="def main(", max_tokens=30, temperature=0, stop=stop)
    assert r.choices[0].text == full[:full.index(stop)] and r.choices[0].finish_reason == "stop"


def test_streaming_completion(srv, reference):
    chunks = list(srv.client.completions.create(model="tiny", prompt="def main(", max_tokens=20, temperature=0,
                                                stream=True))
    assert "".join(c.choices[0].text for c in chunks) == reference("def main(", 20)
    assert chunks[-1].choices[0].finish_reason == "length"
    with httpx.stream("POST", srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3,
                                                                "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_chat_with_template_and_streaming(srv, reference):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    r = srv.client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    rendered = "system: be brief\nuser: hi\nassistant:"
    assert r.choices[0].message.content == reference(rendered, 10)
    assert r.usage.prompt_tokens == len(rendered)
    stream = srv.client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0,
                                                stream=True, stream_options={"include_usage": True},
                                                logprobs=True, top_logprobs=1)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reference(rendered, 10)
    assert chunks[-1].usage.completion_tokens == 10
    assert sum(len(c.choices[0].logprobs.content) for c in chunks if c.choices and c.choices[0].logprobs) == 10


def test_models_health_metrics(srv):
    assert [m.id for m in srv.client.models.list().data] == ["tiny"]
    assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
    text = httpx.get(srv.url + "/metrics").text
    for name in ("llmarch_requests_total", "llmarch_generation_tokens_total", "llmarch_queue_length",
                 "llmarch_batch_size", "llmarch_time_to_first_token_seconds_count", "llmarch_tokens_per_second"):
        assert name in text


@pytest.mark.parametrize("body, param", [
    ({"model": "gpt-4", "prompt": "a"}, "model"),
    ({"prompt": "a", "temperature": -1}, "temperature"),
    ({"prompt": "a", "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": "a", "n": 99}, None),
    ({"prompt": "a", "logprobs": 50}, "logprobs"),
    ({"prompt": "x" * (CONTEXT + 1)}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": [1, 999]}, "prompt"),
    ({"prompt": "a", "stop": ["1", "2", "3", "4", "5"]}, "stop"),
    ({"prompt": "a", "seed": 2**64}, "seed"),  # torch's generators take at most 2^64 - 1 (it was a 500)
    ({"prompt": "a", "seed": -1}, "seed"),
])
def test_bad_completion_requests(srv, body, param):
    r = httpx.post(srv.url + "/v1/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert srv.client.completions.create(model="tiny", prompt="a", max_tokens=1).choices  # still answering


@pytest.mark.parametrize("messages", [[], [{"content": "hi"}], [{"role": "user", "content": 3}], "hi",
                                      [{"role": "user", "content": [{"type": "image_url"}]}]])
def test_malformed_messages(srv, messages):
    with pytest.raises(openai.BadRequestError) as e:
        srv.client.chat.completions.create(model="tiny", messages=messages)
    assert e.value.status_code == 400
    assert httpx.post(srv.url + "/v1/chat/completions", content=b"{nope").status_code == 400
    assert srv.client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}],
                                              max_tokens=1).choices


def wait_for(condition, seconds=5.0):
    end = time.time() + seconds
    while not condition():
        assert time.time() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture
def slow():
    """A server of one row and a queue of one, whose steps take 20 ms: requests stay in it a while."""
    running = Running(max_batch=1, max_queue=1)
    decode = running.server.scheduler.batch.decode
    running.server.scheduler.batch.decode = lambda tokens: (time.sleep(0.02), decode(tokens))[1]
    yield running
    running.close()


def test_disconnect_frees_the_row(slow):
    scheduler = slow.server.scheduler
    # 100 ms a step (9 s for 90 tokens): a client starved on a loaded machine still finds its row decoding (at 30 ms
    # a step, the whole suite on two cores once found the row already done when the first line arrived)
    decode = scheduler.batch.decode
    scheduler.batch.decode = lambda tokens: (time.sleep(0.1), decode(tokens))[1]
    # greedy: a sampled request ends at the tiny model's end-of-text token a quarter of the time, sometimes at once
    with httpx.stream("POST", slow.url + "/v1/completions", json={"prompt": "a", "max_tokens": 90, "temperature": 0,
                                                                 "stream": True}) as r:
        next(r.iter_lines())
        assert scheduler.rows
    wait_for(lambda: not scheduler.rows, 1.0)  # long before its 90 tokens
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(slow.url + "/v1/completions", json={"prompt": "a", "max_tokens": 90, "temperature": 0},
                   timeout=0.3)
    wait_for(lambda: not scheduler.rows, 1.0)


def test_a_request_that_fails_after_a_row_joined_frees_it():
    """A request whose second choice fails to join the batch at prefill, after its first joined: it is answered
    with an error and its first row leaves too (it kept decoding for nobody, and the next request waited)."""
    running = Running(max_batch=2)
    scheduler = running.server.scheduler
    decode, join = scheduler.batch.decode, scheduler.batch.join
    scheduler.batch.decode = lambda tokens: (time.sleep(0.02), decode(tokens))[1]  # 80 tokens: 1.6 s
    joined = []

    def failing(row, *args):
        joined.append(row)
        if len(joined) == 2:
            raise RuntimeError("choice 1 failed")
        return join(row, *args)

    scheduler.batch.join = failing
    try:
        r = httpx.post(running.url + "/v1/completions", json={"prompt": "a", "max_tokens": 80, "n": 2})
        assert r.status_code == 500 and "choice 1 failed" in r.json()["error"]["message"]
        wait_for(lambda: not scheduler.rows, 0.5)
        scheduler.batch.join = join
        r = httpx.post(running.url + "/v1/completions", json={"prompt": "a", "max_tokens": 2, "n": 2}, timeout=10)
        assert r.status_code == 200 and len(r.json()["choices"]) == 2
    finally:
        running.close()


def test_full_queue_answers_503(slow):
    scheduler = slow.server.scheduler
    body = {"prompt": "a", "max_tokens": 60, "stream": True, "temperature": 0}  # greedy: it runs all 60
    with httpx.stream("POST", slow.url + "/v1/completions", json=body) as first:
        lines = first.iter_lines()  # kept: a collected line iterator closes the stream
        next(lines)  # running: the only row
        with ThreadPoolExecutor(1) as pool:
            queued = pool.submit(httpx.post, slow.url + "/v1/completions", json={"prompt": "b", "max_tokens": 2})
            wait_for(lambda: len(scheduler.waiting) == 1)
            r = httpx.post(slow.url + "/v1/completions", json={"prompt": "c", "max_tokens": 2})
            assert r.status_code == 503 and r.json()["error"]["message"]
            assert queued.result().status_code == 200
    assert httpx.get(slow.url + "/health").status_code == 200


def test_terminal_chat(tmp_path, reference):
    """`llmarch chat`: the template, streaming, history, /reset, /exit."""
    import subprocess
    import sys

    from llmarch.checkpoint import save_model

    save_model(tiny_model(), tmp_path)
    ByteTokenizer().save(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "llmarch", "chat", "--checkpoint", str(tmp_path), "--temperature",
                           "0", "--max-tokens", "6"], input="hi\nok\n/reset\nhi\n/exit\n", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first = reference("user: hi\nassistant:", 6)
    second = reference(f"user: hi\nassistant: {first}\nuser: ok\nassistant:", 6)
    assert proc.stdout.count(f"model> {first}\n") == 2  # the same answer after /reset
    assert f"model> {second}\n" in proc.stdout
    assert "(conversation reset)" in proc.stdout


def test_load_on_loopback(tmp_path, monkeypatch):
    """The load benchmark, bounded: 16 concurrent clients against `llmarch serve` in its own process, no errors,
    every greedy answer equal to its one-at-a-time answer (the speed figures: docs/benchmarks.md)."""
    import runpy
    import sys
    from pathlib import Path

    out = tmp_path / "load.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    # the clients in this process (the server has its own): a second interpreter for them imported torch again
    monkeypatch.setattr(sys, "argv", [str(script), "--clients", "16", "--requests", "2", "--max-tokens", "8",
                                      "--max-batch", "8", "--context", "128", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    results = json.loads(out.read_text())
    assert results["errors"] == 0 and results["same_answers"] and results["requests"] == 32


def test_chat_page(srv):
    """The page at / is served and streams from the chat endpoint (a real browser drives it in
    test_chat_browser.py)."""
    r = httpx.get(srv.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for needle in ('fetch("/v1/chat/completions"', "stream: true", "data: [DONE]", 'fetch("/v1/models")'):
        assert needle in r.text


def hf_chat_checkpoint(tmp_path, template: str, bos_first: bool = False):
    """A Hugging Face directory (written by to_hf) with `template` as its chat template; bos_first: its tokenizer
    adds a BOS (here <|endoftext|>, named bos_token) before every text, as Llama's and Gemma's do."""
    from llmarch.checkpoint import save_model
    from llmarch.cli.options import load_with_tokenizer
    from llmarch.data import train_bpe
    from llmarch.interop import to_hf

    torch.manual_seed(0)
    model = TransformerLM(resolve("llama-tiny", vocab_size=300, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                  ffn_hidden=128, context_length=64))
    save_model(model, tmp_path / "ckpt")
    train_bpe(["<|im_start|>user\nhi<|im_end|>\n" * 20, "def main():\n    return 0\n" * 20],
              vocab_size=300).save(tmp_path / "ckpt")
    to_hf(model, tmp_path / "hf", tokenizer_from=tmp_path / "ckpt")
    config_file = tmp_path / "hf" / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = template
    if bos_first:
        tok_file = tmp_path / "hf" / "tokenizer.json"
        spec = json.loads(tok_file.read_text())
        bos = config["eos_token"]
        bos_id = next(t["id"] for t in spec["added_tokens"] if t["content"] == bos)
        spec["post_processor"] = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
                                  "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
        tok_file.write_text(json.dumps(spec))
        config["bos_token"] = bos
    config_file.write_text(json.dumps(config))
    return load_with_tokenizer(tmp_path / "hf"), load_with_tokenizer(tmp_path / "hf")[0]


CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("bos_first", [False, True])
def test_hf_checkpoint_with_its_chat_template(tmp_path, bos_first):
    """A Hugging Face directory (a ChatML template added to its tokenizer_config.json) is served with its own
    template and tokenizer. With a tokenizer that adds BOS and a template that writes it, the prompt has one BOS,
    as transformers tokenizes a rendered chat (it had two)."""
    from llmarch.data.chat import encode_text

    template = ("{{ bos_token }}" if bos_first else "") + CHATML
    (served, tok), ref_model = hf_chat_checkpoint(tmp_path, template, bos_first)
    running = Running(2, model=served, tok=tok, name="hf")
    try:
        client = running.client
        r = client.chat.completions.create(model="hf", messages=[{"role": "user", "content": "hi"}], max_tokens=8,
                                           temperature=0)
        text = ("<|endoftext|>" if bos_first else "") + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        prompt = encode_text(tok, text)
        assert (tok.encode("x")[0] == prompt[0]) == bos_first  # the tokenizer adds the BOS the template writes
        assert prompt.count(prompt[0]) == 1 or not bos_first
        out = generate(ref_model, [prompt], 8, eos_id=tok.eos_id)[0][len(prompt):]
        assert r.choices[0].message.content == tok.decode(t for t in out if t not in tok.eos_ids)
        assert r.usage.prompt_tokens == len(prompt)
    finally:
        running.close()


def test_serve_and_chat_refuse_bad_options_in_one_line(tmp_path, capsys):
    """A busy port, a host that does not resolve, --max-queue 0 (every request was a 503) and chat's sampling
    options out of range: one line each, exit 2, before any model loads (they were uvicorn's exit 3, or accepted)."""
    import socket

    from test_cli_trust import one_line_error

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for argv, message in [
                (["serve", "--port", str(port)], f"cannot listen on 127.0.0.1:{port}"),
                (["serve", "--host", "nonexistent.invalid"], "is not an address to listen on"),
                (["serve", "--max-queue", "0"], "--max-queue: must be >= 1"),
                (["chat", "--top-p", "0"], "top_p must be in (0, 1]"),
                (["chat", "--temperature", "nan"], "--temperature"),
                (["chat", "--top-k", "-5"], "top_k must be >= 0"),
                (["chat", "--seed", "-1"], "--seed: must be >= 0")]:
            one_line_error(capsys, message, *argv, "--checkpoint", tmp_path / "none")
