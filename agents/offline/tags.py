"""Offline tags: keyword lists per taxonomy tag, matched on stems, IDF-weighted, top three.

A tag scores the sum over its keywords of (background weight x BM25 saturation of the keyword in
the post); multi-word keywords match as phrases. Tags at or above MIN_SCORE are kept, best
first, at most three. A tag with no keyword list (a custom taxonomy entry) matches its own name.
Keyword lists come from `DEFAULT_KEYWORDS`, overridden per tag by the AGENT_TAXONOMY setting
(`tag=keyword|keyword phrase|…`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from agents.offline.background import weight
from agents.offline.document import PREFIX_MIN, Document
from agents.schemas import MAX_TAGS_OUT, TagOutput
from agents.text import STOPWORDS, stem, words

VERSION = "offline-tag-1"

# About one specific keyword in the headline, or a common one mentioned a few times.
MIN_SCORE = 2.2

DEFAULT_TAXONOMY = (
    "politics",
    "business",
    "technology",
    "ai",
    "science",
    "health",
    "climate",
    "security",
    "sports",
    "culture",
)

DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "politics": (
        "election", "elections", "vote", "voters", "parliament", "congress", "senate", "minister",
        "president", "government", "policy", "legislation", "lawmakers", "party", "campaign",
        "diplomacy", "sanctions", "referendum", "coalition", "prime minister", "white house",
        "выборы", "правительство", "президент", "парламент", "министр", "госдума", "санкции",
    ),
    "business": (
        "market", "markets", "stocks", "shares", "investors", "earnings", "revenue", "profit",
        "economy", "inflation", "interest rates", "central bank", "startup", "funding",
        "acquisition", "merger", "ipo", "company", "companies", "ceo", "layoffs", "retail",
        "trade", "tariffs", "экономика", "рынок", "акции", "инфляция", "бизнес", "компания",
    ),
    "technology": (
        "software", "hardware", "app", "apps", "smartphone", "iphone", "android", "chip", "chips",
        "semiconductor", "cloud", "open source", "programming", "developer", "developers",
        "linux", "browser", "internet", "startup", "gadget", "computer", "database", "release",
        "технологии", "смартфон", "программирование", "разработчики",
    ),
    "ai": (
        "artificial intelligence", "ai", "machine learning", "neural network", "llm", "llms",
        "language model", "chatgpt", "openai", "anthropic", "gemini", "deep learning",
        "generative", "chatbot", "gpt", "нейросеть", "искусственный интеллект",
    ),
    "science": (
        "research", "researchers", "scientists", "study", "physics", "chemistry", "biology",
        "astronomy", "nasa", "space", "telescope", "experiment", "journal", "discovery", "genome",
        "quantum", "fossil", "наука", "учёные", "ученые", "исследование",
    ),
    "health": (
        "health", "medical", "medicine", "hospital", "patients", "disease", "vaccine", "virus",
        "covid", "cancer", "drug", "fda", "doctors", "clinical trial", "pandemic", "outbreak",
        "mental health", "здоровье", "больница", "вакцина", "врачи",
    ),
    "climate": (
        "climate", "climate change", "global warming", "emissions", "carbon", "renewable",
        "solar", "wind power", "fossil fuels", "heatwave", "drought", "wildfire", "floods",
        "net zero", "климат", "выбросы",
    ),
    "security": (
        "security", "cybersecurity", "hack", "hackers", "breach", "ransomware", "malware",
        "vulnerability", "exploit", "cve", "phishing", "espionage", "encryption", "zero day",
        "patch", "хакеры", "уязвимость", "кибератака",
    ),
    "sports": (
        "football", "soccer", "basketball", "tennis", "olympics", "championship", "league",
        "match", "tournament", "coach", "goal", "nba", "nfl", "fifa", "world cup", "cup",
        "season", "player", "players", "футбол", "хоккей", "матч", "чемпионат",
    ),
    "culture": (
        "film", "movie", "music", "album", "book", "novel", "art", "museum", "festival",
        "theatre", "theater", "tv series", "television", "concert", "exhibition", "award",
        "кино", "фильм", "музыка", "выставка",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class _Keyword:
    terms: tuple[str, ...]
    weight: float


def _compile_keyword(keyword: str) -> _Keyword | None:
    tokens = [w for w in words(keyword) if w not in STOPWORDS] or words(keyword)
    if not tokens:
        return None
    # A phrase is as informative as its rarest word.
    return _Keyword(
        terms=tuple(stem(t) for t in tokens), weight=max(weight(t, "en") for t in tokens)
    )


@dataclass(frozen=True)
class _Compiled:
    """A taxonomy's keywords, numbered, with indexes from stems to the keywords they can match:
    a post is checked against the few keywords its own stems point to, not all of them (a
    keyword no index reaches from the post would score 0 anyway)."""

    tags: tuple[tuple[str, tuple[tuple[int, _Keyword], ...]], ...]
    by_first_stem: dict[str, tuple[int, ...]]  # exact matches, phrases by their first stem
    by_stem: dict[str, tuple[int, ...]]  # one-stem keywords a post stem may extend
    by_proper_prefix: dict[str, tuple[int, ...]]  # one-stem keywords extending a post stem

    def candidates(self, doc: Document) -> set[int]:
        found: set[int] = set()
        for stem_ in doc.tf:
            found.update(self.by_first_stem.get(stem_, ()))
        for prefix in doc.prefixes:
            found.update(self.by_stem.get(prefix, ()))
        for long_stem in doc.long_stems:
            found.update(self.by_proper_prefix.get(long_stem, ()))
        return found


@lru_cache(maxsize=64)
def _compile(
    taxonomy: tuple[str, ...], overrides: tuple[tuple[str, tuple[str, ...]], ...]
) -> _Compiled:
    custom = dict(overrides)
    tags: list[tuple[str, tuple[tuple[int, _Keyword], ...]]] = []
    by_first: dict[str, list[int]] = {}
    by_stem: dict[str, list[int]] = {}
    by_prefix: dict[str, list[int]] = {}
    number = 0
    for tag_ in taxonomy:
        key = tag_.lower()
        keywords = custom.get(key) or DEFAULT_KEYWORDS.get(key) or (tag_.replace("_", " "),)
        kws = []
        for kw in (_compile_keyword(k) for k in keywords):
            if kw is None:
                continue
            kws.append((number, kw))
            by_first.setdefault(kw.terms[0], []).append(number)
            only = kw.terms[0]
            if len(kw.terms) == 1 and len(only) >= PREFIX_MIN:
                # Document.term_strength's prefix matches: post stems extending the keyword,
                # and post stems (>= PREFIX_MIN) the keyword extends.
                by_stem.setdefault(only, []).append(number)
                for n in range(PREFIX_MIN, len(only)):
                    by_prefix.setdefault(only[:n], []).append(number)
            number += 1
        tags.append((tag_, tuple(kws)))

    def frozen(index: dict[str, list[int]]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v) for k, v in index.items()}

    return _Compiled(tuple(tags), frozen(by_first), frozen(by_stem), frozen(by_prefix))


def tag(
    *, doc: Document, taxonomy: Sequence[str], keywords: Mapping[str, Sequence[str]]
) -> TagOutput:
    overrides = tuple(sorted((k.lower(), tuple(v)) for k, v in keywords.items()))
    compiled = _compile(tuple(taxonomy), overrides)
    candidates = compiled.candidates(doc)
    scores: list[tuple[float, int, str]] = []
    for index, (name, kws) in enumerate(compiled.tags):
        total = sum(kw.weight * doc.phrase_strength(kw.terms) for n, kw in kws if n in candidates)
        if total >= MIN_SCORE:
            scores.append((total, index, name))
    scores.sort(key=lambda s: (-s[0], s[1]))
    return TagOutput(tags=[name for _, _, name in scores[:MAX_TAGS_OUT]])
