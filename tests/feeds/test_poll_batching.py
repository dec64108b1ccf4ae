"""Polls in batches: claims, reads and writes cost a fixed number of statements per batch, and a
batch behaves exactly like its polls one by one (what is stored, announced and scheduled)."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feeds import services, tasks
from feeds.models import PollLog, PollStatus, RawPost, Source
from feeds.services import polling, storing
from realtime.events import RAW_POSTS_CREATED
from realtime.models import OutboxEvent
from tests.feeds.helpers import poll as _poll
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db


def _sources(feed_server, n: int, *, prefix: str, items: int = 3) -> list[Source]:
    return [
        Source.objects.create(
            url=feed_server.serve(
                f"/{prefix}{k}.xml",
                rss(*[(f"{prefix}{k}-{i}", f"Item {i} of {prefix}{k}") for i in range(items)]),
            )
        )
        for k in range(n)
    ]


def _poll_batch(sources: list[Source]) -> tuple[list[int], int]:
    """Claim and poll `sources` as one batch: (raw post ids to process, statements run)."""
    claims = [services.claim_source_now(source_id=s.id) for s in sources]
    with CaptureQueriesContext(connection) as queries:
        ids = services.poll_sources([c for c in claims if c is not None])
    return ids, len(queries.captured_queries)


def test_it_stores_a_batch_of_new_feeds_with_the_same_statements_for_2_or_6(feed_server, settings):
    settings.POLL_STORE_BATCH = 100  # one group: the whole batch in one transaction

    ids_2, statements_2 = _poll_batch(_sources(feed_server, 2, prefix="a"))
    ids_6, statements_6 = _poll_batch(_sources(feed_server, 6, prefix="b"))

    assert statements_2 == statements_6
    assert len(ids_2) == 2 * 3 and len(ids_6) == 6 * 3
    assert sorted(ids_2 + ids_6) == sorted(RawPost.objects.values_list("id", flat=True))


def test_it_matches_known_items_of_many_sources_with_the_same_statements(feed_server, settings):
    settings.POLL_STORE_BATCH = 100
    few = _sources(feed_server, 2, prefix="c")
    many = _sources(feed_server, 6, prefix="d")
    for source in few + many:
        _poll(source)
        # Next read: items 0 to 2 as they were, item 3 new.
        name = urlsplit(source.url).path.strip("/").removesuffix(".xml")
        feed_server.serve(
            f"/{name}.xml", rss(*[(f"{name}-{i}", f"Item {i} of {name}") for i in range(4)])
        )

    ids_few, statements_few = _poll_batch(few)
    ids_many, statements_many = _poll_batch(many)

    # (An edited item costs an UPDATE of its own: edits are rare.)
    assert statements_few == statements_many
    assert len(ids_few) == 2 and len(ids_many) == 6  # per source: the new item
    assert sorted(
        RawPost.objects.filter(id__in=ids_few + ids_many).values_list("external_id", flat=True)
    ) == sorted(f"{p}{k}-3" for p, n in (("c", 2), ("d", 6)) for k in range(n))
    assert RawPost.objects.count() == 8 * 4  # nothing stored twice


def test_a_batch_stores_announces_and_schedules_like_polls_one_by_one(feed_server, settings):
    settings.POLL_STORE_BATCH = 100
    one_by_one = _sources(feed_server, 3, prefix="e")
    batched = _sources(feed_server, 3, prefix="f")

    single_ids = [raw_id for source in one_by_one for raw_id in _poll(source)]
    batch_ids, _ = _poll_batch(batched)

    def outcome(sources: list[Source]) -> list[tuple]:
        rows = []
        for source in sources:
            source.refresh_from_db()
            log = PollLog.objects.get(source=source)
            rows.append(
                (
                    source.claim_token,
                    source.last_status,
                    source.title,
                    source.etag != "",
                    source.current_interval,
                    source.last_new_item_at is not None,
                    log.status,
                    log.http_status,
                    log.items_seen,
                    log.items_new,
                    log.finished_at is not None,
                    RawPost.objects.filter(source=source, poll=log).count(),
                )
            )
        return rows

    assert outcome(batched) == outcome(one_by_one)
    assert len(batch_ids) == len(single_ids) == 9
    # One raw_posts.created per raw post, written with it.
    announced = Counter(
        event["raw_post"]["id"]
        for event in OutboxEvent.objects.filter(subject=RAW_POSTS_CREATED).values_list(
            "payload", flat=True
        )
    )
    assert announced == Counter(RawPost.objects.values_list("id", flat=True))


def test_a_batch_of_unchanged_feeds_is_recorded_with_the_same_statements_for_2_or_6(
    feed_server, settings
):
    settings.POLL_STORE_BATCH = 100
    few = _sources(feed_server, 2, prefix="g")
    many = _sources(feed_server, 6, prefix="h")
    for source in few + many:
        _poll(source)

    ids_few, statements_few = _poll_batch(few)
    ids_many, statements_many = _poll_batch(many)

    assert ids_few == ids_many == []
    assert statements_few == statements_many
    statuses = PollLog.objects.filter(source__in=few + many).values_list("status", flat=True)
    assert Counter(statuses) == {PollStatus.OK: 8, PollStatus.NOT_MODIFIED: 8}


def test_a_batch_store_that_fails_is_undone_and_each_poll_stored_on_its_own(
    feed_server, settings, monkeypatch
):
    """A concurrent store of one item (the Telegram gateway, a poll whose lease expired) makes
    the batch's single insert fail: every source is then stored one by one, and the item the
    other writer stored first is kept, not doubled."""
    settings.POLL_STORE_BATCH = 100
    clash, calm = _sources(feed_server, 2, prefix="i")
    plan_stores = storing._plan_stores

    def plan_then_race(reads):
        plans = plan_stores(reads)
        if (
            any(source.id == clash.id for source, _ in reads)
            and not RawPost.objects.filter(source=clash).exists()
        ):
            RawPost.objects.create(source=clash, external_id="i0-0", content_hash="other")
        return plans

    # Where it is looked up: the batch (polling) and, after the batch's savepoint rolled the
    # race back, the one-by-one fallback (storing.store_entries), which then meets it again.
    monkeypatch.setattr(polling, "_plan_stores", plan_then_race)
    monkeypatch.setattr(storing, "_plan_stores", plan_then_race)

    ids, _ = _poll_batch([clash, calm])

    assert Counter(RawPost.objects.values_list("source_id", "external_id")) == Counter(
        [(clash.id, f"i0-{i}") for i in range(3)] + [(calm.id, f"i1-{i}") for i in range(3)]
    )
    assert RawPost.objects.get(source=clash, external_id="i0-0").content_hash == "other"
    assert sorted(ids) == sorted(
        RawPost.objects.exclude(source=clash, external_id="i0-0").values_list("id", flat=True)
    )
    for source in (clash, calm):
        source.refresh_from_db()
        assert (source.claim_token, source.last_status) == (None, PollStatus.OK)
    announced = [
        payload["raw_post"]["id"]
        for payload in OutboxEvent.objects.values_list("payload", flat=True)
    ]
    assert sorted(announced) == sorted(ids)  # nothing announced twice, nothing rolled back


def test_it_claims_any_number_of_due_sources_with_the_same_statements(settings):
    settings.POLL_PER_HOST_CONCURRENCY = 1000
    now = timezone.now()

    def claim(n: int) -> tuple[int, int]:
        Source.objects.all().delete()
        for k in range(n):
            Source.objects.create(url=f"http://feeds.invalid/{n}-{k}.xml", next_poll_at=now)
        with CaptureQueriesContext(connection) as queries:
            claims = services.claim_due_sources(now=now)
        return len(claims), len(queries.captured_queries)

    (claimed_3, statements_3), (claimed_30, statements_30) = claim(3), claim(30)

    assert (claimed_3, claimed_30) == (3, 30)
    assert statements_3 == statements_30
    assert all(s.claim_token is not None for s in Source.objects.all())


@pytest.mark.parametrize(
    ("due", "most", "sizes"),
    [(0, 20, []), (1, 20, [1]), (20, 20, [20]), (21, 20, [11, 10]), (7, 3, [3, 2, 2])],
)
def test_dispatch_cuts_the_due_sources_into_the_fewest_even_batches(
    due, most, sizes, settings, django_capture_on_commit_callbacks
):
    settings.POLL_BATCH_SIZE = most
    settings.POLL_PER_HOST_CONCURRENCY = 1000
    for k in range(due):
        Source.objects.create(url=f"http://feeds.invalid/{k}.xml", next_poll_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert tasks.dispatch_due_sources() == due

    first_tasks = [send.__self__.tasks[0] for send in callbacks]
    assert [
        len(t.args[0]) if t.task == "feeds.tasks.poll_sources" else 1 for t in first_tasks
    ] == sizes
    claimed = [
        source_id
        for t in first_tasks
        for source_id in (
            [c[0] for c in t.args[0]] if t.task == "feeds.tasks.poll_sources" else [t.args[0]]
        )
    ]
    assert sorted(claimed) == sorted(Source.objects.values_list("id", flat=True))


def test_reads_not_started_in_a_quarter_of_the_time_limit_are_given_back(feed_server, settings):
    settings.POLL_THREADS = 1  # one read at a time, in the order of the claims
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 2  # reads must start within 0.5 s
    slow, *rest = _sources(feed_server, 4, prefix="late")
    feed_server.routes[urlsplit(slow.url).path].delay = 0.8
    claims = [services.claim_source_now(source_id=s.id) for s in (slow, *rest)]

    services.poll_sources([c for c in claims if c is not None])

    # The slow read started in time and is recorded; the three behind it were never started:
    # no request, no poll log, the claim given back and the source due at once.
    assert list(PollLog.objects.values_list("source_id", flat=True)) == [slow.id]
    assert [r.path for r in feed_server.requests] == [urlsplit(slow.url).path]
    now = timezone.now()
    for source in Source.objects.filter(id__in=[s.id for s in rest]):
        assert source.claim_token is None
        assert source.next_poll_at <= now
    assert len(services.claim_due_sources()) == 3
