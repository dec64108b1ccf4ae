"""Benchmark: LLM calls per 100 posts, the processing cascade against one call per post per feed.

Feeds the labelled set (tests/fixtures/agents/labelled.jsonl: 7 feed descriptions) through the
real pipeline on PostgreSQL: every feed subscribes to two sources; every post arrives in the
first source, and a third of them again, lightly edited, in the second (another outlet's copy).
The LLM is a fake chat model (no network) that counts its calls and answers every post as
relevant. Relevance only (summaries and tags off), so both sides count the same agent.

Naive: one relevance call per post per feed that receives it (copies included).
Cascade: rules → stories (copies are not judged again) → offline gate → batched LLM calls
(AGENT_BATCH_SIZE posts per call); a second pass over the same posts shows the cache.

    .venv/bin/python bench/agent_calls.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from _common import REPO, setup_django


def main() -> None:
    setup_django("infatium_bench_calls")
    sys.path.insert(0, str(REPO))
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from agents import llm
    from feeds.models import RawPost, Source
    from processing import decisions, services
    from processing.models import Feed
    from tests.agents.fakes import ToolCallingFakeChatModel, relevance_responder

    settings.LLM_MODEL = "fake:bench"
    settings.LLM_RATE_LIMIT_PER_MINUTE = 0
    settings.AGENT_DAILY_TOKEN_BUDGET = 0
    model = ToolCallingFakeChatModel(responder=relevance_responder(lambda text: True))
    models = llm.ModelSet(primary=llm.ModelSpec("fake:bench", model))
    llm.configured_models = lambda: models  # the fake provider, for this process only

    lines = [
        json.loads(line)
        for line in Path(REPO / "tests/fixtures/agents/labelled.jsonl").read_text().splitlines()
        if line.strip()
    ]
    user = get_user_model().objects.create_user(username="calls")
    wire = Source.objects.create(url="http://feeds.invalid/wire.xml")
    paper = Source.objects.create(url="http://feeds.invalid/paper.xml")
    feeds: dict[str, Feed] = {}
    for line in lines:
        if line["feed"] not in feeds:
            feed = Feed.objects.create(
                owner=user,
                name=line["feed"],
                description=line["description"],
                summaries=False,
                tags=False,
            )
            feed.sources.add(wire, paper)
            feeds[line["feed"]] = feed
    rng = random.Random(7)
    raw_ids: list[int] = []
    copies = 0
    for n, line in enumerate(lines):
        post = line["post"]
        raw = RawPost.objects.create(
            source=wire,
            external_id=post["id"],
            title=post["title"],
            text=post["text"],
            content_hash=f"{n:064d}",
        )
        raw_ids.append(raw.id)
        if rng.random() < 1 / 3:
            copies += 1
            copy = RawPost.objects.create(
                source=paper,
                external_id=post["id"] + "-copy",
                title=post["title"],
                text=post["text"] + " (Additional reporting by the desk.)",
                content_hash=f"c{n:063d}",
            )
            raw_ids.append(copy.id)

    posts = len(raw_ids)
    naive_calls = posts * len(feeds)
    staged = services.stage_raw_posts(raw_post_ids=raw_ids)
    decisions.decide_candidates(candidate_ids=staged.candidate_ids)
    cascade_calls = len(model.calls)

    print(
        f"{len(lines)} posts + {copies} copies = {posts} raw posts, {len(feeds)} feeds, "
        f"batch size {settings.AGENT_BATCH_SIZE}"
    )
    print(f"naive (one call per post per feed): {naive_calls:6d} calls = "
          f"{100 * naive_calls / posts:7.1f} per 100 posts")  # fmt: skip
    print(
        f"cascade (stories, gate, batches):   {cascade_calls:6d} calls = "
        f"{100 * cascade_calls / posts:7.1f} per 100 posts; "
        f"{len(staged.candidate_ids)} candidates judged, "
        f"{naive_calls / max(cascade_calls, 1):.0f}x fewer calls"
    )
    # The same posts again (a redelivered task, a replay): every answer comes from the cache.
    before = len(model.calls)
    replayed = 0
    for feed in feeds.values():
        again = services.stage_backfill(feed_id=feed.id).candidate_ids
        replayed += len(again)
        decisions.decide_candidates(candidate_ids=again)
    print(
        f"replay ({replayed} recent candidates judged again): "
        f"{len(model.calls) - before} more calls"
    )


if __name__ == "__main__":
    main()
