"""Repetition, presence and frequency penalties (generate/penalties.py): the repetition penalty's greedy tokens
equal transformers' generate with repetition_penalty; presence and frequency equal a hand-written loop of full
forwards; the CLI, the terminal chat and the server take them, and refuse them out of range in one line."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.generate import generate
from llmarch.generate.penalties import Penalties

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny transformers LLaMA and llmarch's model read from its files."""
    cfg = transformers.LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.3)  # logits far enough apart that greedy choices are no float ties
    path = tmp_path_factory.mktemp("llama")
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path).eval()


PROMPT = [3, 17, 5, 17, 9, 30, 2]


def test_repetition_penalty_equals_transformers(pair):
    hf, model = pair
    ids = torch.tensor([PROMPT])
    plain = generate(model, [PROMPT], 24)[0]
    for theta in (1.3, 0.7):
        ref = hf.generate(ids, max_new_tokens=24, do_sample=False, repetition_penalty=theta)[0].tolist()
        ours = generate(model, [PROMPT], 24, penalties=Penalties(repetition=theta))[0]
        assert ours == ref
        assert ours != plain  # the penalty changed the output: the comparison shows it


def test_penalties_equal_a_loop_of_full_forwards(pair):
    """Each step's logits minus presence * [generated] and frequency * count, argmax: computed by hand with full
    forwards, against the cached loop; a left-padded batch's rows equal the rows alone."""
    _, model = pair
    penalties = Penalties(presence=0.8, frequency=0.5)
    seq, counts = list(PROMPT), torch.zeros(48)
    with torch.no_grad():
        for _ in range(20):
            logits = model(torch.tensor([seq])).logits[0, -1]
            tok = int((logits - 0.8 * (counts > 0) - 0.5 * counts).argmax())
            counts[tok] += 1
            seq.append(tok)
    assert generate(model, [PROMPT], 20, penalties=penalties)[0] == seq
    assert seq != generate(model, [PROMPT], 20)[0]
    short = [7, 7, 1]
    batch = generate(model, [PROMPT, short], 20, penalties=penalties)
    assert batch == [seq, generate(model, [short], 20, penalties=penalties)[0]]
    theta = Penalties(repetition=1.5)
    assert generate(model, [PROMPT, short], 20, penalties=theta)[1] == generate(model, [short], 20, penalties=theta)[0]


def test_left_padding_is_no_token_of_the_prompt():
    seen = Penalties(repetition=2.0).start(torch.tensor([[0, 0, 5]]), 8, mask=torch.tensor([[0, 0, 1]]))
    seen.add(torch.tensor([3]))
    logits = torch.tensor([[1.0, 1, 1, -1, 1, 1, 1, 1]])
    assert seen.apply(logits).tolist() == [[1.0, 1, 1, -2, 1, 0.5, 1, 1]]


def test_sampled_with_penalties_is_seeded(pair):
    _, model = pair
    p = Penalties(repetition=1.2, frequency=3.0)
    a = generate(model, [PROMPT], 16, temperature=0.9, seed=4, penalties=p)
    assert a == generate(model, [PROMPT], 16, temperature=0.9, seed=4, penalties=p)
    assert a != generate(model, [PROMPT], 16, temperature=0.9, seed=4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(repetition=0.0), "repetition_penalty must be > 0"),
    (dict(repetition=float("nan")), "repetition_penalty must be > 0"),
    (dict(presence=float("inf")), "presence_penalty must be a finite number"),
])
def test_bad_penalties(kwargs, message):
    with pytest.raises(LlmarchError, match=message):
        Penalties(**kwargs)


def test_speculative_decoding_with_penalties_keeps_the_penalized_tokens(pair):
    """Prompt lookup and a draft model check each drafted position with the penalties of the tokens before it
    (Seen.along): greedy output equals plain penalized decoding. With the target as its own draft every draft is
    kept, greedy or sampled, only if both models' logits are penalized alike at every drafted position."""
    _, model = pair
    for p in (Penalties(repetition=1.3), Penalties(presence=0.4, frequency=0.3), Penalties(repetition=0.8)):
        want = generate(model, [PROMPT], 24, penalties=p)
        assert want != generate(model, [PROMPT], 24)
        looked, drafted = {}, {}
        assert generate(model, [PROMPT], 24, penalties=p, prompt_lookup=3, stats=looked) == want
        assert generate(model, [PROMPT], 24, penalties=p, draft=model, num_draft=3, stats=drafted) == want
        assert drafted["accepted"] == drafted["drafted"] > 0
        sampled = {}
        generate(model, [PROMPT], 24, penalties=p, draft=model, num_draft=3, temperature=0.8, seed=1, stats=sampled)
        assert sampled["accepted"] == sampled["drafted"] > 0
    assert looked["accepted"] > 0  # lookup drafts were kept under the mild penalty: Seen.along's rows were read


def test_beam_search_with_a_repetition_penalty_equals_transformers(pair):
    """transformers applies the penalty to each beam's log-probabilities over its own sequence: the same beams."""
    hf, model = pair
    ids = torch.tensor([PROMPT, [9, 9, 4, 30, 2, 11, 7]])
    plain = generate(model, ids, 16, num_beams=3)
    for theta in (1.5, 0.8):
        ref = hf.generate(ids, max_new_tokens=16, do_sample=False, num_beams=3, repetition_penalty=theta)
        ours = generate(model, ids, 16, num_beams=3, penalties=Penalties(repetition=theta))
        assert torch.equal(ours, ref)
        assert not torch.equal(ours, plain)


