"""Text sources, tokenizers, and tokenized data cached as memory-mapped arrays."""
from .corpus import Document, read_documents
from .dataset import TokenData
from .tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer, train_bpe

__all__ = ["Document", "read_documents", "TokenData", "BPETokenizer", "ByteTokenizer", "Tokenizer",
           "load_tokenizer", "train_bpe"]
