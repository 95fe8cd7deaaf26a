"""One choice's output as it grows: its tokens turned into text a whole character at a time, cut before the first
stop string (text that may be the start of one is held back while streaming), and its log-probabilities in the
completions format (tokens, token_logprobs, top_logprobs, text_offset) or the chat format (content)."""
from __future__ import annotations

from ..generate.text import NewText


class ChoiceText:
    def __init__(self, tokenizer, stop: list[str], prefix: str = "", context=()):
        self.tok, self.stop = tokenizer, stop
        self.prefix = prefix  # echoed prompt text
        # context: the prompt's ids (a completion), decoded before the new ones so that prompt text + this text is
        # the whole row's text (generate/text.py's NewText); none for a chat reply (transformers' decode of the
        # generated ids)
        self.new = NewText(tokenizer, context)
        self.ids: list[int] = []
        self.text = ""  # the generated text so far, cut at a stop string
        self.shown = 0  # characters of prefix + text handed out
        self.finish: str | None = None
        self.logprobs: list[tuple[int, float | None, list | None]] = []  # (token, logprob, [(token, logprob)])
        self.hold = max((len(s) for s in stop), default=1) - 1

    def add(self, token: int, logprob: float | None = None, top: list | None = None) -> str:
        """A new token -> the text that may now be shown (possibly ""). Returns "" once finished."""
        if self.finish:
            return ""
        self.ids.append(token)
        if logprob is not None:
            self.logprobs.append((token, logprob, top))
        text = self.new.add(token)
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.text, self.finish = text[:min(hits)], "stop"
            return self.pending()
        self.text = text
        # held back: what may start a stop string, and a trailing replacement character (the rest of a
        # multi-byte character may still come); the stop strings' hold counted back from the whole characters
        whole = len(text.rstrip("\ufffd"))
        return self.pending(len(self.prefix) + max(0, whole - self.hold))

    def end(self, reason: str) -> str:
        """The choice ended (finish_reason) -> the text still held back."""
        self.finish = self.finish or reason
        return self.pending()

    def pending(self, upto: int | None = None) -> str:
        full = self.prefix + self.text
        upto = len(full) if upto is None else max(upto, self.shown)
        piece, self.shown = full[self.shown:upto], upto
        return piece

    @property
    def full_text(self) -> str:
        return self.prefix + self.text

    # ---- log-probabilities --------------------------------------------------------------------
    def completion_logprobs(self, prompt: list | None = None, start: int = 0) -> dict:
        """Completions' format; prompt: the echoed prompt's (token, logprob, top) rows first; start: the first
        row's text_offset (a stream's later chunk)."""
        rows = (prompt or []) + self.logprobs
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        offset = start
        for token, logprob, top in rows:
            text = token_string(self.tok, token)
            out["tokens"].append(text)
            out["token_logprobs"].append(logprob)
            out["top_logprobs"].append(None if top is None else {token_string(self.tok, t): p for t, p in top})
            out["text_offset"].append(offset)
            offset += len(text)
        return out

    def chat_logprobs(self, rows: list | None = None) -> dict:
        rows = self.logprobs if rows is None else rows
        return {"content": [dict(_entry(self.tok, token, logprob), top_logprobs=[_entry(self.tok, t, p)
                                                                                 for t, p in top or []])
                            for token, logprob, top in rows]}


def token_string(tok, token: int) -> str:
    """A token as logprobs name it: its own bytes as text (U+FFFD for part of a multi-byte character), so that a
    SentencePiece ▁world reads " world" as in the text (its decoding alone strips the space) and the completions'
    text offsets add up; the token's text otherwise (tokenizer.token_text)."""
    return tok.token_bytes(token).decode("utf-8", errors="replace")


def _entry(tok, token: int, logprob: float) -> dict:
    # bytes: the token's own bytes (part of a multi-byte character's, where its text shows U+FFFD)
    return {"token": token_string(tok, token), "logprob": logprob, "bytes": list(tok.token_bytes(token))}