def test_cli_generate_takes_penalties(tmp_path, capsys):
    from test_cli_trust import call, one_line_error

    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer

    torch.manual_seed(0)
    save_model(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, d_model=32, n_heads=2, context_length=64),
               tmp_path / "ckpt")
    ByteTokenizer().save(tmp_path / "ckpt")
    base = ["generate", "--checkpoint", str(tmp_path / "ckpt"), "--prompt", "abab", "--max-new-tokens", "12",
            "--temperature", "0", "--no-stream"]
    code, plain, _ = call(capsys, *base)
    code2, penalized, _ = call(capsys, *base, "--frequency-penalty", "3", "--repetition-penalty", "1.5")
    assert code == code2 == 0 and penalized != plain
    one_line_error(capsys, "repetition_penalty must be > 0", *base, "--repetition-penalty", "0")
    code, looked, _ = call(capsys, *base, "--frequency-penalty", "3", "--repetition-penalty", "1.5",
                           "--prompt-lookup", "2")
    assert code == 0 and looked == penalized
    code, beams, _ = call(capsys, *base, "--repetition-penalty", "1.5", "--num-beams", "2")
    assert code == 0 and beams
    one_line_error(capsys, "repetition_penalty must be > 0", "chat", "--checkpoint", str(tmp_path / "none"),
                   "--repetition-penalty", "-1")


def test_server_takes_openai_penalties():
    """presence_penalty and frequency_penalty (OpenAI's, in [-2, 2]), repetition_penalty and logit_bias: a greedy
    answer equals generate's with the same penalties, n choices included; out of range is a 400 naming the
    parameter, and so is a parameter asking for what the server does not do (tools, JSON output)."""
    from test_serve import Running, tiny_model

    httpx = pytest.importorskip("httpx")
    from llmarch.data.tokenizer import ByteTokenizer

    tok, model = ByteTokenizer(), tiny_model()
    srv = Running(model=tiny_model())
    try:
        ids = tok.encode("ab ab ab")
        plain = generate(model, [ids], 24)[0][len(ids):]
        # the tiny model repeats nothing in 24 tokens: a negative penalty (a reward for repeats) shows it applies
        for fields, p in [(dict(frequency_penalty=-2.0), Penalties(frequency=-2.0)),
                          (dict(presence_penalty=-1.5, repetition_penalty=0.5), Penalties(0.5, presence=-1.5))]:
            want = generate(model, [ids], 24, penalties=p)[0][len(ids):]
            assert want != plain
            r = srv.client.completions.create(model="tiny", prompt="ab ab ab", max_tokens=24, temperature=0, n=2,
                                              extra_body=dict(fields))
            assert [c.text for c in r.choices] == [tok.decode(want)] * 2
        # OpenAI's logit_bias: +100 on "x" makes every greedy token "x"; -100 on the plain answer's first token
        # moves it, and the logprobs stay the model's own
        r = srv.client.completions.create(model="tiny", prompt="ab ab ab", max_tokens=5, temperature=0,
                                          logit_bias={str(ord("x")): 100})
        assert r.choices[0].text == "xxxxx"
        r = srv.client.completions.create(model="tiny", prompt="ab ab ab", max_tokens=1, temperature=0, logprobs=1,
                                          logit_bias={str(plain[0]): -100})
        assert r.choices[0].text != tok.decode(plain[:1])
        with torch.no_grad():
            raw = float(model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)[plain[0]])
        assert r.choices[0].logprobs.top_logprobs[0] == {tok.decode(plain[:1]): pytest.approx(raw, abs=1e-4)}
        for body, param in [({"presence_penalty": 2.5}, "presence_penalty"),
                            ({"frequency_penalty": "1"}, "frequency_penalty"),
                            ({"repetition_penalty": 0}, "repetition_penalty"),
                            ({"logit_bias": {"300": 1}}, "logit_bias"),  # beyond the 257 byte tokens
                            ({"logit_bias": {"a": 1}}, "logit_bias"),
                            ({"logit_bias": {"3": 101}}, "logit_bias"),
                            ({"logit_bias": [1]}, "logit_bias"),
                            ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                            ({"response_format": {"type": "json_object"}}, "response_format"),
                            ({"best_of": 3}, "best_of"),
                            ({"suffix": "end"}, "suffix")]:
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", **body})
            assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
        ok = {"tools": [], "response_format": {"type": "text"}, "best_of": 1, "user": "me"}  # what clients send
        assert httpx.post(srv.url + "/v1/completions", json={"prompt": "a", **ok}).status_code == 200
    finally:
        srv.close()


def test_speculation_takes_penalized_requests():
    """The server speculates a penalized request too (tests/test_serve_speculative.py: its text is plain
    penalized decoding's); it still leaves those with several choices to the batch."""
    from llmarch.serve.scheduler import Job
    from llmarch.serve.speculation import Speculation

    spec = Speculation(num_draft=2)
    assert spec.applies(Job([1, 2], 8))
    assert spec.applies(Job([1, 2], 8, penalties=Penalties(presence=1.0)))
    assert not spec.applies(Job([1, 2], 8, n=2, penalties=Penalties(presence=1.0)))
