"""Raw posts into posts: which feeds get what, exactly once, and the push after commit."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feeds.models import RawPost, Source
from processing import services
from processing.models import Feed, Post
from realtime.groups import feed_group

_numbers = count(1)
PUBLISHED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Autouse runs before the owner/other_user fixtures: PBKDF2 costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _source(**fields: object) -> Source:
    n = next(_numbers)
    fields.setdefault("url", f"http://feeds.invalid/{n}.xml")
    fields.setdefault("title", f"Source {n}")
    return Source.objects.create(**fields)


def _raw(source: Source, title: str = "", text: str = "", **fields: object) -> RawPost:
    n = next(_numbers)
    fields.setdefault("external_id", f"item-{n}")
    fields.setdefault("url", f"http://example.test/items/{n}")
    fields.setdefault("published_at", PUBLISHED)
    fields.setdefault("content_hash", f"{n:064d}")
    return RawPost.objects.create(source=source, title=title or f"Item {n}", text=text, **fields)


def _feed(owner, *sources: Source, **fields: object) -> Feed:
    fields.setdefault("name", f"Feed {next(_numbers)}")
    # Rules-only feeds: their posts are saved by processing itself (no agents step).
    fields.setdefault("summaries", False)
    fields.setdefault("tags", False)
    feed = Feed.objects.create(owner=owner, **fields)
    # The through model directly: Feed.sources.add() would also queue a backfill task.
    Feed.sources.through.objects.bulk_create(
        [Feed.sources.through(feed=feed, source=source) for source in sources]
    )
    return feed


def _pairs(ids: list[int] | None = None) -> set[tuple[int, int]]:
    posts = Post.objects.all() if ids is None else Post.objects.filter(id__in=ids)
    return set(posts.values_list("feed_id", "raw_post_id"))


def _process(raws: list[RawPost]) -> list[int]:
    return services.process_raw_posts(raw_post_ids=[raw.id for raw in raws])


# --- Who gets what -------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_gives_each_active_subscribing_feed_each_raw_post(owner, other_user):
    news, blog = _source(), _source()
    n1, n2, b1 = _raw(news), _raw(news), _raw(blog)
    news_only = _feed(owner, news)
    both = _feed(other_user, news, blog)
    blog_only = _feed(owner, blog)
    _feed(owner, news, blog, active=False)
    _feed(other_user)  # subscribes to nothing

    created = _process([n1, n2, b1])

    assert _pairs(created) == {
        (news_only.id, n1.id),
        (news_only.id, n2.id),
        (both.id, n1.id),
        (both.id, n2.id),
        (both.id, b1.id),
        (blog_only.id, b1.id),
    }
    assert _pairs() == _pairs(created)  # nothing else was written


@pytest.mark.django_db
def test_it_copies_the_raw_post_into_the_post(owner):
    source = _source()
    raw = _raw(source, "Big news", url="https://example.test/big")
    feed = _feed(owner, source)

    [post_id] = _process([raw])

    post = Post.objects.get(id=post_id)
    assert (post.feed_id, post.raw_post_id) == (feed.id, raw.id)
    assert (post.title, post.url, post.published_at) == ("Big news", raw.url, PUBLISHED)


@pytest.mark.django_db
def test_it_marks_raw_posts_processed_even_when_no_feed_wants_them(owner):
    source = _source()
    raw = _raw(source)

    assert _process([raw]) == []

    raw.refresh_from_db()
    assert raw.processed_at is not None
    assert raw.process_claim is not None


@pytest.mark.django_db
def test_it_applies_each_feeds_rules(owner):
    source = _source()
    rust = _raw(source, "Rust 2.0 released")
    ai = _raw(source, "Minister said no", text="About the AI act")
    spam = _raw(source, "Rust crypto giveaway")
    rust_feed = _feed(owner, source, include_keywords="rust", exclude_keywords="giveaway")
    ai_feed = _feed(owner, source, include_keywords="AI")
    everything = _feed(owner, source)

    _process([rust, ai, spam])

    assert _pairs() == {
        (rust_feed.id, rust.id),
        (ai_feed.id, ai.id),
        (everything.id, rust.id),
        (everything.id, ai.id),
        (everything.id, spam.id),
    }


@pytest.mark.django_db
def test_it_creates_nothing_more_when_run_again(owner):
    source = _source()
    raws = [_raw(source), _raw(source)]
    _feed(owner, source)
    first = _process(raws)

    second = _process(raws)

    assert len(first) == 2
    assert second == []
    assert Post.objects.count() == 2


@pytest.mark.django_db
def test_it_returns_nothing_for_no_or_unknown_ids():
    assert services.process_raw_posts(raw_post_ids=[]) == []
    assert services.process_raw_posts(raw_post_ids=[10**12]) == []


@pytest.mark.django_db
def test_it_runs_a_constant_number_of_queries_however_many_posts(owner, other_user):
    def run(n_sources: int, n_raws: int) -> int:
        sources = [_source() for _ in range(n_sources)]
        raws = [_raw(s) for s in sources for _ in range(n_raws)]
        _feed(owner, *sources, include_keywords="item")
        _feed(other_user, *sources)
        with CaptureQueriesContext(connection) as queries:
            created = _process(raws)
        assert len(created) == 2 * n_sources * n_raws
        return len(queries)

    assert run(1, 1) == run(4, 10)


# --- Concurrency ---------------------------------------------------------------------------


def _in_threads(n: int, work) -> list:
    """Run work(slot) in n threads released together; each thread closes its own connection."""
    start = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            start.wait(timeout=10)
            results[slot] = work(slot)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return results


def _subscribe(feed_id: int) -> str:
    channel = f"test-{uuid.uuid4().hex}"
    async_to_sync(get_channel_layer().group_add)(feed_group(feed_id), channel)
    return channel


def _drain(channel: str, *, quiet: float = 0.3) -> list[dict]:
    """Every message on `channel`, until none arrives for `quiet` seconds."""

    async def drain() -> list[dict]:
        layer = get_channel_layer()
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), quiet))
            except TimeoutError:
                return messages

    return async_to_sync(drain)()


@pytest.mark.django_db(transaction=True)
def test_it_creates_and_announces_each_post_once_under_concurrent_runs(
    owner, other_user, redis_client
):
    source = _source()
    raws = [_raw(source) for _ in range(30)]
    mine = _feed(owner, source)
    _feed(other_user, source)
    channel = _subscribe(mine.id)
    ids = [raw.id for raw in raws]

    results = _in_threads(2, lambda slot: services.process_raw_posts(raw_post_ids=ids))

    returned = results[0] + results[1]
    assert len(returned) == len(set(returned)) == 60
    assert set(returned) == set(Post.objects.values_list("id", flat=True))
    assert (
        Post.objects.values("feed", "raw_post").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    )
    announced = [m["post"]["id"] for m in _drain(channel)]
    assert sorted(announced) == sorted(Post.objects.filter(feed=mine).values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_it_never_duplicates_posts_when_backfill_and_processing_race(owner):
    source = _source()
    raws = [_raw(source) for _ in range(20)]
    feed = _feed(owner, source)
    ids = [raw.id for raw in raws]

    def work(slot: int) -> list[int]:
        if slot % 2:
            return services.process_raw_posts(raw_post_ids=ids)
        return services.backfill_feed(feed_id=feed.id)

    results = _in_threads(4, work)

    returned = [post_id for result in results for post_id in result]
    assert len(returned) == len(set(returned)) == 20
    assert Post.objects.filter(feed=feed).count() == 20


# --- Sweep and backfill --------------------------------------------------------------------


@pytest.mark.django_db
def test_it_finds_only_stale_unprocessed_raw_posts():
    source = _source()
    now = timezone.now()
    stale = _raw(source, fetched_at=now - timedelta(minutes=10))
    _raw(source, fetched_at=now - timedelta(seconds=30))  # still in flight
    _raw(source, fetched_at=now - timedelta(minutes=10), processed_at=now - timedelta(minutes=9))

    assert services.unprocessed_raw_post_ids(older_than_seconds=120) == [stale.id]


@pytest.mark.django_db
def test_it_limits_the_sweep_oldest_id_first():
    source = _source()
    old = timezone.now() - timedelta(hours=1)
    raws = [_raw(source, fetched_at=old) for _ in range(5)]

    assert services.unprocessed_raw_post_ids(older_than_seconds=60, limit=3) == [
        r.id for r in raws[:3]
    ]


@pytest.mark.django_db
def test_it_no_longer_sweeps_a_raw_post_once_processed(owner):
    source = _source()
    raw = _raw(source, fetched_at=timezone.now() - timedelta(hours=1))
    _feed(owner, source)
    assert services.unprocessed_raw_post_ids(older_than_seconds=60) == [raw.id]

    _process([raw])

    assert services.unprocessed_raw_post_ids(older_than_seconds=60) == []


@pytest.mark.django_db
def test_it_backfills_a_new_feed_with_the_most_recent_raw_posts_of_each_source(owner, settings):
    settings.FEED_BACKFILL_LIMIT = 3
    a, b = _source(), _source()
    now = timezone.now()
    a_raws = [_raw(a, fetched_at=now - timedelta(minutes=m)) for m in (50, 40, 30, 20, 10)]
    b_raws = [_raw(b, fetched_at=now - timedelta(minutes=m)) for m in (5, 4)]
    feed = _feed(owner, a, b)

    created = services.backfill_feed(feed_id=feed.id)

    expected = {r.id for r in a_raws[2:]} | {r.id for r in b_raws}
    assert {raw for _, raw in _pairs(created)} == expected
    assert len(created) == 5


@pytest.mark.django_db
def test_it_applies_the_feed_rules_when_backfilling(owner):
    source = _source()
    rust = _raw(source, "Rust news")
    _raw(source, "Go news")
    _raw(source, "Rust scam")
    feed = _feed(owner, source, include_keywords="rust", exclude_keywords="scam")

    created = services.backfill_feed(feed_id=feed.id)

    assert _pairs(created) == {(feed.id, rust.id)}


@pytest.mark.django_db
def test_it_backfills_only_once_and_only_the_feed_asked_for(owner, other_user):
    source = _source()
    raws = [_raw(source) for _ in range(3)]
    feed = _feed(owner, source)
    other = _feed(other_user, source)
    first = services.backfill_feed(feed_id=feed.id)

    second = services.backfill_feed(feed_id=feed.id)

    assert len(first) == 3
    assert second == []
    assert Post.objects.filter(feed=other).count() == 0
    # Backfill leaves the raw posts' own processing alone; it then adds only what is missing.
    assert RawPost.objects.filter(processed_at__isnull=True).count() == 3
    assert _pairs(_process(raws)) == {(other.id, r.id) for r in raws}


@pytest.mark.django_db
def test_it_does_not_backfill_an_inactive_feed_or_when_disabled(owner, settings):
    source = _source()
    _raw(source)
    inactive = _feed(owner, source, active=False)
    active = _feed(owner, source)
    settings.FEED_BACKFILL_LIMIT = 0

    assert services.backfill_feed(feed_id=active.id) == []
    settings.FEED_BACKFILL_LIMIT = 50
    assert services.backfill_feed(feed_id=inactive.id) == []
    assert services.backfill_feed(feed_id=10**12) == []
    assert Post.objects.count() == 0


# --- Push after commit ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_pushes_one_posts_created_message_per_post_after_commit(owner, other_user, redis_client):
    source = _source(title="Wire")
    raws = [_raw(source, "First"), _raw(source, "Second", published_at=None)]
    mine = _feed(owner, source)
    theirs = _feed(other_user, source)
    channel = _subscribe(mine.id)

    created = _process(raws)

    messages = _drain(channel)
    mine_posts = {p.raw_post_id: p for p in Post.objects.filter(feed=mine)}
    assert len(created) == 4
    assert [m["type"] for m in messages] == ["posts.created", "posts.created"]
    by_raw = {m["post"]["raw_post_id"]: m["post"] for m in messages}
    assert set(by_raw) == {raws[0].id, raws[1].id}  # nothing of the other user's feed
    for raw in raws:
        payload, post = by_raw[raw.id], mine_posts[raw.id]
        assert payload["id"] == post.id
        assert payload["feed_id"] == mine.id != theirs.id
        assert payload["title"] == raw.title
        assert payload["url"] == raw.url
        assert payload["source"] == {
            "id": source.id,
            "kind": "rss",
            "title": "Wire",
            "url": source.url,
        }
        assert payload["created_at"] == post.created_at.isoformat()
    assert by_raw[raws[0].id]["published_at"] == "2026-11-25T10:00:00+00:00"
    assert datetime.fromisoformat(by_raw[raws[0].id]["published_at"]) == PUBLISHED
    assert by_raw[raws[1].id]["published_at"] is None


@pytest.mark.django_db(transaction=True)
def test_it_pushes_nothing_when_the_transaction_rolls_back(owner, redis_client):
    source = _source()
    raw = _raw(source)
    feed = _feed(owner, source)
    channel = _subscribe(feed.id)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        assert len(_process([raw])) == 1
        raise Abort

    assert _drain(channel) == []
    assert Post.objects.count() == 0
    raw.refresh_from_db()
    assert raw.processed_at is None  # still owed: the sweep will pick it up
    # The control: the same run, committed, is announced.
    _process([raw])
    assert len(_drain(channel)) == 1


@pytest.mark.django_db(transaction=True)
def test_it_pushes_nothing_when_a_run_creates_nothing(owner, redis_client):
    source = _source()
    raw = _raw(source)
    feed = _feed(owner, source)
    _process([raw])
    channel = _subscribe(feed.id)

    assert _process([raw]) == []
    assert services.backfill_feed(feed_id=feed.id) == []
    assert _drain(channel) == []
