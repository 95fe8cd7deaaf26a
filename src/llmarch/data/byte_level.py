"""GPT-2's byte -> character map, which byte-level tokenizers spell their tokens in."""


def byte_chars() -> dict[int, str]:
    """GPT-2's byte -> character map of byte-level BPE (Radford et al. 2019; `tokenizers`' ByteLevel): printable
    bytes stand for themselves, the others for characters from U+0100 on, in byte order."""
    printable = {*range(33, 127), *range(161, 173), *range(174, 256)}
    others = (b for b in range(256) if b not in printable)
    shifted = {b: chr(256 + n) for n, b in enumerate(others)}
    return {b: chr(b) if b in printable else shifted[b] for b in range(256)}
