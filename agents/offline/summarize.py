"""Offline summary: the post's title and up to three sentences chosen by lead-biased TextRank.

News puts the point first, so a short post is summarized by its lead sentences as they are. A
longer one is ranked with TextRank (sentences as nodes, stem overlap normalized by log lengths
as edge weights, PageRank by power iteration) whose random jumps favour early sentences, then
the best three are given in their original order.

No translation: the summary stays in the post's language and says so. Its `language` is the
post's (the caller's hint, else a guess from `agents.language`, "" when unsure), never the
feed's; `translated` is false; and when the feed wants another language than the post is
recognisably in, `note` records that the post was kept as it is because no model translated it.
"""

from __future__ import annotations

import math

from agents import language as languages
from agents.schemas import MAX_LANGUAGE, MAX_SUMMARY_SENTENCES, MAX_TITLE_OUT, SummarizeOutput
from agents.text import clean, shorten, split_sentences, terms

VERSION = "offline-summarize-2"

MAX_SUMMARY_CHARS = 600
# Longer articles: only their first sentences compete (the rest rarely carries the lead).
MAX_CANDIDATES = 40
DAMPING = 0.85
ITERATIONS = 30
# Sentences shorter than this (in words) are captions, bylines or "Read more"; skipped when
# there is anything better.
MIN_WORDS = 4


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()).strip(" .!?…") == " ".join(b.lower().split()).strip(" .!?…")


def textrank(sentences: list[str], language: str = "") -> list[float]:
    """Lead-biased TextRank scores, one per sentence."""
    n = len(sentences)
    bags = [set(terms(s, language)) for s in sentences]
    edges: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if len(bags[i]) < 2 or len(bags[j]) < 2:
                continue
            overlap = len(bags[i] & bags[j])
            if overlap:
                w = overlap / (math.log(len(bags[i])) + math.log(len(bags[j])))
                edges[i].append((j, w))
                edges[j].append((i, w))
    out_weight = [sum(w for _, w in e) for e in edges]
    prior = [1.0 / (i + 1) for i in range(n)]
    norm = sum(prior)
    prior = [p / norm for p in prior]
    rank = prior[:]
    for _ in range(ITERATIONS):
        new = [(1 - DAMPING) * prior[i] for i in range(n)]
        for i in range(n):
            if out_weight[i] == 0:
                # A sentence sharing nothing gives its rank back through the prior.
                for k in range(n):
                    new[k] += DAMPING * rank[i] * prior[k]
                continue
            for j, w in edges[i]:
                new[j] += DAMPING * rank[i] * w / out_weight[i]
        rank = new
    return rank


def summarize(*, title: str, text: str, language: str = "", target: str = "") -> SummarizeOutput:
    """Title and summary of a post in its own language. `language` is the post's language if
    the caller knows it; `target` is the feed's language ("" when the feed has none)."""
    source = languages.post_language(title=title, text=text, hint=language)[:MAX_LANGUAGE]
    note = ""
    if target and source and not languages.same(source, target):
        note = (
            f"Not translated: the post is in {languages.name(source)} and the feed wants "
            f"{languages.name(target)}; the offline summarizer, used because no language model "
            "answered (none configured, budget spent or model failed), cannot translate."
        )
    title = clean(title)
    sentences = split_sentences(clean(text))
    if title:
        sentences = [s for s in sentences if not _same(s, title)]
    substantial = [s for s in sentences if len(s.split()) >= MIN_WORDS]
    sentences = substantial or sentences
    if not title:
        title = sentences.pop(0) if sentences else "Untitled"
    chosen = sentences
    if len(sentences) > MAX_SUMMARY_SENTENCES:
        candidates = sentences[:MAX_CANDIDATES]
        ranks = textrank(candidates, source)
        best = sorted(range(len(candidates)), key=lambda i: -ranks[i])[:MAX_SUMMARY_SENTENCES]
        chosen = [candidates[i] for i in sorted(best)]
    while len(chosen) > 1 and len(" ".join(chosen)) > MAX_SUMMARY_CHARS:
        chosen = chosen[:-1]
    summary = shorten(" ".join(chosen), MAX_SUMMARY_CHARS) if chosen else ""
    return SummarizeOutput(
        title=shorten(title, MAX_TITLE_OUT),
        summary=summary,
        language=source,
        translated=False,
        source_language=source,
        note=note,
    )
