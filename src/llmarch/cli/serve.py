"""`llmarch serve` (an OpenAI-compatible HTTP server with continuous batching: serve/) and `llmarch chat` (a chat
in the terminal with the checkpoint's chat template)."""
from __future__ import annotations

from pathlib import Path

from ..errors import LlmarchError
from .options import (CHECKPOINT_HELP, at_least, finite, load_with_tokenizer, mmproj_option, penalties_of,
                      penalty_options, speculation_options)


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible HTTP API")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    mmproj_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=8,
                   help="sequences decoded together, the running batch's rows (default: %(default)s)")
    p.add_argument("--max-queue", type=at_least(1), default=64,
                   help="requests that may wait for rows; more are answered 503 (default: %(default)s)")
    p.add_argument("--model-name", default=None,
                   help="the model's id in the API (default: the checkpoint directory's name)")
    speculation_options(p, ", for requests that start alone")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="chat with a checkpoint in the terminal")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    mmproj_option(p)
    p.add_argument("--max-tokens", "--max-new-tokens", type=int, default=256,
                   help="longest reply in tokens (--max-new-tokens, as generate names it) (default: %(default)s)")
    p.add_argument("--temperature", type=finite, default=0.7, help="0 is greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=None,
                   help="sample from the k most likely tokens (default: %(default)s)")
    p.add_argument("--top-p", type=finite, default=None, help="nucleus sampling mass (default: %(default)s)")
    p.add_argument("--seed", type=at_least(0), default=None, help="sampling seed (default: %(default)s)")
    p.add_argument("--system", default=None, help="a system message to start with (default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="decode with the compiled step (as generate --compile): "
                   "the first reply waits for the compile, and one more each time the conversation outgrows a "
                   "power-of-two cache from 256 tokens; later replies are faster (default: %(default)s)")
    penalty_options(p)
    p.set_defaults(func=cmd_chat)


def serving_imports():
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise LlmarchError("serving needs starlette and uvicorn: pip install 'llmarch[serve]'") from None
    return uvicorn


def cmd_serve(args) -> None:
    uvicorn = serving_imports()
    from ..serve.app import Server, build_app
    from ..serve.speculation import Speculation
    from .generate import load_draft

    if args.max_batch < 1 or not 0 <= args.port < 65536:
        raise LlmarchError(f"--max-batch must be >= 1 and --port in 0..65535, got {args.max_batch} and {args.port}")
    if args.draft is not None and args.prompt_lookup:
        raise LlmarchError("--draft and --prompt-lookup are two kinds of speculative decoding: give one")
    if args.num_draft is not None and args.draft is None:
        raise LlmarchError("--num-draft sets how many tokens a --draft checkpoint proposes: give --draft too")
    check_address(args.host, args.port)  # before the model loads, and as one line rather than uvicorn's exit 3
    model, tok = load_with_tokenizer(args.checkpoint, gguf_kernels=True, mmproj=args.mmproj)
    speculation = None
    if args.draft is not None:
        speculation = Speculation(args.num_draft or 4, load_draft(args.draft, model, tok))
    elif args.prompt_lookup:
        speculation = Speculation(args.prompt_lookup)
    name = args.model_name or Path(args.checkpoint).resolve().name
    server = Server(model, tok, name, args.max_batch, args.max_queue, speculation)
    how = "" if speculation is None else (f", prompt lookup of {args.prompt_lookup}" if args.draft is None else
                                          f", draft {args.draft} proposing {speculation.num_draft}")
    print(f"llmarch serve: {name} on http://{args.host}:{args.port}/v1 (max batch {args.max_batch}{how})",
          flush=True)
    uvicorn.run(build_app(server), host=args.host, port=args.port, log_level="warning")


def check_address(host: str, port: int) -> None:
    """The address can be listened on: the host resolves and the port is free (bound and released at once, as
    uvicorn binds it, so a busy port is one line here rather than uvicorn's log line and exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise LlmarchError(f"--host {host!r} is not an address to listen on: {e}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise LlmarchError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def cmd_chat(args) -> None:
    import sys

    from ..generate.sampling import check_sampling
    from ..serve.terminal import Conversation, chat_loop

    if args.max_tokens < 1:
        raise LlmarchError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    check_sampling(args.temperature, args.top_k, args.top_p)
    penalties = penalties_of(args)
    model, tok = load_with_tokenizer(args.checkpoint, gguf_kernels=True, mmproj=args.mmproj)
    conversation = Conversation(model, tok, args.max_tokens, args.temperature, args.top_k, args.top_p, args.seed,
                                args.system, args.compile, penalties)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    chat_loop(conversation, input, write)
