"""Background corpus statistics for the offline scorers: how informative a word is.

BM25 needs an IDF for every query term. We take it from a *shipped background corpus* rather
than from the batch being scored, for three reasons: a post's score must not depend on which
other posts happened to arrive with it (the result is cached and replayed), the relevance gate
scores one post at a time (a batch of one has no statistics), and a batch from one source is
topically skewed (every post of a Rust blog says "rust", which would make the feed's key term
look worthless). The corpus is `wordfreq`'s "small" word lists: frequencies aggregated from
Wikipedia, news, subtitles, books and web text, packaged in the wheel (no download). A word's
Zipf value z (log10 of its frequency per billion words; "the" ≈ 7.7, "regulation" ≈ 4.4) gives
an IDF-like weight `ZIPF_CEILING - z`, which treats the background frequency as a proxy for
document frequency. Words missing from the list are rare; they get the weight of a Zipf-2 word.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

ZIPF_CEILING = 8.0
UNSEEN_ZIPF = 2.0
MIN_WEIGHT = 0.1

_lock = threading.Lock()
_tables: dict[str, dict[str, float]] = {}


def _table(language: str) -> dict[str, float]:
    table = _tables.get(language)
    if table is None:
        with _lock:
            table = _tables.get(language)
            if table is None:
                table = _load(language)
                _tables[language] = table
    return table


def _load(language: str) -> dict[str, float]:
    from wordfreq import available_languages, get_frequency_dict

    if language not in available_languages("small"):
        return {}
    return {
        word: math.log10(freq * 1e9)
        for word, freq in get_frequency_dict(language, "small").items()
        if freq > 0
    }


@lru_cache(maxsize=100_000)
def weight(word: str, language: str = "en") -> float:
    """IDF-like weight of a lower-case word: ~0 for "the", ~3.6 for "regulation", 6 for an
    unseen word. Looks the word up in its language's list and in English (news in any language
    borrows English names), keeping the rarer reading."""
    languages = {language[:2].lower() or "en", "en"}
    if any("\u0400" <= ch <= "\u04ff" for ch in word):
        languages = {"uk"} if language[:2].lower() == "uk" else {"ru"}
    zipfs = [_table(lang).get(word) for lang in languages]
    known = [z for z in zipfs if z is not None]
    zipf = min(known) if known else UNSEEN_ZIPF
    return max(MIN_WEIGHT, ZIPF_CEILING - zipf)
