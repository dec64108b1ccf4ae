"""Which language a post is written in: a cheap guess from its writing system and its words.

Used to tell whether a post needs translating into its feed's language. No model and no
download: the writing system settles most non-Latin text (Hangul is Korean, kana is Japanese,
Greek is Greek); Latin and Cyrillic text is scored against each language's most frequent words,
taken from `wordfreq`'s bundled "small" lists, as a naive Bayes classifier: a text's score in a
language is the sum of its words' log frequencies there (Zipf values), a word outside that
language's list counting as a little rarer than its rarest listed word. Words no language lists
(names, numbers, jargon) are skipped, so "AI", "Mbeumo" or "Lanternfish" tell nothing either way.

The guess is only given when it is clear: a few known words, and the best language ahead of the
next by LOG_MARGIN (its words are that many powers of ten more likely there). Otherwise the
answer is "" (unknown), and nothing downstream may claim a language it does not know. A short
headline of common words ("Fed holds rates steady") is often unknown: that is the honest answer.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from functools import lru_cache

# Languages scored by their words, per writing system (ISO 639-1).
LATIN = ("en", "fr", "de", "es", "it", "pt", "nl", "pl", "cs", "sv", "da", "nb", "fi", "tr")
LATIN += ("ro", "hu", "id", "ca")
CYRILLIC = ("ru", "uk", "bg")
# Writing systems that name their language outright.
_SCRIPT_LANGUAGE = {
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "GREEK": "el",
    "HEBREW": "he",
    "ARABIC": "ar",
    "THAI": "th",
    "DEVANAGARI": "hi",
}
# How many of each language's most frequent words make its profile (~1 MB for all of them).
TOP_WORDS = 2_000
# A word missing from a language's profile: this much rarer than the profile's rarest word.
UNLISTED_PENALTY = 1.0
# At least this many known words before any guess ...
MIN_WORDS = 2
# ... and the best language this far ahead of the runner-up (in log10 likelihood).
LOG_MARGIN = 1.5
# Known words read at most: far more evidence than a verdict needs.
MAX_WORDS = 40
# Only the beginning of a long text is read: the language does not change half-way.
MAX_CHARS = 2_000

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)  # "l'IA" gives "l" and "ia", as in the lists
_lock = threading.Lock()


class _Profile:
    """Each language's floor (the score of a word outside its list) and, per listed word, how
    much more than the floor it scores in the languages that list it. A text's score in a
    language is then (known words x floor) + the sum of its words' bonuses there, which visits
    only the few languages listing each word."""

    def __init__(self, languages: tuple[str, ...]) -> None:
        from wordfreq import get_frequency_list

        self.languages = languages
        self.floor: dict[str, float] = {}
        zipfs: dict[str, dict[str, float]] = {}
        for language in languages:
            taken = 0
            zipf = 9.0
            # Buckets of words by frequency: bucket i holds words of frequency 10^(-i/100),
            # that is Zipf 9 - i/100.
            for index, bucket in enumerate(get_frequency_list(language, "small")):
                if taken >= TOP_WORDS:
                    break
                zipf = 9.0 - index / 100
                for word in bucket:
                    if word.isalpha():
                        zipfs.setdefault(word, {})[language] = zipf
                        taken += 1
            self.floor[language] = zipf - UNLISTED_PENALTY
        self.bonus: dict[str, tuple[tuple[str, float], ...]] = {
            word: tuple((lang, z - self.floor[lang]) for lang, z in by_language.items())
            for word, by_language in zipfs.items()
        }


_profiles: dict[tuple[str, ...], _Profile] = {}


def _profile(languages: tuple[str, ...]) -> _Profile:
    profile = _profiles.get(languages)
    if profile is None:
        with _lock:
            profile = _profiles.get(languages)
            if profile is None:
                profile = _profiles[languages] = _Profile(languages)
    return profile


# Letters of each writing system we tell apart (a regex pass per script runs in C; naming each
# character with unicodedata cost more than the rest of the offline summary).
_SCRIPTS = {
    "LATIN": re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]"),
    "CYRILLIC": re.compile(r"[\u0400-\u04ff\u0500-\u052f]"),
    "GREEK": re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]"),
    "ARABIC": re.compile(r"[\u0600-\u06ff\u0750-\u077f]"),
    "HEBREW": re.compile(r"[\u0590-\u05ff]"),
    "DEVANAGARI": re.compile(r"[\u0900-\u097f]"),
    "THAI": re.compile(r"[\u0e00-\u0e7f]"),
    "HANGUL": re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
    "HIRAGANA": re.compile(r"[\u3040-\u309f]"),
    "KATAKANA": re.compile(r"[\u30a0-\u30ff]"),
    "CJK": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
}


def _scripts(text: str) -> Counter[str]:
    if text.isascii():  # the common case, settled without counting
        return Counter({"LATIN": 1 if _SCRIPTS["LATIN"].search(text) else 0})
    return Counter({name: len(p.findall(text)) for name, p in _SCRIPTS.items()})


@lru_cache(maxsize=4096)
def detect(text: str) -> str:
    """The ISO 639-1 code of the language `text` is written in, or "" when unsure."""
    text = text[:MAX_CHARS]
    scripts = _scripts(text)
    script, letters = scripts.most_common(1)[0] if scripts else ("", 0)
    if not letters:
        return ""
    if script in ("CJK", "HIRAGANA", "KATAKANA"):
        # Japanese mixes kanji with kana; Chinese has no kana at all.
        return "ja" if scripts["HIRAGANA"] + scripts["KATAKANA"] else "zh"
    if script in _SCRIPT_LANGUAGE:
        return _SCRIPT_LANGUAGE[script]
    if script == "LATIN":
        profile = _profile(LATIN)
    elif script == "CYRILLIC":
        profile = _profile(CYRILLIC)
    else:
        return ""
    bonuses = dict.fromkeys(profile.languages, 0.0)
    known = 0
    for word in _WORD.findall(text.lower()):
        bonus = profile.bonus.get(word)
        if bonus is None:
            continue
        known += 1
        for language, extra in bonus:
            bonuses[language] += extra
        if known >= MAX_WORDS:
            break
    if known < MIN_WORDS:
        return ""
    scores = {lang: known * profile.floor[lang] + bonuses[lang] for lang in profile.languages}
    (best, top), (_, second) = sorted(scores.items(), key=lambda s: -s[1])[:2]
    return best if top - second >= LOG_MARGIN else ""


def post_language(*, title: str, text: str, hint: str = "") -> str:
    """A post's language: the caller's hint when given (a source that declares it), else the
    guess from its title and text ("" when unsure)."""
    if hint.strip():
        return normalize(hint)
    return detect(f"{title}\n{text}")


# Names the LLM may answer with instead of a code, and the names we write into prompts.
NAMES = {
    "en": "English",
    "ru": "Russian",
    "uk": "Ukrainian",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "cs": "Czech",
    "sv": "Swedish",
    "da": "Danish",
    "nb": "Norwegian",
    "fi": "Finnish",
    "tr": "Turkish",
    "ro": "Romanian",
    "hu": "Hungarian",
    "id": "Indonesian",
    "ca": "Catalan",
    "bg": "Bulgarian",
    "el": "Greek",
    "he": "Hebrew",
    "ar": "Arabic",
    "hi": "Hindi",
    "th": "Thai",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
}
_BY_NAME = {name.lower(): code for code, name in NAMES.items()}
_BY_NAME["norwegian bokmål"] = "nb"


def normalize(value: str) -> str:
    """A language code or English name as a lower-case primary code: "en-GB" -> "en",
    "French" -> "fr", "no" -> "nb". Unknown values are returned lower-cased and trimmed."""
    value = value.strip().lower().replace("_", "-")
    if value in _BY_NAME:
        return _BY_NAME[value]
    primary = value.split("-", 1)[0]
    return "nb" if primary in ("no", "nn") else primary


def name(code: str) -> str:
    """An English name for a language code ("fr" -> "French"); the code itself if unknown."""
    code = code.strip()
    return NAMES.get(normalize(code), code)


def same(a: str, b: str) -> bool:
    """Whether two language codes or names denote the same language."""
    return bool(a.strip() and b.strip()) and normalize(a) == normalize(b)
