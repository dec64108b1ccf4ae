"""Text plumbing shared by the schemas and the offline agents: cleaning, tokens, stems, sentences.

Pure Python plus `snowballstemmer` (Porter2 for English, Snowball for Russian and the other
languages it knows); no model or data download. Stems are memoised: news text repeats words
constantly and a Snowball call costs ~40 µs.
"""

# ruff: noqa: RUF001 - Russian stopwords and typographic punctuation are meant.
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import snowballstemmer

# Invisible characters used to hide text from people but not from models (zero-width,
# bidirectional overrides, BOM, word joiners, soft hyphen); dropped before anything else.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WS = re.compile(r"[ \t\r\f\v]+")


def clean(text: str) -> str:
    """NFKC-normalize and drop invisible/control characters and HTML comments.

    Keeps newlines (paragraphs are sentence boundaries) and collapses other whitespace.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return "\n".join(_WS.sub(" ", line).strip() for line in text.split("\n")).strip()


def wordlist(text: str) -> frozenset[str]:
    """A set from a whitespace-separated block (long word lists stay readable)."""
    return frozenset(text.split())


# Function words only: content words are down-weighted by their background frequency
# (see `background.py`), so this list does not have to guess which nouns are "generic".
STOPWORDS_EN = wordlist(
    """
    a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could couldn did didn do does doesn
    doing don down during each either else ever few for from further had hadn has hasn have
    haven having he her here hers herself him himself his how however i if in into is isn it
    its itself just ll me might more most must mustn my myself neither nor now of off on
    once only or other ought our ours ourselves out over own re same shall shan she should
    shouldn so some such than that the their theirs them themselves then there these they
    this those though through to too under until up upon us ve very via was wasn we were
    weren what when where whether which while who whom whose why will with won would wouldn
    yet you your yours yourself yourselves s t d m o y let lets get gets got one two may
    also etc vs per
    """
)

# Russian function words (Telegram sources are often Russian-language).
STOPWORDS_RU = wordlist(
    """
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только
    ее мне было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни
    быть был него до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где
    есть надо ней для мы тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж
    тогда кто этот того потому этого какой совсем ним здесь этом один почти мой тем чтобы
    нее сейчас были куда зачем всех никогда можно при наконец два об другой хоть после над
    больше тот через эти нас про всего них какая много разве три эту моя впрочем хорошо свою
    этой перед иногда лучше чуть том нельзя такой им более всегда конечно всю между это
    также
    """
)

STOPWORDS = STOPWORDS_EN | STOPWORDS_RU

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_CYRILLIC = re.compile("[\u0400-\u04ff]")

# ISO 639-1 hint -> Snowball algorithm, for Latin-script tokens of a post in that language.
_SNOWBALL = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "no": "norwegian",
    "nb": "norwegian",
    "da": "danish",
    "fi": "finnish",
    "ru": "russian",
    "uk": "russian",  # no Ukrainian Snowball; Russian endings overlap enough to help
}


@lru_cache(maxsize=16)
def _stemmer(algorithm: str) -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer(algorithm)


def _algorithm(token: str, language: str) -> str:
    if _CYRILLIC.search(token):
        return "russian"
    algorithm = _SNOWBALL.get(language[:2].lower(), "english")
    return "english" if algorithm == "russian" else algorithm


@lru_cache(maxsize=200_000)
def stem(token: str, language: str = "") -> str:
    return _stemmer(_algorithm(token, language)).stemWord(token)


def words(text: str) -> list[str]:
    """Lower-cased word tokens; single letters dropped (digits kept: "5 g", "f 1")."""
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1 or t.isdigit()]


def terms(text: str, language: str = "") -> list[str]:
    """Stems of the non-stopword tokens, in order (phrases match on this sequence). Acronyms
    written in capitals are kept even when they spell a stopword ("US", "IT", "WHO")."""
    out: list[str] = []
    for token in _TOKEN.findall(text):
        lowered = token.lower()
        if len(lowered) < 2 and not lowered.isdigit():
            continue
        if lowered in STOPWORDS and not token.isupper():
            continue
        out.append(stem(lowered, language))
    return out


# --- Sentences -----------------------------------------------------------------------------

# Tokens that end in a period without ending a sentence.
_ABBREVIATIONS = wordlist(
    """
    mr mrs ms dr prof sr jr st vs etc inc ltd co corp gov gen col lt sgt rep sen no nos fig
    approx dept est jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat
    sun e.g i.e u.s u.k u.n e.u a.m p.m ph.d
    """
)
_SENTENCE_CANDIDATE = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*(?=\s+|$)")


def split_sentences(text: str) -> list[str]:
    """Split into sentences: paragraph breaks, and . ! ? … followed by space, except after a
    known abbreviation, a single capital initial ("J. Smith") or inside a number ("3.5")."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n(?=\s*[-•*]\s)", text.strip()):
        paragraph = " ".join(paragraph.split())
        start = 0
        for match in _SENTENCE_CANDIDATE.finditer(paragraph):
            end = match.end()
            if match.group().startswith(".") and len(match.group().rstrip("\"'”’»)]")) == 1:
                before = paragraph[start : match.start()].rsplit(" ", 1)[-1].lower()
                if before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
                    continue
                if "." in before and before.replace(".", "").isalpha() and len(before) <= 6:
                    continue  # "u.s." style acronyms
            rest = paragraph[end:].lstrip()
            if rest and rest[0].islower():
                continue  # "… the 3 p.m. meeting", ellipses mid-sentence
            sentence = paragraph[start:end].strip()
            if sentence:
                sentences.append(sentence)
            start = end
        tail = paragraph[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-–—") + "…"
