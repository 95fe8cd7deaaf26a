"""A chat in the terminal (`llmarch chat`): each turn the whole conversation is rendered with the checkpoint's chat
template (chat_template.py) and the reply streamed as it is generated (generate/decode.py); `/reset` forgets the
conversation, `/exit` (or end of input) ends it, `/image FILE` shows the next message an image (a vision-language
checkpoint's: vision/prompts.py chat_request), `/audio FILE` hears the next message a WAV clip (an audio-language
checkpoint's: audio/prompts.py chat_audio_request), `/video PATH` shows it a video (a directory of frames, or a
file with PyAV: a Qwen-VL checkpoint's, vision/qwen_video.py chat_video_request); media.py reads them. The oldest
turns are dropped when the conversation outgrows the context, with their images, clips and videos."""
from __future__ import annotations

from typing import Callable

from ..errors import LlmarchError
from ..generate.decode import generate
from ..generate.text import text_pieces
from .chat_template import ChatTemplate
from .media import KINDS, chat_media_request, read_media

HELP = ("/reset forgets the conversation, /image FILE adds an image to the next message, /audio FILE.wav a clip, "
        "/video PATH a video (frames directory or file), /exit ends it")


class Conversation:
    def __init__(self, model, tokenizer, max_tokens: int = 256, temperature: float = 0.7, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, system: str | None = None,
                 compile: bool = False, penalties=None):
        self.model, self.tok, self.template = model, tokenizer, ChatTemplate(tokenizer)
        self.max_tokens, self.temperature, self.top_k, self.top_p, self.seed = (max_tokens, temperature, top_k,
                                                                                top_p, seed)
        self.compile = compile  # generate's compiled step, kept on the model from one reply to the next
        self.penalties = penalties  # generate/penalties.py: each reply's own repeats (and the prompt's, theta)
        self.system = [{"role": "system", "content": system}] if system else []
        self.history: list[dict] = []
        self.pending: list = []  # the next user message's media parts ({"type": "image", "image": PIL}: media.py)

    def reset(self) -> None:
        self.history, self.pending = [], []

    def attach(self, path, kind: str = "image") -> None:
        """An image file, a 16 kHz WAV clip or a video (a frames directory or a file) for the next message: read now,
        so that a bad file is named before anything is asked; a kind the model has no tower for is refused here."""
        cfg = self.model.config
        if (cfg.audio if kind == "audio" else cfg.vision) is None:
            raise LlmarchError(f"{cfg.name} reads no {kind} (it has no {'audio' if kind == 'audio' else 'vision'} "
                               "tower: config " + ("audio)" if kind == "audio" else "vision)"))
        self.pending.append({"type": kind, kind: read_media(kind, path)})

    def prompt(self) -> tuple[list[int], dict | None]:
        """The conversation rendered and tokenized, the oldest turns dropped while it leaves no room to answer, and
        the model's image arguments for the images left in it (vision/prompts.py chat_request; None: none)."""
        context = self.model.config.context_length
        while True:
            ids, images = self._encode()
            if len(ids) < context or len(self.history) <= 1:
                break
            self.history = self.history[2:] if len(self.history) > 2 else self.history[1:]
        if len(ids) >= context:
            raise LlmarchError(f"the message is {len(ids)} tokens with the template; the context is {context}")
        return ids, images

    def _encode(self):
        """prompt's ids and image, video or audio arguments. An image is a {"type": "image"} part of its message, as
        transformers gives it to the template, holding the image; a clip an {"type": "audio"} part, a video a
        {"type": "video"} part (media.py)."""
        text = self.template.render(self.system + self.history, media=KINDS)
        return chat_media_request(self.model, self.tok, text, self.history)

    def reply(self, text: str, show: Callable[[str], None]) -> str:
        """The user's message -> the model's reply, handed to `show` a piece at a time as it is generated."""
        parts = self.pending
        self.history.append({"role": "user", "content": parts + [{"type": "text", "text": text}] if parts else text})
        try:
            ids, images = self.prompt()
        except LlmarchError as e:  # the message is not sent; its attachments go with it, or every next one fails alike
            self.history.pop()
            self.pending = []
            raise LlmarchError(f"{e} (the message and its {len(parts)} attachment(s) dropped)" if parts else str(e)) \
                from None
        self.pending = []
        stop = [[i] for i in self.tok.eos_ids if i != self.tok.eos_id]
        # the reply is its own ids' text, as transformers decodes the generated ids (no context before them)
        pieces = text_pieces(self.tok, show)
        row = generate(self.model, [ids], self.max_tokens, self.temperature, self.top_k, self.top_p,
                       eos_id=self.tok.eos_id, seed=self.seed, on_tokens=pieces, stop=stop,
                       compile=self.compile, penalties=self.penalties, **(images or {}))[0]
        pieces.end()  # what streaming held back: an unfinished character at the end
        answer = self.tok.decode(t for t in row[len(ids):] if t not in self.tok.eos_ids)
        self.history.append({"role": "assistant", "content": answer})
        return answer


def chat_loop(conversation: Conversation, read: Callable[[str], str], write: Callable[[str], None]) -> None:
    """Reads messages with read(prompt) until /exit or EOFError, writing replies with write."""
    write(f"chatting with the checkpoint ({HELP})\n")
    while True:
        try:
            text = read("you> ").strip()
        except EOFError:
            write("\n")
            return
        if text == "/exit":
            return
        if text == "/reset":
            conversation.reset()
            write("(conversation reset)\n")
            continue
        if text.startswith(tuple(f"/{kind} " for kind in KINDS)):
            kind, path = text[1:].split(" ", 1)
            try:
                conversation.attach(path.strip(), kind)
                write(f"({kind} added to the next message)\n")
            except LlmarchError as e:
                write(f"(error: {e})\n")
            continue
        if not text:
            continue
        write("model> ")
        try:
            conversation.reply(text, write)
        except LlmarchError as e:
            write(f"(error: {e})")
        write("\n")
