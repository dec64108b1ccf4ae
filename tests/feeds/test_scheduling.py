"""Claims: which sources are due, that each due source is polled by exactly one worker, and that
a stale or repeated poll does nothing."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from itertools import count

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from feeds import services
from feeds.models import PollLog, RawPost, Source
from tests.support.feedserver import rss

_numbers = count(1)


def _source(*, minutes_ago: float = 1, **fields: object) -> Source:
    fields.setdefault("url", f"http://feeds.invalid/{next(_numbers)}.xml")
    fields.setdefault("next_poll_at", timezone.now() - timedelta(minutes=minutes_ago))
    return Source.objects.create(**fields)


@pytest.mark.django_db
def test_it_claims_only_active_due_sources_oldest_first():
    now = timezone.now()
    newer = _source(minutes_ago=1)
    oldest = _source(minutes_ago=30)
    middle = _source(minutes_ago=10)
    _source(minutes_ago=60, active=False)
    _source(minutes_ago=-5)  # due in five minutes

    claims = services.claim_due_sources(now=now)

    assert [c.source_id for c in claims] == [oldest.id, middle.id, newer.id]
    assert len({c.token for c in claims}) == 3


@pytest.mark.django_db
def test_it_claims_at_most_limit_sources_and_leaves_the_rest_due():
    now = timezone.now()
    sources = [_source(minutes_ago=50 - i) for i in range(5)]

    first = services.claim_due_sources(now=now, limit=2)
    second = services.claim_due_sources(now=now, limit=2)

    assert [c.source_id for c in first] == [sources[0].id, sources[1].id]
    assert [c.source_id for c in second] == [sources[2].id, sources[3].id]


@pytest.mark.django_db
def test_it_moves_a_claimed_source_past_its_lease():
    now = timezone.now()
    source = _source()

    [claim] = services.claim_due_sources(now=now)

    source.refresh_from_db()
    lease_end = now + timedelta(seconds=settings.POLL_LEASE_SECONDS)
    assert str(source.claim_token) == claim.token
    assert source.claimed_until == lease_end
    assert source.next_poll_at == lease_end


@pytest.mark.django_db
def test_it_does_not_claim_a_claimed_source_again_while_the_lease_holds():
    now = timezone.now()
    _source()
    assert len(services.claim_due_sources(now=now)) == 1

    just_before_lease_end = now + timedelta(seconds=settings.POLL_LEASE_SECONDS - 1)

    assert services.claim_due_sources(now=now) == []
    assert services.claim_due_sources(now=just_before_lease_end) == []


@pytest.mark.django_db
def test_it_reclaims_an_expired_lease_with_a_new_token_and_ignores_the_old_poll(feed_server):
    url = feed_server.serve("/lease.xml", rss(("g1", "One")))
    source = _source(url=url)
    now = timezone.now()
    [old] = services.claim_due_sources(now=now)

    after_lease = now + timedelta(seconds=settings.POLL_LEASE_SECONDS + 1)
    [new] = services.claim_due_sources(now=after_lease)

    assert new.source_id == source.id
    assert new.token != old.token
    assert services.poll_source(source_id=source.id, token=old.token) == []
    assert feed_server.hits("/lease.xml") == []
    assert len(services.poll_source(source_id=source.id, token=new.token)) == 1
    assert len(feed_server.hits("/lease.xml")) == 1


@pytest.mark.django_db(transaction=True)
def test_it_gives_each_due_source_to_exactly_one_of_two_concurrent_dispatchers(settings):
    settings.POLL_PER_HOST_CONCURRENCY = 100  # one host: the per-host cap is not under test
    past = timezone.now() - timedelta(minutes=5)
    Source.objects.bulk_create(
        [Source(url=f"http://feeds.invalid/c{i}.xml", next_poll_at=past) for i in range(50)]
    )
    all_ids = set(Source.objects.values_list("id", flat=True))
    start = threading.Barrier(2)
    results: list[list[services.Claim]] = [[], []]
    errors: list[BaseException] = []

    def dispatcher(slot: int) -> None:
        try:
            start.wait(timeout=10)
            # Small batches so the two dispatchers interleave many times.
            while batch := services.claim_due_sources(limit=5):
                results[slot].extend(batch)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    claimed = [c.source_id for c in results[0] + results[1]]
    assert sorted(claimed) == sorted(all_ids)  # every source once, none twice
    tokens = {str(t) for t in Source.objects.values_list("claim_token", flat=True)}
    assert tokens == {c.token for c in results[0] + results[1]}


@pytest.mark.django_db
def test_it_refuses_poll_now_while_a_claim_is_live():
    source = _source(minutes_ago=-60)  # not due: "poll now" does not care

    first = services.claim_source_now(source_id=source.id)
    second = services.claim_source_now(source_id=source.id)

    assert first is not None
    assert second is None
    source.refresh_from_db()
    assert str(source.claim_token) == first.token


@pytest.mark.django_db
def test_it_allows_poll_now_once_the_previous_claim_expired():
    source = _source()
    first = services.claim_source_now(source_id=source.id)
    assert first is not None
    Source.objects.filter(id=source.id).update(claimed_until=timezone.now() - timedelta(seconds=1))

    second = services.claim_source_now(source_id=source.id)

    assert second is not None
    assert second.token != first.token


@pytest.mark.django_db
def test_it_refuses_a_scheduled_claim_while_a_poll_now_claim_is_live():
    source = _source()
    assert services.claim_source_now(source_id=source.id) is not None

    assert services.claim_due_sources() == []


@pytest.mark.django_db
def test_it_does_not_fetch_under_a_wrong_token(feed_server):
    url = feed_server.serve("/wrong.xml", rss(("g1", "One")))
    source = _source(url=url)
    assert services.claim_source_now(source_id=source.id) is not None

    result = services.poll_source(source_id=source.id, token="00000000-0000-0000-0000-000000000000")

    assert result == []
    assert feed_server.hits("/wrong.xml") == []
    assert PollLog.objects.count() == 0


@pytest.mark.django_db
def test_it_does_not_fetch_an_unclaimed_source(feed_server):
    url = feed_server.serve("/unclaimed.xml", rss(("g1", "One")))
    source = _source(url=url)

    assert source.claim_token is None

    assert services.poll_source(source_id=source.id, token=str(uuid.uuid4())) == []
    assert feed_server.hits("/unclaimed.xml") == []


@pytest.mark.django_db
def test_it_does_nothing_when_a_finished_poll_is_run_again(feed_server):
    url = feed_server.serve("/again.xml", rss(("g1", "One"), ("g2", "Two")))
    source = _source(url=url)
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    first = services.poll_source(source_id=source.id, token=claim.token)
    source.refresh_from_db()
    next_poll_at = source.next_poll_at

    second = services.poll_source(source_id=source.id, token=claim.token)

    assert len(first) == 2
    assert second == []
    assert RawPost.objects.count() == 2
    assert PollLog.objects.count() == 1
    assert len(feed_server.hits("/again.xml")) == 1
    source.refresh_from_db()
    assert source.next_poll_at == next_poll_at
    assert source.claim_token is None


@pytest.mark.django_db
def test_it_releases_the_claim_and_schedules_the_next_poll_after_success(feed_server):
    url = feed_server.serve("/ok.xml", rss(("g1", "One")))
    source = _source(url=url, poll_interval=600)
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    before = timezone.now()

    services.poll_source(source_id=source.id, token=claim.token)

    after = timezone.now()
    source.refresh_from_db()
    assert source.claim_token is None
    assert source.claimed_until is None
    assert before + timedelta(seconds=600) <= source.next_poll_at
    assert source.next_poll_at <= after + timedelta(seconds=660)  # at most 10% jitter
    assert source.last_status == "ok"
    assert before <= source.last_success_at <= after
    # A finished poll frees the source for "poll now" at once.
    assert services.claim_source_now(source_id=source.id) is not None
