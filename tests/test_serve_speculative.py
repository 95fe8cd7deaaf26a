"""Speculative decoding in the server (serve/speculation.py), driven by the `openai` client: a request that
starts alone decodes with prompt lookup or a draft model, its greedy text the same as plain serving's; one that
is joined by another moves into the running batch mid-answer, its text still the same; /metrics counts what was
drafted and accepted; bad flags are one line and exit 2."""
import contextlib
import copy
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("openai")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from test_serve import Running, tiny_model  # noqa: E402

from llmarch.data.tokenizer import ByteTokenizer  # noqa: E402
from llmarch.generate import generate  # noqa: E402
from llmarch.generate.penalties import Penalties  # noqa: E402
from llmarch.models import TransformerLM  # noqa: E402
from llmarch.presets import resolve  # noqa: E402
from llmarch.serve.speculation import Speculation  # noqa: E402

PROMPTS = ["def f(x):\n    return x\ndef f(", "abcabcabcab", "hello"]
# a request's penalties (OpenAI's two, CTRL's repetition penalty) as plain decoding takes them, and as the API does
PENALIZED = (Penalties(1.3, 0.4, 0.3), dict(presence_penalty=0.4, frequency_penalty=0.3,
                                             extra_body={"repetition_penalty": 1.3}))


def small_draft(**over) -> TransformerLM:
    torch.manual_seed(1)
    return TransformerLM(resolve("llama-tiny", **{"vocab_size": 257, "d_model": 32, "n_layers": 1, "n_heads": 4,
                                                  "n_kv_heads": 2, "ffn_hidden": 64, "context_length": 96, **over}))


@pytest.fixture(scope="module")
def plain():
    """Greedy text plain decoding gives a prompt alone (a model of its own: the servers' are busy)."""
    model, tok = tiny_model(), ByteTokenizer()

    def answer(prompt: str, n: int, penalties: Penalties | None = None) -> str:
        ids = tok.encode(prompt)
        out = generate(model, [ids], n, eos_id=tok.eos_id, penalties=penalties)[0][len(ids):]
        return tok.decode(t for t in out if t != tok.eos_id)
    return answer


def counters(url: str) -> tuple[int, int]:
    lines = dict(line.split(" ") for line in httpx.get(url + "/metrics").text.splitlines()
                 if line.startswith("llmarch_speculative_"))
    return (int(lines["llmarch_speculative_drafted_tokens_total"]),
            int(lines["llmarch_speculative_accepted_tokens_total"]))


@pytest.mark.parametrize("kind", ["prompt lookup", "draft", "draft = target"])
def test_greedy_text_equals_plain_serving(kind, plain):
    draft = {"prompt lookup": None, "draft": small_draft(), "draft = target": copy.deepcopy(tiny_model())}[kind]
    running = Running(speculation=Speculation(4, draft))
    try:
        client = running.client
        for prompt in PROMPTS:
            r = client.completions.create(model="tiny", prompt=prompt, max_tokens=30, temperature=0)
            assert r.choices[0].text == plain(prompt, 30) and r.usage.completion_tokens == 30
        chunks = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=30, temperature=0,
                                           stream=True)
        assert "".join(c.choices[0].text for c in chunks) == plain(PROMPTS[0], 30)
        drafted, accepted = counters(running.url)
        assert drafted > 0 and 0 <= accepted <= drafted
        if kind == "prompt lookup":  # the prompts repeat spans, and so does the output of a random model
            assert accepted > 0
        if kind == "draft = target":  # always right: every drafted token kept
            assert accepted == drafted
        assert running.server.metrics.completion_tokens == 4 * 30
    finally:
        running.close()


@pytest.mark.parametrize("kind", ["prompt lookup", "draft = target"])
def test_penalized_requests_speculate_to_plain_penalized_text(kind, plain):
    """A request with penalties decodes speculatively, each drafted position penalized as plain decoding would
    penalize it there: its text is plain penalized decoding's (which differs from unpenalized decoding's), and a
    target drafting for itself keeps every draft, which holds only if the draft is penalized alike. (Penalized
    text repeats little, so prompt lookup finds few drafts: its rounds are counted, not its drafts.)"""
    penalties, api = PENALIZED
    running = Running(speculation=Speculation(4, None if kind == "prompt lookup" else copy.deepcopy(tiny_model())))
    rounds, speculate = [], running.server.scheduler._speculate
    running.server.scheduler._speculate = lambda: (rounds.append(1), speculate())[1]
    try:
        for prompt in PROMPTS[:2]:
            r = running.client.completions.create(model="tiny", prompt=prompt, max_tokens=30, temperature=0, **api)
            assert r.choices[0].text == plain(prompt, 30, penalties) != plain(prompt, 30)
        drafted, accepted = counters(running.url)
        assert len(rounds) > 2 and (drafted > 0 and accepted == drafted if kind == "draft = target" else True)
    finally:
        running.close()


