"""The HTTP server: an OpenAI-compatible API (POST /v1/completions, POST /v1/chat/completions, GET /v1/models)
plus GET /health, GET /metrics and a chat page at / (chat.html, streaming from the chat endpoint), a Starlette
app over the scheduler (scheduler.py), served by uvicorn. Bad requests are answered with status 400 and
OpenAI's error object ({"error": {"message", "type", "param", "code"}}), a full queue with 503; streams are
server-sent events ending in `data: [DONE]`."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from ..errors import LlmarchError
from .chat_template import ChatTemplate, check_messages
from .images import chat_images
from .media import KINDS, chat_media_request, read_parts
from .outputs import ChoiceText
from .requests import BadRequest, check_model, completion_prompts, max_new, sampling
from .scheduler import Job, QueueFull, Scheduler, StepFailed
from .speculation import Speculation

PAGE = Path(__file__).with_name("chat.html")


class Server:
    """What the routes share: the model, its name, tokenizer, chat template and scheduler."""

    def __init__(self, model, tokenizer, name: str, max_batch: int = 8, max_queue: int = 64,
                 speculation: Speculation | None = None):
        """speculation: decode requests that start alone speculatively (speculation.py); checked here."""
        self.name, self.tokenizer, self.model = name, tokenizer, model
        self.context = model.config.context_length
        self.template = ChatTemplate(tokenizer)
        if speculation is not None:
            speculation.check(model)
        self.scheduler = Scheduler(model, tokenizer, max_batch, max_queue, speculation=speculation)
        self.metrics = self.scheduler.metrics
        self.created = int(time.time())


def build_app(server: Server):
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}},
                            status_code=status)

    def counted(endpoint: str, handler):
        async def route(request):
            try:
                response = await handler(request)
            except BadRequest as e:
                response = error(400, str(e), e.param)
            except QueueFull as e:
                response = error(503, str(e), kind="server_overloaded")
            except StepFailed as e:
                response = error(500, str(e), kind="server_error")
            except LlmarchError as e:
                response = error(400, str(e))
            server.metrics.requests[(endpoint, response.status_code)] += 1
            return response
        return route

    async def body_of(request) -> dict:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        check_model(body, server.name)
        return body

    async def completions(request):
        body = await body_of(request)
        s = sampling(body, chat=False, vocab=server.tokenizer.vocab_size)
        prompts = completion_prompts(body, server.tokenizer)
        news = [max_new(ids, s, server.context) for ids in prompts]
        prefixes = [server.tokenizer.decode(ids) if s.echo else "" for ids in prompts]
        return await run(request, prompts, news, s, prefixes, chat=False)

    async def chat(request):
        body = await body_of(request)
        s = sampling(body, chat=True, vocab=server.tokenizer.vocab_size)
        try:  # the parts read, then laid out as the family's processor lays out the rendered text (media.py)
            messages = read_parts(check_messages(chat_images(body.get("messages")), KINDS))
            text = server.template.render(messages, media=KINDS)
            ids, arguments = chat_media_request(server.model, server.tokenizer, text, messages)
        except LlmarchError as e:
            raise BadRequest(str(e), "messages") from None
        return await run(request, [ids], [max_new(ids, s, server.context, "messages")], s, [""], chat=True,
                         images=arguments)

    async def run(request, prompts, news, s, prefixes, chat: bool, images: dict | None = None):
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        jobs = [Job(ids, new, s.n, s.temperature, s.top_k, s.top_p, s.seed, s.logprobs,
                    s.echo and s.logprobs is not None, loop, events, index=i, penalties=s.penalties,
                    images=images)
                for i, (ids, new) in enumerate(zip(prompts, news))]
        try:
            for job in jobs:
                server.scheduler.submit(job)
        except LlmarchError:
            for job in jobs:
                job.cancel()
            raise
        # a completion's text runs on from its prompt's; a chat reply is its own ids' text (outputs.py)
        outs = [ChoiceText(server.tokenizer, s.stop, prefixes[i // s.n], () if chat else prompts[i // s.n])
                for i in range(len(jobs) * s.n)]
        meta = dict(id=f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", created=int(time.time()),
                    model=server.name)
        state = _Collect(jobs, outs, events, s.n)
        if s.stream:
            return StreamingResponse(_stream(state, meta, s, chat), media_type="text/event-stream")
        if not await _until_done(request, state):
            return Response(status_code=499)  # the client closed the request (nginx's code); nobody reads it
        return JSONResponse(_response(state, meta, chat))

    async def models(request):
        return JSONResponse({"object": "list", "data": [
            {"id": server.name, "object": "model", "created": server.created, "owned_by": "llmarch"}]})

    async def page(request):
        return HTMLResponse(PAGE.read_text())

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def metrics(request):
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app):
        server.scheduler.start()
        yield
        server.scheduler.stop()

    routes = [Route("/v1/completions", counted("completions", completions), methods=["POST"]),
              Route("/v1/chat/completions", counted("chat", chat), methods=["POST"]),
              Route("/v1/models", models), Route("/health", health), Route("/metrics", metrics), Route("/", page)]
    return Starlette(routes=routes, lifespan=lifespan)


class _Collect:
    """The events of a request's jobs, gathered into its choices (choice index = prompt index * n + choice)."""

    def __init__(self, jobs, outs, events, n):
        self.jobs, self.outs, self.events, self.n = jobs, outs, events, n
        self.prompt_logprobs: dict[int, list] = {}
        self.open = len(outs)
        self.closed: set[int] = set()

    async def next(self) -> tuple[int, str]:
        """Waits for one event -> (choice index, new text); index -1 for a prompt's echo logprobs."""
        job_index, kind, *rest = await self.events.get()
        if kind == "error":
            raise StepFailed(rest[0])
        if kind == "prompt":
            self.prompt_logprobs[job_index] = rest[0]
            return -1, ""
        i = job_index * self.n + rest[0]
        out = self.outs[i]
        if i in self.closed:  # ended by a stop string; its row's last events may still arrive
            return i, ""
        if kind == "token":
            piece = out.add(*rest[1:])
            if out.finish:  # a stop string: its row is freed at the next step
                self.jobs[job_index].cancel(rest[0])
                self._close(i)
            return i, piece
        self._close(i)
        return i, out.end(rest[1])

    def _close(self, i: int) -> None:
        self.closed.add(i)
        self.open -= 1

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    def usage(self) -> dict:
        prompt = sum(len(j.prompt) for j in self.jobs)
        completion = sum(len(o.ids) for o in self.outs)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _until_done(request, state: _Collect) -> bool:
    """Gathers every choice -> True; a client that goes away cancels its choices (their rows are freed at once)
    -> False."""
    async def gather():
        while state.open:
            await state.next()

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.ensure_future(gather()), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            state.cancel()
    if not work.cancelled():
        work.result()  # raises a failed step's error
    return not work.cancelled()


