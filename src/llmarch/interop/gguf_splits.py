"""llama.cpp's named byte-level BPE splits (`tokenizer.ggml.pre`): the regexes llm_tokenizer_bpe applies, in
order, each splitting every piece the previous one left (matches and the text between them alike), before the
merges run within each piece; rebuilt here as `tokenizers` Split steps (behavior "isolated") before the
byte-to-unicode mapping. The names llama.cpp gives one split share its entry (SPLITS' first name for a split is
the one GGUF out writes). Names not here (custom handlers in llama.cpp's unicode.cpp: kimi-k2, afmoe; zero-width
splits: superbpe) are refused by name."""
from __future__ import annotations

# GPT-2's split as llama.cpp writes it (without GPT-2's trailing |\s+: a run of spaces it leaves is a piece anyway)
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
# LLaMA 3's (tokenizer.json's case-insensitive contractions spelled out, as llama.cpp does); Qwen2's with single
# digits
LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)"
          r"|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
# llama.cpp's "default" (LLAMA_VOCAB_PRE_TYPE_DEFAULT): punctuation runs apart first, then a GPT-2-like split, then
# digit runs, then groups of three digits
DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")
# DeepSeek LLM (V2): line breaks alone, then runs of Latin, Greek, Cyrillic ... letters (the letters of cased
# scripts, listed), of ASCII and full-width punctuation, trailing spaces, CJK and Hangul, digits
_CASED = (  # written as escapes: canonically equivalent letters (U+1F7D and U+03CE ...) must stay apart
          "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
          "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
          "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b"
          "\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
          "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3"
          "\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d"
          "\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b"
          "\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
          "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
          "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")
DEEPSEEK_LLM = (r"[\r\n]", r"\s?[" + _CASED + r"]+", r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+$", r"[一-龥ࠀ-一가-퟿]+",
                r"\p{N}+")
# DeepSeek-V3 (and R1): digits in threes, CJK and kana runs, then a split that keeps a punctuation mark before ASCII
# letters with them and letters with their marks
DEEPSEEK_V3 = (r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
               r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
               r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK_CODER = (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}")
FALCON = (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]")
# BLOOM's: a run of anything but spaces and a few punctuation marks, after at most one space
BLOOM = (r" ?[^(\s|.,!?…。，、।۔،)]+",)
# Mistral's Tekken and GPT-4o's: a word is its capitals then its lower case (camelCase splits), the lookaheads
# standing for the case classes of tokenizer.json's regex as llama.cpp rewrites them
_UPPER_THEN_LOWER = r"((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
_ALL_UPPER = r"((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
TEKKEN = (r"[^\r\n\p{L}\p{N}]?" + _UPPER_THEN_LOWER + r"|[^\r\n\p{L}\p{N}]?" + _ALL_UPPER
          + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",)
GPT4O = (r"[^\r\n\p{L}\p{N}]?" + _UPPER_THEN_LOWER + _CONTRACTIONS + r"?|[^\r\n\p{L}\p{N}]?" + _ALL_UPPER
         + _CONTRACTIONS + r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",)

# llama.cpp's names (llama-vocab.cpp) -> the regexes; "gpt-2" and "smollm" are built otherwise (GPT2_NAMES,
# DIGITS_NAMES: tokenizers' own ByteLevel split, after single digits for the second)
SPLITS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT,
    **dict.fromkeys(("llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                     "dbrx", "smaug-bpe", "chatglm-bpe", "glm4"), (LLAMA3,)),
    **dict.fromkeys(("qwen2", "stablelm2", "deepseek-r1-qwen", "megrez", "hunyuan"), (QWEN2,)),
    "deepseek-llm": DEEPSEEK_LLM,
    "deepseek-v3": DEEPSEEK_V3,
    "deepseek-coder": DEEPSEEK_CODER,
    "falcon": FALCON,
    **dict.fromkeys(("bloom", "poro-chat", "gpt3-finnish"), BLOOM),
    "viking": BLOOM + (r"\p{N}",),
    "tekken": TEKKEN,
    **dict.fromkeys(("gpt-4o", "llama4", "minimax-m2"), GPT4O),
}
GPT2_NAMES = ("gpt-2", "gpt2", "mpt", "olmo", "jais", "trillion", "granite-docling", "phi-2", "jina-v1-en",
              "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "gigachat", "a.x-4.0", "mellum")
DIGITS_NAMES = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b")
# llama.cpp matches a word the vocabulary holds whole before any merge for these (LLaMA 3's kin)
IGNORE_MERGES = ("llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2")
NAMES = (*SPLITS, *GPT2_NAMES, *DIGITS_NAMES)
