"""Writes for feeds and posts: applying feed rules to raw posts and saving posts.

Every function here is idempotent: posts are unique per (feed, raw post), inserted with
ON CONFLICT DO NOTHING, and each run announces only the rows it inserted itself (`Post.batch`),
so a repeated or concurrent run neither duplicates a post nor pushes it twice.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from feeds.models import RawPost
from processing.models import Feed, Post
from processing.rules import Rules
from realtime import broadcast

logger = logging.getLogger(__name__)


def process_raw_posts(*, raw_post_ids: Iterable[int]) -> list[int]:
    """Turn unprocessed raw posts into posts for every active feed subscribed to their source.

    The raw posts are claimed by a conditional UPDATE (processed_at IS NULL) in the same
    transaction that saves the posts: a concurrent run skips them, a crashed run leaves them
    unprocessed for `sweep_unprocessed`. Returns the ids of the posts created.
    """
    ids = sorted(set(raw_post_ids))
    if not ids:
        return []
    batch = uuid.uuid4()
    with transaction.atomic():
        claimed = RawPost.objects.filter(id__in=ids, processed_at__isnull=True).update(
            processed_at=timezone.now(), process_claim=batch
        )
        if not claimed:
            return []
        raw_posts = list(RawPost.objects.filter(process_claim=batch).order_by("id"))
        return _save_posts(raw_posts, _active_feeds_by_source(r.source_id for r in raw_posts))


def backfill_feed(*, feed_id: int) -> list[int]:
    """Give a feed the recent raw posts of its sources (after the feed is created or gains
    sources), so a new feed is not empty until the next item appears upstream."""
    feed = Feed.objects.filter(id=feed_id, active=True).first()
    if feed is None or settings.FEED_BACKFILL_LIMIT == 0:
        return []
    raw_posts: list[RawPost] = []
    for source_id in feed.sources.values_list("id", flat=True):
        raw_posts.extend(
            RawPost.objects.filter(source_id=source_id).order_by("-fetched_at", "-id")[
                : settings.FEED_BACKFILL_LIMIT
            ]
        )
    raw_posts.sort(key=lambda raw: raw.id)
    feeds = {source_id: [feed] for source_id in {raw.source_id for raw in raw_posts}}
    with transaction.atomic():
        return _save_posts(raw_posts, feeds)


def unprocessed_raw_post_ids(*, older_than_seconds: int, limit: int = 1000) -> list[int]:
    """Raw posts whose processing is overdue (a lost task or a killed worker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        RawPost.objects.filter(processed_at__isnull=True, fetched_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def _active_feeds_by_source(source_ids: Iterable[int]) -> dict[int, list[Feed]]:
    by_source: dict[int, list[Feed]] = defaultdict(list)
    through = Feed.sources.through
    links = through.objects.filter(source_id__in=set(source_ids), feed__active=True)
    for link in links.select_related("feed"):
        by_source[link.source_id].append(link.feed)
    return by_source


def _save_posts(raw_posts: list[RawPost], feeds_by_source: dict[int, list[Feed]]) -> list[int]:
    """Insert the posts the feeds' rules accept; announce, after commit, those inserted here."""
    batch = uuid.uuid4()
    rules: dict[int, Rules] = {}
    posts: list[Post] = []
    for raw in raw_posts:
        for feed in feeds_by_source.get(raw.source_id, []):
            if feed.id not in rules:
                rules[feed.id] = Rules.from_text(
                    include=feed.include_keywords, exclude=feed.exclude_keywords
                )
            if not rules[feed.id].matches(title=raw.title, text=raw.text):
                continue
            posts.append(
                Post(
                    feed=feed,
                    raw_post=raw,
                    title=raw.title,
                    url=raw.url,
                    published_at=raw.published_at,
                    batch=batch,
                )
            )
    if not posts:
        return []
    Post.objects.bulk_create(posts, ignore_conflicts=True)
    created = list(
        Post.objects.filter(batch=batch).select_related("raw_post__source").order_by("id")
    )
    broadcast.posts_created_on_commit(created)
    logger.info("saved %s posts from %s raw posts", len(created), len(raw_posts))
    return [post.id for post in created]
