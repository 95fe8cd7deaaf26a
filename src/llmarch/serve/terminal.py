"""A chat in the terminal (`llmarch chat`): each turn the whole conversation is rendered with the checkpoint's chat
template (chat_template.py) and the reply streamed as it is generated (generate/decode.py); `/reset` forgets the
conversation, `/exit` (or end of input) ends it, `/image FILE` shows the next message an image (a vision-language
checkpoint's: vision/prompts.py chat_request), `/audio FILE` hears the next message a WAV clip (an audio-language
checkpoint's: audio/prompts.py chat_audio_request). The oldest turns are dropped when the conversation outgrows the
context, with their images and clips."""
from __future__ import annotations

from typing import Callable

from ..data.chat import encode_text
from ..errors import LlmarchError
from ..generate.decode import generate
from ..generate.text import text_pieces
from .chat_template import ChatTemplate

HELP = ("/reset forgets the conversation, /image FILE adds an image to the next message, /audio FILE.wav a clip, "
        "/exit ends it")


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
        self.pending: list = []  # the next user message's image and audio parts ({"type": "image", "image": PIL})

    def reset(self) -> None:
        self.history, self.pending = [], []

    def attach(self, path) -> None:
        """An image file for the next message: read now, so that a bad file is named before anything is asked."""
        from ..vision.image_files import read_image

        self.pending.append({"type": "image", "image": read_image(path)})

    def attach_audio(self, path) -> None:
        """A 16 kHz WAV clip for the next message, read now as attach reads an image."""
        from ..data.wav import read_wav

        self.pending.append({"type": "audio", "audio": read_wav(path)})

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
        """prompt's ids and image (or audio) arguments. An image is a {"type": "image"} part of its message, as
        transformers gives it to the template, holding the image; a clip an {"type": "audio"} part."""
        text = self.template.render(self.system + self.history, media=("image", "audio"))
        parts = [p for m in self.history if isinstance(m["content"], list) for p in m["content"]]
        images, clips = ([p[kind] for p in parts if p["type"] == kind] for kind in ("image", "audio"))
        if clips:
            from ..audio.prompts import chat_audio_request

            if images:
                raise LlmarchError("a conversation hears audio clips or sees images, not both")
            return chat_audio_request(self.model, self.tok, text, clips)
        if images:
            from ..vision.prompts import chat_request

            return chat_request(self.model, self.tok, text, images)
        # the template writes any BOS itself: no second one from the tokenizer (as transformers tokenizes it)
        return encode_text(self.tok, text), None

    def reply(self, text: str, show: Callable[[str], None]) -> str:
        """The user's message -> the model's reply, handed to `show` a piece at a time as it is generated."""
        parts = self.pending
        self.history.append({"role": "user", "content": parts + [{"type": "text", "text": text}] if parts else text})
        try:
            ids, images = self.prompt()
        except LlmarchError:
            self.history.pop()
            raise
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
        if text.startswith(("/image ", "/audio ")):
            kind, path = text[1:].split(" ", 1)
            try:
                (conversation.attach if kind == "image" else conversation.attach_audio)(path.strip())
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
