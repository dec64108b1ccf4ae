"""A post prepared for matching: stems of title and body, term counts and BM25 saturation.

Shared by the relevance scorer and the tagger, so the pipeline tokenizes each post once.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from agents.text import clean, split_sentences, terms

# BM25 parameters. K1 is lower than the usual 1.2 because we ask "is this term a topic of the
# post" rather than "how much": a second mention should count, a tenth barely. AVGDL is a
# typical news item in stems (title + a few paragraphs); fixed, not measured per batch, for the
# same reproducibility reason as the background IDF (see background.py).
K1 = 0.6
B = 0.5
AVGDL = 120.0
# A title term counts as this many body occurrences: headlines state the topic.
TITLE_BOOST = 2.0
# The lead: the body's first sentence, at most this many stems. An exclusion term in the title
# or the lead makes a post "about" it even if mentioned once.
LEAD_TERMS = 25
# Conflating stems by prefix ("regul" ~ "regulatori", "crypto" ~ "cryptocurr") finds real
# matches that Porter2 leaves apart, with less certainty than an exact stem.
PREFIX_MIN = 5
PREFIX_STRENGTH = 0.6


@dataclass(frozen=True)
class Document:
    title: tuple[str, ...]
    body: tuple[str, ...]
    lead: int
    tf: Counter[str] = field(compare=False)
    title_tf: Counter[str] = field(compare=False)
    long_stems: tuple[str, ...] = field(compare=False, default=())  # sorted, len >= PREFIX_MIN
    # Words written in capitals ("EV", "EVs" -> "ev"), counted like terms (title ones boosted):
    # what a multi-word phrase of the description may be abbreviated to.
    acronyms: Counter[str] = field(compare=False, default_factory=Counter)
    # Every prefix (>= PREFIX_MIN) of the long stems: a stem outside it extends no stem of the
    # post, so the prefix search can stop early (the tagger asks for hundreds of absent stems).
    prefixes: frozenset[str] = field(compare=False, default=frozenset())
    # term_strength's answers: relevance asks again when it explains, the tagger asks too.
    _strengths: dict[str, float] = field(compare=False, default_factory=dict, repr=False)

    @property
    def length(self) -> int:
        return len(self.title) + len(self.body)

    @property
    def empty(self) -> bool:
        return not self.title and not self.body

    def saturation(self, tf_eff: float) -> float:
        """BM25's term-frequency factor scaled to 0..1 (0 when absent)."""
        if tf_eff <= 0:
            return 0.0
        k = K1 * (1 - B + B * self.length / AVGDL)
        return tf_eff / (tf_eff + k)

    def term_strength(self, stem: str) -> float:
        """How strongly the post is about `stem` (0..1), exact stems first, then prefixes."""
        known = self._strengths.get(stem)
        if known is None:
            known = self._strengths[stem] = self._term_strength(stem)
        return known

    def _term_strength(self, stem: str) -> float:
        exact = self.title_tf[stem] * TITLE_BOOST + self.tf[stem] - self.title_tf[stem]
        if exact:
            return self.saturation(exact)
        if len(stem) < PREFIX_MIN:
            return 0.0
        count = 0.0
        for other in self._prefix_relatives(stem):
            count += self.tf[other] + self.title_tf[other] * (TITLE_BOOST - 1)
        return PREFIX_STRENGTH * self.saturation(count) if count else 0.0

    def _prefix_relatives(self, stem: str) -> list[str]:
        """The post's stems that extend `stem` or that `stem` extends (both >= PREFIX_MIN):
        a binary search in the sorted stems plus a look-up of each shorter prefix, instead of
        a scan (descriptions with region expansions ask for dozens of terms per post)."""
        found = [stem[:n] for n in range(PREFIX_MIN, len(stem)) if stem[:n] in self.tf]
        if stem not in self.prefixes:
            return found
        index = bisect_left(self.long_stems, stem)
        while index < len(self.long_stems) and self.long_stems[index].startswith(stem):
            found.append(self.long_stems[index])
            index += 1
        return found

    def phrase_count(self, phrase: tuple[str, ...], *, lead_only: bool = False) -> float:
        """Occurrences of a stem sequence, title ones boosted."""
        if len(phrase) == 1:
            stem = phrase[0]
            if lead_only:
                return self.title_tf[stem] * TITLE_BOOST + self.body[: self.lead].count(stem)
            return self.title_tf[stem] * TITLE_BOOST + self.tf[stem] - self.title_tf[stem]
        body = self.body[: self.lead] if lead_only else self.body
        return _count(self.title, phrase) * TITLE_BOOST + _count(body, phrase)

    def acronym_strength(self, acronym: str) -> float:
        """How strongly the post is about an abbreviation, written in capitals (0..1)."""
        count = self.acronyms[acronym]
        return self.saturation(count) if count else 0.0

    def phrase_strength(self, phrase: tuple[str, ...]) -> float:
        if len(phrase) == 1:
            return self.term_strength(phrase[0])
        return self.saturation(self.phrase_count(phrase))


def _count(seq: tuple[str, ...], phrase: tuple[str, ...]) -> int:
    n = len(phrase)
    if n > len(seq):
        return 0
    first = phrase[0]
    return sum(1 for i in range(len(seq) - n + 1) if seq[i] == first and seq[i : i + n] == phrase)


@lru_cache(maxsize=512)
def document(title: str, text: str, language: str = "") -> Document:
    """The prepared post (memoised: relevance, tags and the gate see the same post)."""
    text = clean(text)
    title_terms = tuple(terms(clean(title), language))
    body_terms = tuple(terms(text, language))
    first = split_sentences(text[:1000])[:1]
    lead = min(LEAD_TERMS, len(terms(first[0], language))) if first else 0
    title_tf = Counter(title_terms)
    tf = Counter(body_terms)
    tf.update(title_tf)
    long_stems = tuple(sorted(t for t in tf if len(t) >= PREFIX_MIN))
    prefixes = frozenset(t[:n] for t in long_stems for n in range(PREFIX_MIN, len(t) + 1))
    acronyms = Counter(_acronyms(text))
    for acronym in _acronyms(clean(title)):
        acronyms[acronym] += TITLE_BOOST
    return Document(
        title=title_terms,
        body=body_terms,
        lead=lead,
        tf=tf,
        title_tf=title_tf,
        long_stems=long_stems,
        acronyms=acronyms,
        prefixes=prefixes,
    )


_ACRONYM = re.compile(r"(?<![\w-])([A-Z]{2,6})s?(?![\w])")


def _acronyms(text: str) -> list[str]:
    """Abbreviations written in capitals, lower-cased, a plural "s" dropped: "EVs" -> "ev"."""
    return [m.group(1).lower() for m in _ACRONYM.finditer(text)]
