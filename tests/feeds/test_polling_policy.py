"""When the next poll happens: adaptive intervals, server wishes, backoff, outages, host caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from feeds import services
from feeds.models import PollLog, PollStatus, Source
from tests.feeds.helpers import poll as _poll
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db


def _delay(source: Source) -> float:
    """Seconds from the end of the last poll to the next one, jitter (up to +10%) included."""
    return (source.next_poll_at - source.last_polled_at).total_seconds()


def _dated_feed(*items: tuple[str, datetime], ttl: int | None = None) -> str:
    body = "".join(
        f"<item><title>Item {g}</title><link>http://example.test/{g}</link><guid>{g}</guid>"
        f"<pubDate>{d:%a, %d %b %Y %H:%M:%S} GMT</pubDate>"
        f"<description>Text {g}</description></item>"
        for g, d in items
    )
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl is not None else ""
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Dated</title>'
        f"<link>http://example.test/</link>{ttl_tag}{body}</channel></rss>"
    )


def _hourly(n: int, *, gap_minutes: int = 60) -> list[tuple[str, datetime]]:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    return [(f"g{i}", start + timedelta(minutes=gap_minutes * i)) for i in range(n)]


def test_the_interval_follows_the_posting_rate(feed_server, settings):
    settings.POLL_MIN_INTERVAL_SECONDS = 60
    settings.POLL_MAX_INTERVAL_SECONDS = 24 * 3600
    busy = Source.objects.create(
        url=feed_server.serve("/busy.xml", _dated_feed(*_hourly(6, gap_minutes=10))),
        poll_interval=900,
    )
    slow = Source.objects.create(
        url=feed_server.serve("/slow.xml", _dated_feed(*_hourly(6, gap_minutes=12 * 60))),
        poll_interval=900,
    )
    _poll(busy)
    _poll(slow)

    # A new item every 10 minutes: poll every 5; every 12 hours: every 6 hours.
    assert busy.mean_item_gap == pytest.approx(600)
    assert busy.current_interval == 300
    assert 300 <= _delay(busy) <= 330
    assert slow.current_interval == 6 * 3600


def test_the_interval_stays_within_the_configured_bounds(feed_server, settings):
    settings.POLL_MIN_INTERVAL_SECONDS = 120
    settings.POLL_MAX_INTERVAL_SECONDS = 3600
    fast = Source.objects.create(
        url=feed_server.serve("/fast.xml", _dated_feed(*_hourly(5, gap_minutes=1)))
    )
    rare = Source.objects.create(
        url=feed_server.serve("/rare.xml", _dated_feed(*_hourly(5, gap_minutes=7 * 24 * 60)))
    )
    _poll(fast)
    _poll(rare)
    assert (fast.current_interval, rare.current_interval) == (120, 3600)


def test_a_quiet_source_is_polled_less_often_and_a_new_item_brings_it_back(feed_server, settings):
    settings.POLL_MIN_INTERVAL_SECONDS = 60
    items = _hourly(4, gap_minutes=20)
    url = feed_server.serve("/quiet.xml", _dated_feed(*items))
    source = Source.objects.create(url=url)
    _poll(source)
    assert source.current_interval == 600
    _poll(source)  # 304: nothing new
    _poll(source)
    assert source.current_interval == 864  # 600 * 1.2 * 1.2

    feed_server.serve("/quiet.xml", _dated_feed(*items, ("g9", items[-1][1])))
    Source.objects.filter(id=source.id).update(
        last_new_item_at=timezone.now() - timedelta(minutes=20)
    )
    _poll(source)
    assert source.current_interval < 864


def test_a_fixed_interval_source_keeps_its_interval(feed_server):
    url = feed_server.serve("/fixed.xml", _dated_feed(*_hourly(6, gap_minutes=1)))
    source = Source.objects.create(url=url, poll_interval=1800, adaptive=False)
    _poll(source)
    assert source.current_interval == 1800


def test_rss_ttl_is_honoured(feed_server, settings):
    settings.POLL_MIN_INTERVAL_SECONDS = 60
    url = feed_server.serve("/ttl.xml", _dated_feed(*_hourly(4, gap_minutes=5), ttl=90))
    source = Source.objects.create(url=url)
    _poll(source)
    assert source.current_interval == 90 * 60  # busy, but the publisher asked for 90 minutes


def test_cache_control_max_age_is_honoured(feed_server, settings):
    settings.POLL_MIN_INTERVAL_SECONDS = 60
    url = feed_server.serve(
        "/cc.xml",
        _dated_feed(*_hourly(4, gap_minutes=5)),
        headers={"Cache-Control": "public, max-age=2700"},
    )
    source = Source.objects.create(url=url)
    _poll(source)
    assert source.current_interval == 2700


def test_retry_after_defers_the_next_poll(feed_server, settings):
    settings.POLL_MAX_INTERVAL_SECONDS = 24 * 3600
    url = feed_server.serve(
        "/busy-server.xml", "slow down", status=429, headers={"Retry-After": "7200"}
    )
    source = Source.objects.create(url=url, poll_interval=60)
    _poll(source)
    assert source.last_status == PollStatus.HTTP_ERROR
    assert 7200 <= _delay(source) <= 7200 * 1.1


def test_errors_back_off_doubling_up_to_the_cap_and_a_success_resets(feed_server, settings):
    settings.POLL_MAX_INTERVAL_SECONDS = 1000
    url = feed_server.serve("/down.xml", "gone", status=500)
    source = Source.objects.create(url=url, poll_interval=100, adaptive=False)
    delays = []
    for _ in range(5):
        _poll(source)
        delays.append(_delay(source))
    assert [round(d, -1) // 100 for d in delays[:3]] == [2, 4, 8]  # 200, 400, 800 s (+jitter)
    assert 1000 <= delays[4] <= 1100  # capped
    assert source.error_count == 5 and source.active  # never disabled

    feed_server.serve("/down.xml", rss(("g1", "Back")))
    _poll(source)
    assert (source.error_count, source.last_error) == (0, "")
    assert 100 <= _delay(source) <= 110
    log = PollLog.objects.filter(source=source, status=PollStatus.HTTP_ERROR).first()
    assert log.error_class == "HTTPStatusError" and log.duration_ms is not None


def test_a_network_wide_outage_is_not_counted_against_each_source(settings):
    settings.OUTAGE_MIN_SOURCES = 3
    settings.FETCH_TIMEOUT_SECONDS = 2
    # Nothing listens on these ports: every poll fails on the network, as in an outage.
    sources = [
        Source.objects.create(url=f"http://127.0.0.1:{port}/feed.xml", poll_interval=120)
        for port in (9, 19, 29, 39)
    ]
    for source in sources:
        _poll(source)
    counted = [source.error_count for source in sources]
    outage = [PollLog.objects.get(source=source).outage for source in sources]

    # The first two failures look like the source's own; from the third on, everyone is down.
    assert counted == [1, 1, 0, 0]
    assert outage == [False, False, True, True]
    assert 120 <= _delay(sources[3]) <= 132  # retried at its usual pace, not backed off


def test_one_healthy_source_means_it_is_not_an_outage(feed_server, settings):
    settings.OUTAGE_MIN_SOURCES = 2
    ok = Source.objects.create(url=feed_server.serve("/ok.xml", rss(("g1", "One"))))
    _poll(ok)
    down = [Source.objects.create(url=f"http://127.0.0.1:{p}/x.xml") for p in (9, 19, 29)]
    for source in down:
        _poll(source)
    assert [source.error_count for source in down] == [1, 1, 1]


def test_a_host_gets_at_most_the_per_host_number_of_polls_at_once(settings):
    settings.POLL_PER_HOST_CONCURRENCY = 2
    due = timezone.now() - timedelta(minutes=1)
    same = [  # oldest first
        Source.objects.create(
            url=f"https://busy.example/{i}.xml", next_poll_at=due + timedelta(seconds=i)
        )
        for i in range(5)
    ]
    other = Source.objects.create(url="https://other.example/feed.xml", next_poll_at=due)

    first = {c.source_id for c in services.claim_due_sources()}
    second = {c.source_id for c in services.claim_due_sources()}

    assert first == {same[0].id, same[1].id, other.id}
    assert second == set()  # the host's two polls are still in flight
    Source.objects.filter(id=same[0].id).update(claim_token=None, claimed_until=None)
    assert {c.source_id for c in services.claim_due_sources()} == {same[2].id}


def test_telegram_sources_are_left_to_the_gateway_when_it_runs(settings):
    due = timezone.now() - timedelta(minutes=1)
    channel = Source.objects.create(kind="telegram", url="https://t.me/example", next_poll_at=due)
    settings.TELEGRAM_GATEWAY_ENABLED = True
    assert services.claim_due_sources() == []
    settings.TELEGRAM_GATEWAY_ENABLED = False
    assert [c.source_id for c in services.claim_due_sources()] == [channel.id]


def test_a_source_is_silent_after_much_longer_than_its_rhythm(settings):
    settings.SILENT_GAP_FACTOR = 5
    settings.SILENT_MIN_SECONDS = 3600
    now = timezone.now()
    hourly = Source(url="https://a.example/", mean_item_gap=3600, last_new_item_at=now)
    assert not hourly.is_silent
    hourly.last_new_item_at = now - timedelta(hours=6)
    assert hourly.is_silent
    assert not Source(url="https://b.example/").is_silent  # no rhythm known yet
    source = Source.objects.create(url="https://c.example/feed")
    assert source.host == "c.example"


def test_a_batch_poll_records_every_outcome_and_skips_claims_it_no_longer_holds(feed_server):
    fresh = Source.objects.create(url=feed_server.serve("/fresh.xml", rss(("g1", "One"))))
    same = Source.objects.create(url=feed_server.serve("/same.xml", rss(("s1", "Same"))))
    broken = Source.objects.create(url=feed_server.serve("/broken.xml", "nope", status=503))
    stale = Source.objects.create(url=feed_server.serve("/stale.xml", rss(("x1", "X"))))
    _poll(same)  # stored once; its next poll is answered 304
    claims = [services.claim_source_now(source_id=s.id) for s in (fresh, same, broken, stale)]
    Source.objects.filter(id=stale.id).update(claim_token=None)  # the claim was superseded

    new_ids = services.poll_sources(claims)

    for source in (fresh, same, broken, stale):
        source.refresh_from_db()
    assert new_ids == list(fresh.raw_posts.values_list("id", flat=True))  # the one new item
    latest = {
        s.id: PollLog.objects.filter(source=s).order_by("-id").first()
        for s in (fresh, same, broken)
    }
    assert latest[fresh.id].status == PollStatus.OK and latest[fresh.id].items_new == 1
    assert latest[same.id].status == PollStatus.NOT_MODIFIED
    assert latest[same.id].http_status == 304 and latest[same.id].finished_at is not None
    assert latest[broken.id].status == PollStatus.HTTP_ERROR
    assert not PollLog.objects.filter(source=stale).exists()  # not polled without its claim
    assert feed_server.hits("/stale.xml") == []
    assert (same.claim_token, same.last_status, same.error_count) == (None, "not_modified", 0)
    assert same.next_poll_at > timezone.now() and same.current_interval is not None
    assert (fresh.claim_token, broken.claim_token, broken.error_count) == (None, None, 1)
    # Run again with the same claims: all used up, nothing happens.
    assert services.poll_sources(claims) == []
    assert PollLog.objects.count() == 4
