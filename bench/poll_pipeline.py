"""Benchmark: poll → store → process, in one process, on PostgreSQL, against local feeds.

Serves N RSS feeds of M items from an HTTP server on 127.0.0.1, then times with the real
services (no Celery, one core's worth of work):
  1. first poll of every source (fetch, parse, sanitize, INSERT raw posts),
  2. processing every new raw post for two subscribing feeds (rules, INSERT posts),
  3. a second poll of every source (conditional GET answered 304).
Prints feeds/s, items/s and posts/s. Uses a throwaway database `infatium_bench` on the server
named by DATABASE_URL (default: the local PostgreSQL). Figures to compare: `reader` 3.26 on this
machine did 22.4 feeds/s (1,122 entries/s) on a first update and 595 feeds/s unchanged
(shared/research/parsers-and-reader.md).

    .venv/bin/python bench/poll_pipeline.py [--sources 200] [--items 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from _common import setup_django

_WORDS = [
    "market",
    "bank",
    "rates",
    "inflation",
    "election",
    "court",
    "climate",
    "storm",
    "flood",
    "league",
    "transfer",
    "vaccine",
    "hospital",
    "robot",
    "model",
    "chip",
    "factory",
    "port",
    "rail",
    "strike",
    "budget",
    "tax",
    "energy",
    "solar",
    "wind",
    "grid",
    "oil",
    "gas",
    "mission",
    "launch",
    "rover",
    "satellite",
    "council",
    "mayor",
    "police",
    "museum",
    "festival",
    "harvest",
    "drought",
    "export",
    "import",
    "tariff",
    "startup",
    "funding",
    "merger",
    "lawsuit",
    "privacy",
    "breach",
    "patch",
    "browser",
    "cloud",
]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _feed(source: int, items: int) -> str:
    # Distinct text per item (seeded), so stories do not merge them: a realistic mix.
    rng = random.Random(source)
    body = "".join(
        f"<item><title>{_sentence(rng, 7)}</title>"
        f"<link>http://example.test/{source}/{i}</link><guid>s{source}-i{i}</guid>"
        f"<pubDate>Wed, 25 Nov 2026 10:{i % 60:02d}:00 GMT</pubDate>"
        f"<description>&lt;p&gt;{_sentence(rng, 25)} &lt;b&gt;{_sentence(rng, 12)}&lt;/b&gt; "
        "&lt;a href='http://example.test/x' onclick='evil()'&gt;link&lt;/a&gt; "
        f"&lt;script&gt;alert(1)&lt;/script&gt; {_sentence(rng, 30)}&lt;/p&gt;"
        "</description></item>"
        for i in range(items)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>Bench {source}</title><link>http://example.test/</link>{body}</channel></rss>"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    args = parser.parse_args()
    setup_django("infatium_bench")

    from django.contrib.auth import get_user_model

    from feeds import services as feed_services
    from feeds.models import Source
    from processing import decisions
    from processing import services as processing_services
    from processing.models import Feed, Post
    from tests.support.feedserver import FeedServer

    server = FeedServer()
    user = get_user_model().objects.create_user(username="bench")
    # A rules-only feed (posts saved by processing) and a feed with a description, summaries
    # and tags (candidates decided by the offline agents).
    everything = Feed.objects.create(owner=user, name="everything", summaries=False, tags=False)
    ai_only = Feed.objects.create(
        owner=user, name="ai", include_keywords="robot\nmarket", description="robots and markets"
    )
    sources = []
    for n in range(args.sources):
        url = server.serve(f"/{n}.xml", _feed(n, args.items))
        sources.append(Source.objects.create(url=url, poll_interval=60))
    everything.sources.add(*sources)
    ai_only.sources.add(*sources)

    def poll_all() -> tuple[float, list[int], list[float]]:
        new_ids: list[int] = []
        per_poll: list[float] = []
        started = time.perf_counter()
        for source in sources:
            claim = feed_services.claim_source_now(source_id=source.id)
            assert claim is not None
            t0 = time.perf_counter()
            new_ids += feed_services.poll_source(source_id=source.id, token=claim.token)
            per_poll.append(time.perf_counter() - t0)
        return time.perf_counter() - started, new_ids, per_poll

    first_s, new_ids, first_polls = poll_all()
    started = time.perf_counter()
    candidates: list[list[int]] = []
    for chunk in range(0, len(new_ids), args.items):
        staged = processing_services.stage_raw_posts(
            raw_post_ids=new_ids[chunk : chunk + args.items]
        )
        candidates.append(staged.candidate_ids)
    process_s = time.perf_counter() - started
    started = time.perf_counter()
    for ids in candidates:
        decisions.decide_candidates(candidate_ids=ids)
    agents_s = time.perf_counter() - started
    posts = Post.objects.count()
    second_s, again, second_polls = poll_all()
    server.close()

    items = len(new_ids)
    print(f"sources={args.sources} items/source={args.items} (PostgreSQL, one process)")
    print(
        f"first poll:  {args.sources / first_s:7.1f} feeds/s  {items / first_s:8.0f} items/s  "
        f"median {statistics.median(first_polls) * 1000:.1f} ms/feed"
    )
    print(
        f"processing:  {items / process_s:7.0f} raw posts/s (stories, rules, candidates); "
        f"agents: {sum(map(len, candidates)) / agents_s:6.0f} candidates/s (offline); "
        f"{posts} posts for 2 feeds"
    )
    print(
        f"second poll: {args.sources / second_s:7.1f} feeds/s  (304s; {len(again)} new items) "
        f"median {statistics.median(second_polls) * 1000:.1f} ms/feed"
    )


if __name__ == "__main__":
    main()
