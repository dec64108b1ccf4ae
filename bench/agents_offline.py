"""Benchmark: the offline agents (relevance + summary + tags) on generated news posts.

Pure CPU, one core, no database: what one worker can push through the offline default (and
through the relevance gate alone) before any LLM is involved. Posts are generated from word
pools into 3-8 sentence items (~60-150 words) across a few topics, scored against five feed
descriptions with phrases and negations.

    .venv/bin/python bench/agents_offline.py [--posts 3000] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agents import offline  # noqa: E402
from agents.offline import relevance, tags  # noqa: E402
from agents.schemas import AgentType, FeedContext, PostItem  # noqa: E402

DESCRIPTIONS = [
    "EU AI regulation and the AI Act, no opinion pieces",
    "Renewable energy projects in Africa: solar, wind, grid",
    '"interest rate" decisions by central banks in Europe and the US',
    "Open-source software vulnerabilities and breaches, not product launches",
    "Premier League transfers (not rumours)",
]
SUBJECTS = [
    "The European Commission", "Kenya's energy ministry", "The Federal Reserve",
    "A Linux kernel maintainer", "Arsenal", "The Bank of England", "Regulators in Brussels",
    "A solar developer in Morocco", "Security researchers", "The AI Office", "Chelsea",
    "A wind farm operator", "The European Central Bank", "Python package maintainers",
]  # fmt: skip
VERBS = [
    "announced", "approved", "delayed", "confirmed", "rejected", "published", "patched",
    "signed", "raised", "cut", "held", "opened", "completed", "investigated",
]  # fmt: skip
OBJECTS = [
    "new rules for general-purpose AI models", "a 300 MW solar park near Nairobi",
    "its benchmark interest rate at 4.5%", "a critical vulnerability in the OpenSSH fork",
    "the transfer of a midfielder from Lyon", "a grid connection for three wind farms",
    "guidelines on banned AI practices", "an emergency cut of half a point",
    "a supply-chain attack on a popular npm package", "a loan deal until the end of the season",
    "funding for a transmission line to Ethiopia", "a consultation on the AI Act code of practice",
]  # fmt: skip
TAILS = [
    "on Thursday", "after weeks of talks", "despite objections from industry",
    "according to officials", "in a statement", "earlier than expected", "for the first time",
]  # fmt: skip
FILLER = [
    "Analysts said the decision was widely expected.",
    "The move follows a year of uncertainty in the sector.",
    "Critics argued the timing was poor.",
    "More details will be published next week.",
    "Markets reacted calmly to the news.",
    "The project is expected to create hundreds of jobs.",
    "Officials declined to comment on rumours of further changes.",
]


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."


def generate(n: int, seed: int) -> list[PostItem]:
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        body = [_sentence(rng) for _ in range(rng.randint(2, 4))]
        body += rng.sample(FILLER, rng.randint(1, 4))
        rng.shuffle(body[1:])
        title = _sentence(rng).rstrip(".")
        posts.append(PostItem(id=str(i), title=title, text=" ".join(body)))
    return posts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    posts = generate(args.posts, args.seed)
    contexts = [FeedContext(description=d) for d in DESCRIPTIONS]
    taxonomy = list(tags.DEFAULT_TAXONOMY)
    words = sum(len(f"{p.title} {p.text}".split()) for p in posts) / len(posts)

    # Warm-up: the background word lists load once per process (~0.2 s), not per post.
    offline.run(AgentType.RELEVANCE, posts[0], contexts[0], taxonomy=taxonomy, keywords={})

    started = time.perf_counter()
    relevant = 0
    for n, post in enumerate(posts):
        context = contexts[n % len(contexts)]
        verdict = offline.run(AgentType.RELEVANCE, post, context, taxonomy=taxonomy, keywords={})
        offline.run(AgentType.SUMMARIZE, post, context, taxonomy=taxonomy, keywords={})
        offline.run(AgentType.TAG, post, context, taxonomy=taxonomy, keywords={})
        relevant += verdict.relevant  # type: ignore[union-attr]
    all_three = time.perf_counter() - started

    # The gate alone on fresh text (the document cache cleared), as the cascade would use it.
    sys.modules["agents.offline.document"].document.cache_clear()
    started = time.perf_counter()
    for n, post in enumerate(posts):
        relevance.score(
            title=post.title, text=post.text, description=DESCRIPTIONS[n % len(DESCRIPTIONS)]
        )
    gate = time.perf_counter() - started

    print(f"{len(posts)} generated posts, {words:.0f} words on average, 5 descriptions")
    print(
        f"relevance + summary + tags: {len(posts) / all_three:,.0f} posts/s "
        f"({all_three * 1000 / len(posts):.2f} ms/post; {relevant} judged relevant)"
    )
    print(f"relevance (gate) alone:     {len(posts) / gate:,.0f} posts/s")


if __name__ == "__main__":
    main()