def _response(state: _Collect, meta: dict, chat: bool) -> dict:
    choices = []
    for i, out in enumerate(state.outs):
        job = state.jobs[i // state.n]
        if chat:
            choice = {"index": i, "message": {"role": "assistant", "content": out.full_text},
                      "logprobs": out.chat_logprobs() if job.logprobs is not None else None}
        else:
            prompt = state.prompt_logprobs.get(i // state.n)
            choice = {"index": i, "text": out.full_text,
                      "logprobs": out.completion_logprobs(prompt) if job.logprobs is not None else None}
        choices.append(dict(choice, finish_reason=out.finish))
    return dict(meta, object="chat.completion" if chat else "text_completion", choices=choices,
                usage=state.usage())


async def _stream(state: _Collect, meta: dict, s, chat: bool):
    """Server-sent events: one chunk per piece of new text (chat: a first chunk with the role), one with each
    choice's finish_reason, usage if asked (stream_options.include_usage), then [DONE]."""
    obj = "chat.completion.chunk" if chat else "text_completion"
    sent = [0] * len(state.outs)  # logprob rows sent per choice
    offset = [0] * len(state.outs)  # text_offset of each choice's next row: offsets run on across chunks
    echoed = [False] * len(state.outs)  # the echoed prompt's rows go with each choice's first chunk, as unstreamed

    def chunk(i, text, finish=None, role=False):
        out = state.outs[i]
        rows, sent[i] = out.logprobs[sent[i]:], len(out.logprobs)
        logprobs = None
        if state.jobs[i // state.n].logprobs is not None:
            prompt = None if echoed[i] else state.prompt_logprobs.get(i // state.n)
            echoed[i] = echoed[i] or prompt is not None
            if chat:
                logprobs = out.chat_logprobs(rows)
            else:
                logprobs, offset[i] = _rows_only(out, prompt, rows, offset[i])
        if chat:
            delta = ({"role": "assistant"} if role else {}) | ({"content": text} if text or not role else {})
            c = {"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        else:
            c = {"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return "data: " + json.dumps(dict(meta, object=obj, choices=[c])) + "\n\n"

    try:
        if chat:
            for i in range(len(state.outs)):
                yield chunk(i, "", role=True)
        while state.open:
            before = state.open
            i, piece = await state.next()
            if i >= 0 and (piece or state.open < before):
                yield chunk(i, piece, state.outs[i].finish if state.open < before else None)
        if s.include_usage:
            yield "data: " + json.dumps(dict(meta, object=obj, choices=[], usage=state.usage())) + "\n\n"
        yield "data: [DONE]\n\n"
    except LlmarchError as e:
        yield "data: " + json.dumps({"error": {"message": str(e), "type": "server_error"}}) + "\n\n"
    finally:
        state.cancel()


def _rows_only(out: ChoiceText, prompt, rows, start: int) -> tuple[dict, int]:
    """Completions' logprobs for the rows of this chunk (and the echoed prompt's, with the first), their text
    offsets from `start`; and the offset after them."""
    view = ChoiceText(out.tok, [])
    view.logprobs = rows
    logprobs = view.completion_logprobs(prompt, start)
    tokens = logprobs["tokens"]  # the offset after them: the last one's, plus its text
    return logprobs, logprobs["text_offset"][-1] + len(tokens[-1]) if tokens else start
