"""Writes for feeds and posts: applying feed rules to raw posts and saving posts.

Every function here is idempotent: posts are unique per (feed, raw post), inserted with
ON CONFLICT DO NOTHING, and each run announces only the rows it inserted itself (`Post.batch`),
so a repeated or concurrent run neither duplicates a post nor pushes it twice.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from feeds.models import RawPost, Source
from feeds.services import QuotaExceeded, lock_user
from processing.models import Candidate, Feed, Post, Story
from processing.rules import Rules
from processing.stories import assign_stories
from realtime import broadcast, outbox

logger = logging.getLogger(__name__)


def process_raw_posts(*, raw_post_ids: Iterable[int]) -> list[int]:
    """`stage_raw_posts`, returning the ids of the posts saved at once."""
    return stage_raw_posts(raw_post_ids=raw_post_ids).post_ids


def backfill_feed(*, feed_id: int) -> list[int]:
    """`stage_backfill`, returning the ids of the posts saved at once."""
    return stage_backfill(feed_id=feed_id).post_ids


@dataclass(frozen=True)
class Staged:
    post_ids: list[int]
    candidate_ids: list[int]


NOTHING = Staged([], [])


def stage_raw_posts(*, raw_post_ids: Iterable[int]) -> Staged:
    """Group new raw posts into stories and apply every subscribing feed's rules.

    The raw posts are claimed by a conditional UPDATE (processed_at IS NULL) in the same
    transaction that writes the results: a concurrent run skips them, a crashed run leaves them
    unprocessed for `sweep_unprocessed`. A copy of a story a feed already has adds to the
    story's counts instead of a second post. Feeds without a description, summaries or tags
    get their posts at once; the others get a `Candidate` each, decided by the feed's agents
    (`decide_candidates`). Returns the posts saved and the candidates created.
    """
    ids = sorted(set(raw_post_ids))
    if not ids:
        return NOTHING
    batch = uuid.uuid4()
    with transaction.atomic():
        claimed = RawPost.objects.filter(id__in=ids, processed_at__isnull=True).update(
            processed_at=timezone.now(), process_claim=batch
        )
        if not claimed:
            return NOTHING
        raw_posts = list(RawPost.objects.filter(process_claim=batch).order_by("id"))
        stories = assign_stories(raw_posts)
        feeds = _active_feeds_by_source(r.source_id for r in raw_posts)
        return _route(raw_posts, feeds, stories)


def stage_backfill(*, feed_id: int) -> Staged:
    """Give a feed the recent raw posts of its sources (after the feed is created or gains
    sources), so a new feed is not empty until the next item appears upstream. Returns posts
    saved and candidates created, like `stage_raw_posts`."""
    feed = Feed.objects.filter(id=feed_id, active=True).first()
    if feed is None or settings.FEED_BACKFILL_LIMIT == 0:
        return NOTHING
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
        return _route(raw_posts, feeds, assign_stories(raw_posts))


def unprocessed_raw_post_ids(*, older_than_seconds: int, limit: int = 1000) -> list[int]:
    """Raw posts whose processing is overdue (a lost task or a killed worker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        RawPost.objects.filter(processed_at__isnull=True, fetched_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def stale_candidate_ids(*, older_than_seconds: int, limit: int = 1000) -> list[int]:
    """Candidates whose agents task was lost (killed worker, flushed broker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Candidate.objects.filter(created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def needs_agents(feed: Feed) -> bool:
    return bool(feed.description.strip()) or feed.summaries or feed.tags


def _active_feeds_by_source(source_ids: Iterable[int]) -> dict[int, list[Feed]]:
    by_source: dict[int, list[Feed]] = defaultdict(list)
    through = Feed.sources.through
    links = through.objects.filter(source_id__in=set(source_ids), feed__active=True)
    for link in links.select_related("feed"):
        by_source[link.source_id].append(link.feed)
    return by_source


def _route(
    raw_posts: list[RawPost], feeds_by_source: dict[int, list[Feed]], stories: dict[int, Story]
) -> Staged:
    """Apply rules; save posts for agent-less feeds; create candidates for the others."""
    rules: dict[int, Rules] = {}
    direct: list[PostDraft] = []
    candidates: list[Candidate] = []
    pairs: list[tuple[Feed, RawPost]] = []
    for raw in raw_posts:
        for feed in feeds_by_source.get(raw.source_id, []):
            if feed.id not in rules:
                rules[feed.id] = Rules.from_text(
                    include=feed.include_keywords, exclude=feed.exclude_keywords
                )
            if rules[feed.id].matches(title=raw.title, text=raw.text):
                pairs.append((feed, raw))
    # A story the feed already shows (or already weighs) gets no second post.
    story_ids = {stories[raw.id].id for _, raw in pairs if raw.id in stories}
    taken = set(
        Post.objects.filter(story_id__in=story_ids).values_list("feed_id", "story_id")
    ) | set(Candidate.objects.filter(story_id__in=story_ids).values_list("feed_id", "story_id"))
    for feed, raw in pairs:
        story = stories.get(raw.id)
        if story is not None:
            if (feed.id, story.id) in taken:
                continue
            taken.add((feed.id, story.id))
        if needs_agents(feed):
            candidates.append(Candidate(feed=feed, raw_post=raw, story=story))
        else:
            direct.append(PostDraft(feed=feed, raw_post=raw, story=story))
    post_ids = save_posts(direct)
    if not candidates:
        return Staged(post_ids, [])
    created_at = timezone.now()
    for candidate in candidates:
        candidate.created_at = created_at
    Candidate.objects.bulk_create(candidates, ignore_conflicts=True)
    candidate_ids = Candidate.objects.filter(
        created_at=created_at, raw_post_id__in=[c.raw_post_id for c in candidates]
    ).values_list("id", flat=True)
    return Staged(post_ids, list(candidate_ids))


@dataclass
class PostDraft:
    feed: Feed
    raw_post: RawPost
    story: Story | None = None
    title: str = ""
    summary: str = ""
    tags: list[str] = field(default_factory=list)
    relevance: float | None = None
    relevance_reason: str = ""


def save_posts(drafts: Sequence[PostDraft]) -> list[int]:
    """Insert posts; announce, after commit, those inserted here. Call inside a transaction.

    Posts of one feed are inserted under a lock on the feed's row, so within a feed ids are
    committed in increasing order: the WebSocket cursor ("posts after id N") then never skips a
    post that was still uncommitted when a later id was delivered. Each announcement names the
    feed's post before it, read under the same lock, so a web process can tell a post it never
    received (its worker died after the commit, or its push came late) from no post at all.
    Locks are taken in id order so two runs cannot deadlock. ON CONFLICT DO NOTHING plus
    `batch` make a re-run harmless.
    """
    if not drafts:
        return []
    batch = uuid.uuid4()
    feed_ids = sorted({draft.feed.id for draft in drafts})
    list(Feed.objects.select_for_update().filter(id__in=feed_ids).order_by("id").values("id"))
    Post.objects.bulk_create(
        [
            Post(
                feed=draft.feed,
                raw_post=draft.raw_post,
                story=draft.story,
                title=draft.title or draft.raw_post.title,
                summary=draft.summary,
                tags=draft.tags,
                relevance=draft.relevance,
                relevance_reason=draft.relevance_reason,
                url=draft.raw_post.url,
                published_at=draft.raw_post.published_at,
                batch=batch,
            )
            for draft in drafts
        ],
        ignore_conflicts=True,
    )
    created = list(
        Post.objects.filter(batch=batch).select_related("raw_post__source").order_by("id")
    )
    outbox.record_posts_created(created)  # same transaction as the posts (callers' atomic)
    broadcast.posts_created_on_commit(created, previous=_previous_posts(created, batch))
    logger.info("saved %s posts", len(created))
    return [post.id for post in created]


def _previous_posts(created: Sequence[Post], batch: uuid.UUID) -> dict[int, int]:
    """For each feed of `created`, the id of its newest post before them (0: none), in one
    query. Exact while save_posts holds the feeds' locks: no other run can insert in between."""
    if not created:
        return {}
    newest = (
        Post.objects.filter(feed_id=OuterRef("pk"))
        .exclude(batch=batch)
        .order_by("-id")
        .values("id")
    )
    return {
        feed_id: last or 0
        for feed_id, last in Feed.objects.filter(id__in={post.feed_id for post in created})
        .annotate(last=Subquery(newest[:1]))
        .values_list("id", "last")
    }


class FeedNameTaken(Exception):
    """The owner already has a feed with this name."""


class UnknownSources(Exception):
    """Some source ids do not exist."""

    def __init__(self, missing: Iterable[int]) -> None:
        self.missing = sorted(missing)
        super().__init__(f"No such sources: {', '.join(map(str, self.missing))}")


def create_feed(
    *,
    owner: AbstractBaseUser,
    name: str,
    description: str = "",
    source_ids: Sequence[int] = (),
    include_keywords: str = "",
    exclude_keywords: str = "",
    summaries: bool = True,
    tags: bool = True,
    language: str = "",
    token_budget_daily: int | None = None,
    active: bool = True,
) -> Feed:
    """Create a feed for `owner` subscribed to `source_ids`.

    The owner may have at most FEED_QUOTA_PER_USER feeds, counted under a lock on the owner's
    row so concurrent requests cannot overshoot. Raises QuotaExceeded, FeedNameTaken (names are
    unique per owner) or UnknownSources; nothing is saved then. Subscribing enqueues, after
    commit, a backfill of the sources' recent raw posts (processing.signals).
    """
    with transaction.atomic():
        lock_user(owner)
        if Feed.objects.filter(owner=owner).count() >= settings.FEED_QUOTA_PER_USER:
            raise QuotaExceeded(f"You may have at most {settings.FEED_QUOTA_PER_USER} feeds.")
        _check_sources(source_ids)
        try:
            with transaction.atomic():
                feed = Feed.objects.create(
                    owner=owner,
                    name=name,
                    description=description,
                    include_keywords=include_keywords,
                    exclude_keywords=exclude_keywords,
                    summaries=summaries,
                    tags=tags,
                    language=language,
                    token_budget_daily=token_budget_daily,
                    active=active,
                )
        except IntegrityError as exc:
            raise FeedNameTaken(f"You already have a feed named {name!r}.") from exc
        if source_ids:
            feed.sources.set(sorted(set(source_ids)))
    return feed


# update_feed: leave a field whose None is a value (token_budget_daily) as it is.
KEEP = object()


def update_feed(
    *,
    feed: Feed,
    name: str | None = None,
    description: str | None = None,
    source_ids: Sequence[int] | None = None,
    include_keywords: str | None = None,
    exclude_keywords: str | None = None,
    summaries: bool | None = None,
    tags: bool | None = None,
    language: str | None = None,
    token_budget_daily: int | object | None = KEEP,
    active: bool | None = None,
) -> Feed:
    """Change the given fields of a feed (None: keep; for `token_budget_daily`, where None is a
    value (the global default), KEEP: keep). Raises FeedNameTaken or UnknownSources;
    nothing is saved then. Sources are replaced by `source_ids`; those newly added are
    backfilled after commit (processing.signals). New rules apply to posts processed from now
    on; posts already in the feed stay."""
    changes = {
        "name": name,
        "description": description,
        "include_keywords": include_keywords,
        "exclude_keywords": exclude_keywords,
        "summaries": summaries,
        "tags": tags,
        "language": language,
        "active": active,
    }
    fields = [field for field, value in changes.items() if value is not None]
    if token_budget_daily is not KEEP:
        changes["token_budget_daily"] = token_budget_daily
        fields.append("token_budget_daily")
    with transaction.atomic():
        if source_ids is not None:
            _check_sources(source_ids)
        for field in fields:
            setattr(feed, field, changes[field])
        if fields:
            try:
                with transaction.atomic():
                    feed.save(update_fields=fields)
            except IntegrityError as exc:
                feed.refresh_from_db()  # the caller's object must not keep the refused values
                raise FeedNameTaken(f"You already have a feed named {name!r}.") from exc
        if source_ids is not None:
            # set() adds and removes only the difference, so only new sources are backfilled.
            feed.sources.set(sorted(set(source_ids)))
    return feed


def delete_feed(*, feed: Feed) -> None:
    """Delete a feed and its posts (raw posts and sources stay: they are shared)."""
    feed.delete()


def _check_sources(source_ids: Sequence[int]) -> None:
    wanted = set(source_ids)
    if not wanted:
        return
    found = set(Source.objects.filter(id__in=wanted).values_list("id", flat=True))
    if wanted - found:
        raise UnknownSources(wanted - found)
