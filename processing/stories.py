"""Group raw posts into stories: exact copies and near duplicates across sources.

Runs inside the processing transaction. On PostgreSQL assignments are serialized by a
transaction-scoped advisory lock, so two workers cannot open two stories for one event at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from feeds.models import RawPost
from processing.dedup import NEAR_DUPLICATE_SIMILARITY, Signature, exact_hash, signature
from processing.models import Story, StoryKey, StoryMember

_LOCK_ID = 0x1F_A7_1D_5A  # arbitrary, constant: "story assignment"


def assign_stories(raw_posts: Sequence[RawPost]) -> dict[int, Story]:
    """The story of each raw post, opening a new one when no recent story matches.

    Idempotent: a raw post already assigned keeps its story. A constant number of queries for
    new stories; one UPDATE per existing story that gains a copy.
    """
    if not raw_posts:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
    assigned: dict[int, Story] = {
        member.raw_post_id: member.story
        for member in StoryMember.objects.filter(raw_post__in=raw_posts).select_related("story")
    }
    todo = [raw for raw in raw_posts if raw.id not in assigned]
    if not todo:
        return assigned
    keys: dict[int, tuple[str, Signature | None, list[str]]] = {}
    for raw in todo:
        sig = signature(raw.title, raw.text)
        keys[raw.id] = ("x:" + exact_hash(raw.title, raw.text), sig, sig.bands() if sig else [])
    window_start = timezone.now() - timedelta(hours=settings.STORY_WINDOW_HOURS)
    lookup = [key for exact, _, bands in keys.values() for key in (exact, *bands)]
    known: dict[str, list[Story]] = {}
    parsed: dict[int, Signature] = {}  # by id(story): each story's MinHash decoded once
    for row in (
        StoryKey.objects.filter(key__in=lookup, created_at__gte=window_start)
        .select_related("story")
        .order_by("created_at")
    ):
        known.setdefault(row.key, []).append(row.story)
    new_stories: list[Story] = []
    matches: dict[int, tuple[Story, float]] = {}
    for raw in todo:
        exact, sig, bands = keys[raw.id]
        story, similarity = _match(exact, sig, bands, known, parsed)
        if story is None:
            story = Story(
                title=raw.title[:500],
                first_raw_post=raw,
                first_source_id=raw.source_id,
                signature=sig.to_hex() if sig else "",
            )
            new_stories.append(story)
        matches[raw.id] = (story, similarity)
        # Later posts of this batch can match this one.
        for key in (exact, *bands):
            known.setdefault(key, []).append(story)
    fresh = {id(story) for story in new_stories}
    # Copies inside this batch of a story opened in this batch: counted before it is saved.
    fresh_sources: dict[int, set[int]] = {}
    for raw in todo:
        story = matches[raw.id][0]
        if id(story) in fresh:
            sources = fresh_sources.setdefault(id(story), set())
            if story.first_raw_post is not raw:
                story.raw_post_count += 1
                story.source_count += raw.source_id not in sources
            sources.add(raw.source_id)
    Story.objects.bulk_create(new_stories)
    _count_copies(
        [(raw, story) for raw in todo for story in [matches[raw.id][0]] if id(story) not in fresh]
    )
    StoryMember.objects.bulk_create(
        [
            StoryMember(raw_post=raw, story=matches[raw.id][0], similarity=matches[raw.id][1])
            for raw in todo
        ]
    )
    StoryKey.objects.bulk_create(
        [
            StoryKey(key=key, story=matches[raw.id][0])
            for raw in todo
            for exact, _sig, bands in [keys[raw.id]]
            for key in (exact, *bands)
        ]
    )
    assigned.update({raw.id: matches[raw.id][0] for raw in todo})
    return assigned


# A post is compared with at most this many earlier stories sharing a band: a flood of
# near-identical posts cannot make assignment quadratic.
_MAX_CANDIDATES = 20


def _match(
    exact: str,
    sig: Signature | None,
    bands: list[str],
    known: dict[str, list[Story]],
    parsed: dict[int, Signature],
) -> tuple[Story | None, float]:
    if known.get(exact):
        return known[exact][0], 1.0
    best: tuple[Story | None, float] = (None, 0.0)
    if sig is None:
        return best
    compared: set[int] = set()
    for band in bands:
        for story in known.get(band, ()):
            if id(story) in compared or not story.signature:
                continue
            compared.add(id(story))
            if id(story) not in parsed:
                parsed[id(story)] = Signature.from_hex(story.signature)
            similarity = sig.similarity(parsed[id(story)])
            if similarity >= NEAR_DUPLICATE_SIMILARITY and similarity > best[1]:
                best = (story, similarity)
            if len(compared) >= _MAX_CANDIDATES:
                return best
    return best


def _count_copies(copies: list[tuple[RawPost, Story]]) -> None:
    """Add copies to existing stories' counts (a source counts once per story)."""
    if not copies:
        return
    story_ids = {story.id for _, story in copies}
    seen_sources = set(
        StoryMember.objects.filter(story_id__in=story_ids).values_list(
            "story_id", "raw_post__source_id"
        )
    )
    added: dict[int, list[int]] = {}
    for raw, story in copies:
        counts = added.setdefault(story.id, [0, 0])
        counts[0] += 1
        if (story.id, raw.source_id) not in seen_sources:
            seen_sources.add((story.id, raw.source_id))
            counts[1] += 1
    for story_id, (posts, sources) in added.items():
        Story.objects.filter(id=story_id).update(
            raw_post_count=F("raw_post_count") + posts,
            source_count=F("source_count") + sources,
            last_seen_at=timezone.now(),
        )


def prune_story_keys() -> int:
    """Drop lookup keys older than the matching window (they can no longer match)."""
    cutoff = timezone.now() - timedelta(hours=settings.STORY_WINDOW_HOURS)
    deleted, _ = StoryKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
