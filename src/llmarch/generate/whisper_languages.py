"""Whisper's languages by name (Radford et al. 2022, Appendix E lists the 99 of the training data; large-v3 adds
Cantonese): a decoder prompt's language may be given as its code ("fr"), its token ("<|fr|>") or its English name
("French", "french"), as transformers' Whisper `generate` takes it; the names and the aliases it accepts map to the
codes here (tests/parity/test_whisper_transcribe.py checks the table against transformers')."""
from __future__ import annotations

_CODES = """en english; zh chinese; de german; es spanish; ru russian; ko korean; fr french; ja japanese;
pt portuguese; tr turkish; pl polish; ca catalan; nl dutch; ar arabic; sv swedish; it italian; id indonesian;
hi hindi; fi finnish; vi vietnamese; he hebrew; uk ukrainian; el greek; ms malay; cs czech; ro romanian; da danish;
hu hungarian; ta tamil; no norwegian; th thai; ur urdu; hr croatian; bg bulgarian; lt lithuanian; la latin;
mi maori; ml malayalam; cy welsh; sk slovak; te telugu; fa persian; lv latvian; bn bengali; sr serbian;
az azerbaijani; sl slovenian; kn kannada; et estonian; mk macedonian; br breton; eu basque; is icelandic;
hy armenian; ne nepali; mn mongolian; bs bosnian; kk kazakh; sq albanian; sw swahili; gl galician; mr marathi;
pa punjabi; si sinhala; km khmer; sn shona; yo yoruba; so somali; af afrikaans; oc occitan; ka georgian;
be belarusian; tg tajik; sd sindhi; gu gujarati; am amharic; yi yiddish; lo lao; uz uzbek; fo faroese;
ht haitian creole; ps pashto; tk turkmen; nn nynorsk; mt maltese; sa sanskrit; lb luxembourgish; my myanmar;
bo tibetan; tl tagalog; mg malagasy; as assamese; tt tatar; haw hawaiian; ln lingala; ha hausa; ba bashkir;
jw javanese; su sundanese; yue cantonese"""
# other names of the same languages that transformers accepts
_ALIASES = dict(burmese="my", valencian="ca", flemish="nl", haitian="ht", letzeburgesch="lb", pushto="ps",
                panjabi="pa", moldavian="ro", moldovan="ro", sinhalese="si", castilian="es", mandarin="zh")

LANGUAGES: dict[str, str] = dict(pair.split(" ", 1)[::-1] for pair in " ".join(_CODES.split()).split("; "))
LANGUAGES.update(_ALIASES)  # name -> code


def language_token(language: str) -> str:
    """The language token ("<|fr|>") a code, token or name (any case) stands for; an unknown one as a token, for the
    caller's vocabulary check to refuse."""
    text = language.lower()
    if text.startswith("<|"):
        return text
    return f"<|{LANGUAGES.get(text, text)}|>"
