"""What every GGUF vocabulary shares: llama.cpp's token types (`tokenizer.ggml.token_type`, gguf.TokenType's
values, without importing the package) and SentencePiece's phantom space, which the llama, t5 and bert
vocabularies spell word starts with."""

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"  # ▁
