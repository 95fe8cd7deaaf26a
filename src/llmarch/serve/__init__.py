"""Serving: an OpenAI-compatible HTTP server (app.py) over a scheduler that runs continuous batching
(scheduler.py, generate/batch.py), and the chat template that turns messages into a prompt (chat_template.py)."""
