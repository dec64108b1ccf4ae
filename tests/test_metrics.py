"""/metrics: who may read it, and that every family is there and follows its data (real
PostgreSQL and Redis; each figure is read before and after the rows that move it)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import AgentRun
from feeds.models import PollLog, PollStatus, RawPost, Source
from infatium import metrics
from processing.models import Candidate, Post
from realtime import connections, counters, outbox
from tests.api.factories import FeedFactory, PostFactory, RawPostFactory, SourceFactory

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-please-0123456789"

FAMILIES = {
    # name as exposed: type
    "infatium_polls_last_hour": "gauge",
    "infatium_poll_duration_seconds": "histogram",
    "infatium_raw_posts_new_last_hour": "gauge",
    "infatium_raw_posts_unprocessed": "gauge",
    "infatium_candidates_waiting": "gauge",
    "infatium_posts_last_hour": "gauge",
    "infatium_processing_latency_seconds": "histogram",
    "infatium_agent_runs_total": "counter",
    "infatium_agent_tokens_total": "counter",
    "infatium_agent_cost_total": "counter",
    "infatium_agent_latency_seconds": "histogram",
    "infatium_sources": "gauge",
    "infatium_sources_failing": "gauge",
    "infatium_sources_silent": "gauge",
    "infatium_sources_overdue": "gauge",
    "infatium_sources_by_last_status": "gauge",
    "infatium_outbox_pending": "gauge",
    "infatium_outbox_lag_seconds": "gauge",
    "infatium_outbox_failing": "gauge",
    "infatium_ingest_dead_letters": "gauge",
    "infatium_websocket_connections": "gauge",
    "infatium_websocket_lagged_total": "counter",
}


@pytest.fixture(autouse=True)
def _token(settings, redis_client):  # redis_client: a flushed Redis database per test
    settings.METRICS_TOKEN = TOKEN


def scrape_text() -> str:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(scrape_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_it_shows_outbox_size_and_lag_to_a_scraper_with_the_token_only(settings):
    source = Source.objects.create(url="http://feeds.invalid/m.xml")
    raw = RawPost.objects.create(source=source, external_id="m1", content_hash="0" * 64)
    before = scrape()
    with transaction.atomic():
        outbox.record_raw_posts_created([raw])

    anonymous = Client().get("/metrics")
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    junk = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer n\u00f6pe")

    assert (anonymous.status_code, wrong.status_code, junk.status_code) == (403, 403, 403)
    after = scrape()
    assert value(before, "infatium_outbox_pending") == 0
    assert value(after, "infatium_outbox_pending") == 1
    assert value(after, "infatium_outbox_lag_seconds") >= 0


def test_it_lets_staff_read_metrics_without_a_token(admin_client, django_user_model):
    user = django_user_model.objects.create_user(username="plain", password="plain-pass-123")
    plain = Client()
    plain.force_login(user)

    assert admin_client.get("/metrics").status_code == 200
    assert plain.get("/metrics").status_code == 403


def test_it_exposes_every_family_with_its_type():
    exposed = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in text_string_to_metric_families(scrape_text())
    }

    for name, kind in FAMILIES.items():
        assert exposed.get(name) == kind, name


def test_it_counts_the_last_hours_polls_by_status_and_new_raw_posts():
    source = SourceFactory()
    now = timezone.now()
    before = scrape()
    for status, new, age in [
        (PollStatus.OK, 3, 10),
        (PollStatus.OK, 4, 20),
        (PollStatus.TIMEOUT, 0, 30),
        (PollStatus.OK, 50, 7200),  # two hours ago: outside the window
    ]:
        PollLog.objects.create(
            source=source, started_at=now - timedelta(seconds=age), status=status, items_new=new
        )

    after = scrape()

    assert value(before, "infatium_polls_last_hour", status="ok") == 0
    assert value(after, "infatium_polls_last_hour", status="ok") == 2
    assert value(after, "infatium_polls_last_hour", status="timeout") == 1
    assert value(after, "infatium_polls_last_hour", status="http_error") == 0
    assert value(before, "infatium_raw_posts_new_last_hour") == 0
    assert value(after, "infatium_raw_posts_new_last_hour") == 7


def test_it_gives_the_distribution_of_poll_durations():
    source = SourceFactory()
    for duration_ms in (50, 400, 3000):
        PollLog.objects.create(source=source, status=PollStatus.OK, duration_ms=duration_ms)
    PollLog.objects.create(source=source, status="")  # still running: no duration yet

    samples = scrape()

    bucket = "infatium_poll_duration_seconds_bucket"
    assert value(samples, bucket, le="0.1") == 1
    assert value(samples, bucket, le="0.5") == 2
    assert value(samples, bucket, le="2.5") == 2
    assert value(samples, bucket, le="5.0") == 3
    assert value(samples, bucket, le="+Inf") == 3
    assert value(samples, "infatium_poll_duration_seconds_gcount") == 3
    assert value(samples, "infatium_poll_duration_seconds_gsum") == pytest.approx(3.45)


def test_it_counts_posts_by_feed_and_their_latency_from_fetch():
    now = timezone.now()
    busy, quiet = FeedFactory(), FeedFactory()
    PostFactory(feed=busy, created_at=now - timedelta(hours=2))  # before the window
    before = scrape()
    for feed, fetched_ago in [(busy, 30), (busy, 200), (quiet, 4000)]:
        raw = RawPostFactory(fetched_at=now - timedelta(seconds=fetched_ago))
        PostFactory(feed=feed, raw_post=raw, created_at=now)
    # Inserted after the window's posts but created before the window (a long transaction):
    # neither does it hide the window's posts nor is it counted.
    PostFactory(feed=quiet, created_at=now - timedelta(minutes=65))

    after = scrape()

    assert value(before, "infatium_posts_last_hour", feed="other") == 0
    assert value(after, "infatium_posts_last_hour", feed=str(busy.id)) == 2
    assert value(after, "infatium_posts_last_hour", feed=str(quiet.id)) == 1
    assert value(after, "infatium_posts_last_hour", feed="other") == 0
    bucket = "infatium_processing_latency_seconds_bucket"
    assert value(before, bucket, le="+Inf") == 0
    assert value(after, bucket, le="15.0") == 0
    assert value(after, bucket, le="60.0") == 1
    assert value(after, bucket, le="300.0") == 2
    assert value(after, bucket, le="3600.0") == 2
    assert value(after, bucket, le="+Inf") == 3


def test_it_sums_the_feeds_beyond_the_busiest_as_other():
    now = timezone.now()
    feeds = [FeedFactory() for _ in range(3)]
    for feed, count in zip(feeds, (3, 2, 1), strict=True):
        for _ in range(count):
            PostFactory(feed=feed, created_at=now)

    top = metrics.posts_by_feed(since=now - timedelta(hours=1), top=1)

    assert top == [(str(feeds[0].id), 3), ("other", 3)]


def test_it_shows_the_processing_backlogs():
    raw = RawPostFactory()  # processed_at null: owed
    RawPostFactory(processed_at=timezone.now())
    before = scrape()
    Candidate.objects.create(feed=FeedFactory(), raw_post=raw)

    after = scrape()

    assert value(before, "infatium_raw_posts_unprocessed") == 1
    assert value(before, "infatium_candidates_waiting") == 0
    assert value(after, "infatium_candidates_waiting") == 1


def _run(**fields):
    defaults = {
        "agent": "relevance",
        "model": "openai:gpt-4o-mini",
        "prompt_version": "1",
        "item_key": "1",
        "input_hash": "0" * 64,
        "description_hash": "0" * 64,
    }
    return AgentRun.objects.create(**{**defaults, **fields})


def test_it_counts_todays_agent_runs_tokens_cost_and_latency():
    now = timezone.now()
    before = scrape()
    _run(input_tokens=100, output_tokens=20, cost=Decimal("0.0125"), latency_ms=800)
    _run(input_tokens=40, output_tokens=10, cost=Decimal("0.005"), latency_ms=3000)
    _run(cached=True, latency_ms=0)
    _run(error_code="timeout", error="timed out", latency_ms=30000)
    _run(agent="tag", model="offline", latency_ms=5)
    # Yesterday's: not today's spend.
    _run(input_tokens=999, cost=Decimal("9"), created_at=now - timedelta(days=1, hours=1))

    after = scrape()

    runs = "infatium_agent_runs_total"
    assert value(before, runs, agent="relevance", result="model") == 0
    assert value(after, runs, agent="relevance", result="model") == 2
    assert value(after, runs, agent="relevance", result="cached") == 1
    assert value(after, runs, agent="relevance", result="error") == 1
    assert value(after, runs, agent="tag", result="offline") == 1
    assert value(after, runs, agent="summarize", result="model") == 0
    tokens = "infatium_agent_tokens_total"
    assert value(after, tokens, agent="relevance", direction="input") == 140
    assert value(after, tokens, agent="relevance", direction="output") == 30
    assert value(after, "infatium_agent_cost_total", agent="relevance") == pytest.approx(0.0175)
    latency = "infatium_agent_latency_seconds_bucket"
    assert value(after, latency, agent="relevance", le="1.0") == 1
    assert value(after, latency, agent="relevance", le="5.0") == 2
    assert value(after, latency, agent="relevance", le="+Inf") == 3  # the cache hit left out
    assert value(after, "infatium_agent_latency_seconds_gcount", agent="tag") == 1


def test_it_reports_source_health(settings):
    now = timezone.now()
    SourceFactory(last_status="ok")
    before = scrape()
    SourceFactory(last_status="timeout", error_count=2)
    SourceFactory(  # posts about hourly; nothing for three days: silent
        last_status="not_modified",
        mean_item_gap=3600.0,
        last_new_item_at=now - timedelta(days=3),
    )
    SourceFactory(  # posts weekly; quiet for three days is normal for it
        last_status="ok", mean_item_gap=7 * 86400.0, last_new_item_at=now - timedelta(days=3)
    )
    SourceFactory(next_poll_at=now - timedelta(hours=1))  # never polled, an hour late
    SourceFactory(active=False, error_count=9)

    after = scrape()

    assert value(before, "infatium_sources", state="active") == 1
    assert value(after, "infatium_sources", state="active") == 5
    assert value(after, "infatium_sources", state="inactive") == 1
    assert value(before, "infatium_sources_failing") == 0
    assert value(after, "infatium_sources_failing") == 1  # the inactive one is not polled
    assert value(before, "infatium_sources_silent") == 0
    assert value(after, "infatium_sources_silent") == 1
    assert value(after, "infatium_sources_overdue") == 1
    assert value(after, "infatium_sources_by_last_status", status="ok") == 2
    assert value(after, "infatium_sources_by_last_status", status="timeout") == 1
    assert value(after, "infatium_sources_by_last_status", status="never") == 1
    assert settings.SILENT_MIN_SECONDS < 3 * 86400  # the silent case above depends on it


def test_it_counts_open_websocket_connections_of_every_process():
    async def open_two_close_one() -> None:
        assert await connections.register(1, "conn-a")
        assert await connections.register(2, "conn-b")
        assert await connections.register(2, "conn-c")
        await connections.unregister(2, "conn-c")

    before = scrape()
    asyncio.run(open_two_close_one())

    after = scrape()

    assert value(before, "infatium_websocket_connections") == 0
    assert value(after, "infatium_websocket_connections") == 2


def test_it_counts_lagging_websocket_clients():
    async def lag(times: int) -> None:
        for _ in range(times):
            counters.note_lagged()
        while counters._flushing:
            await asyncio.gather(*counters._flushing)

    before = scrape()
    asyncio.run(lag(3))

    after = scrape()

    assert value(before, "infatium_websocket_lagged_total") == 0
    assert value(after, "infatium_websocket_lagged_total") == 3


def test_it_still_answers_without_redis(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    samples = scrape()

    assert ("infatium_websocket_connections", ()) not in samples
    assert value(samples, "infatium_outbox_pending") == 0  # the database figures are there


def test_it_reads_a_bounded_number_of_queries_whatever_the_data(django_assert_max_num_queries):
    now = timezone.now()
    for _ in range(5):
        feed = FeedFactory()
        source = SourceFactory(last_status="ok")
        PollLog.objects.create(source=source, status=PollStatus.OK, duration_ms=10)
        PostFactory(feed=feed, raw_post=RawPostFactory(source=source), created_at=now)
        _run(feed=feed, input_tokens=1)

    with django_assert_max_num_queries(25):
        scrape()
    assert Post.objects.count() == 5