def test_sampled_with_a_draft_and_requests_it_does_not_take(plain):
    running = Running(speculation=Speculation(3, small_draft()))
    try:
        client = running.client
        r = client.completions.create(model="tiny", prompt="ab", max_tokens=12, temperature=0.8, seed=3)
        again = client.completions.create(model="tiny", prompt="ab", max_tokens=12, temperature=0.8, seed=3)
        assert r.usage.completion_tokens == 12 and r.choices[0].text == again.choices[0].text
        before = counters(running.url)
        # logprobs and n > 1 decode plainly: nothing drafted
        r = client.completions.create(model="tiny", prompt="ab", max_tokens=5, temperature=0, logprobs=1)
        assert len(r.choices[0].logprobs.token_logprobs) == 5 and r.choices[0].text == plain("ab", 5)
        assert len(client.completions.create(model="tiny", prompt="ab", max_tokens=5, n=2).choices) == 2
        assert counters(running.url) == before
    finally:
        running.close()


@pytest.mark.parametrize("penalized", [False, True], ids=["plain", "penalized"])
def test_a_second_request_moves_the_first_into_the_batch(penalized, plain):
    """The first request decodes alone (slowed: 20 ms a round) until the second arrives; it then joins the
    running batch where it stands; once the second (shorter) is done it leaves the batch and speculates again
    from where it stands; both answers are plain serving's. Penalized, its penalty state moves with it both
    ways: the counts of every token so far. (Penalized, the target drafts for itself: penalized text repeats too
    little for prompt lookup to draft.)"""
    penalties, api = PENALIZED if penalized else (None, {})
    running = Running(speculation=Speculation(2, copy.deepcopy(tiny_model()) if penalized else None))
    scheduler = running.server.scheduler
    speculate = scheduler._speculate
    scheduler._speculate = lambda: (time.sleep(0.02), speculate())[1]
    shares, share = [], scheduler._share
    scheduler._share = lambda: (shares.append(len(scheduler.alone.seq)), share())[1]
    resumes, resume = [], scheduler._resume
    scheduler._resume = lambda: (resume(), scheduler.alone and resumes.append(len(scheduler.alone.seq)))[0]
    try:
        def ask(prompt, n=60):
            return running.client.completions.create(model="tiny", prompt=prompt, max_tokens=n,
                                                     temperature=0, **api).choices[0].text
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(ask, PROMPTS[0])
            deadline = time.time() + 5
            while scheduler.alone is None or len(scheduler.alone.seq) < len(PROMPTS[0]) + 5:
                assert time.time() < deadline
                time.sleep(0.005)
            drafted = counters(running.url)[0]
            second = pool.submit(ask, PROMPTS[1], 10)
            assert second.result() == plain(PROMPTS[1], 10, penalties)
            assert first.result() == plain(PROMPTS[0], 60, penalties)
        assert len(shares) == 1 and len(PROMPTS[0]) + 5 <= shares[0] < len(PROMPTS[0]) + 60  # mid-answer
        assert len(resumes) == 1 and shares[0] < resumes[0] < len(PROMPTS[0]) + 60  # alone again, mid-answer
        assert counters(running.url)[0] > drafted  # and drafting again
        assert running.server.metrics.resumed == 1
        assert scheduler.alone is None and not scheduler.rows
    finally:
        running.close()


def run_serve(*argv) -> tuple[int, str]:
    from llmarch.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["serve", *argv])
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def test_bad_flags_are_one_line(tmp_path):
    from llmarch.checkpoint import save_model

    for name, model in (("target", tiny_model()), ("narrow", small_draft(vocab_size=300)),
                        ("mamba", TransformerLM(resolve("mamba-tiny", vocab_size=257, n_layers=2,
                                                        context_length=96)))):
        save_model(model, tmp_path / name)
        ByteTokenizer().save(tmp_path / name)
    target = ["--checkpoint", str(tmp_path / "target"), "--port", "0"]
    for argv, message in (
            (target + ["--draft", str(tmp_path / "narrow")], "vocabulary"),
            (target + ["--draft", str(tmp_path / "narrow"), "--num-draft", "0"], "--num-draft"),
            (target + ["--num-draft", "2"], "give --draft too"),
            (target + ["--prompt-lookup", "2", "--draft", str(tmp_path / "narrow")], "give one"),
            (["--checkpoint", str(tmp_path / "mamba"), "--prompt-lookup", "3"], "mamba mixer")):
        code, err = run_serve(*argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
