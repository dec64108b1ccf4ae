from __future__ import annotations

import gzip
from datetime import timedelta

import pytest
from django.utils import timezone

from feeds import services
from feeds.models import PollLog, PollStatus, RawPost, Source
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db


def _claimed(source: Source) -> str:
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    return claim.token


def test_it_stores_new_items_once_and_reports_only_new_ids(feed_server):
    url = feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two")))
    source = Source.objects.create(url=url)

    first = services.poll_source(source_id=source.id, token=_claimed(source))
    feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two"), ("g3", "Three")))
    second = services.poll_source(source_id=source.id, token=_claimed(source))

    assert len(first) == 2
    assert RawPost.objects.get(id=second[0]).external_id == "g3"
    assert len(second) == 1
    assert RawPost.objects.filter(source=source).count() == 3


def _poll(source: Source) -> list[int]:
    return services.poll_source(source_id=source.id, token=_claimed(source))


def _assert_next_poll_in(source: Source, before, after, seconds: int) -> None:
    # The scheduler adds up to 10% jitter to the interval.
    assert before + timedelta(seconds=seconds) <= source.next_poll_at
    assert source.next_poll_at <= after + timedelta(seconds=seconds * 1.1)


def test_it_records_a_successful_poll(feed_server):
    url = feed_server.serve("/ok.xml", rss(("g1", "One"), ("g2", "Two"), title="Fixture feed"))
    source = Source.objects.create(url=url)

    new_ids = _poll(source)

    log = PollLog.objects.get(source=source)
    assert log.status == PollStatus.OK
    assert log.http_status == 200
    assert (log.items_seen, log.items_new) == (2, 2)
    assert log.bytes_received == len(feed_server.routes["/ok.xml"].body)
    assert log.finished_at is not None
    assert sorted(new_ids) == sorted(RawPost.objects.filter(poll=log).values_list("id", flat=True))
    source.refresh_from_db()
    assert source.title == "Fixture feed"  # learned from the feed when the curator left it blank
    assert source.site_url == "http://example.test/"
    assert source.last_status == PollStatus.OK
    assert (source.error_count, source.last_error) == (0, "")


def test_it_keeps_a_title_the_curator_set(feed_server):
    url = feed_server.serve("/titled.xml", rss(("g1", "One"), title="Upstream title"))
    source = Source.objects.create(url=url, title="My title")

    _poll(source)

    source.refresh_from_db()
    assert source.title == "My title"


def test_it_sends_the_fetcher_user_agent(feed_server, settings):
    settings.FETCH_USER_AGENT = "InfatiumTest/1.0"
    url = feed_server.serve("/ua.xml", rss(("g1", "One")))

    _poll(Source.objects.create(url=url))

    assert feed_server.hits("/ua.xml")[0].headers["User-Agent"] == "InfatiumTest/1.0"


def test_it_revalidates_with_if_none_match_and_parses_nothing_on_304(feed_server):
    url = feed_server.serve("/etag.xml", rss(("g1", "One")))
    source = Source.objects.create(url=url, poll_interval=300, adaptive=False)
    _poll(source)
    source.refresh_from_db()
    assert source.etag.startswith('"')
    raw_posts = RawPost.objects.count()

    before = timezone.now()
    second = _poll(source)
    after = timezone.now()

    first_hit, second_hit = feed_server.hits("/etag.xml")
    assert "If-None-Match" not in first_hit.headers
    assert second_hit.headers["If-None-Match"] == source.etag
    assert second_hit.status == 304
    assert second == []
    assert RawPost.objects.count() == raw_posts
    log = PollLog.objects.filter(source=source).latest("started_at")
    assert log.status == PollStatus.NOT_MODIFIED
    assert log.http_status == 304
    assert (log.items_seen, log.items_new) == (0, 0)
    etag = source.etag
    source.refresh_from_db()
    assert source.last_status == PollStatus.NOT_MODIFIED
    assert source.etag == etag  # still valid for the next poll
    assert source.error_count == 0
    _assert_next_poll_in(source, before, after, 300)


def test_it_fetches_again_when_the_etag_no_longer_matches(feed_server):
    url = feed_server.serve("/changing.xml", rss(("g1", "One")))
    source = Source.objects.create(url=url)
    _poll(source)
    source.refresh_from_db()
    old_etag = source.etag
    feed_server.serve("/changing.xml", rss(("g1", "One"), ("g2", "Two")))

    new_ids = _poll(source)

    assert feed_server.hits("/changing.xml")[1].status == 200
    assert [RawPost.objects.get(id=i).external_id for i in new_ids] == ["g2"]
    source.refresh_from_db()
    assert source.etag not in ("", old_etag)


def test_it_revalidates_with_if_modified_since_and_parses_nothing_on_304(feed_server):
    stamp = "Wed, 25 Nov 2026 10:00:00 GMT"
    url = feed_server.serve("/lm.xml", rss(("g1", "One")), etag=False, last_modified=stamp)
    source = Source.objects.create(url=url, poll_interval=1200, adaptive=False)
    _poll(source)
    source.refresh_from_db()
    assert (source.etag, source.last_modified) == ("", stamp)

    before = timezone.now()
    second = _poll(source)
    after = timezone.now()

    first_hit, second_hit = feed_server.hits("/lm.xml")
    assert "If-Modified-Since" not in first_hit.headers
    assert "If-None-Match" not in second_hit.headers
    assert second_hit.headers["If-Modified-Since"] == stamp
    assert second_hit.status == 304
    assert second == []
    assert RawPost.objects.filter(source=source).count() == 1
    log = PollLog.objects.filter(source=source).latest("started_at")
    assert (log.status, log.http_status, log.items_seen) == (PollStatus.NOT_MODIFIED, 304, 0)
    source.refresh_from_db()
    assert source.last_modified == stamp
    _assert_next_poll_in(source, before, after, 1200)


def test_it_stores_an_item_repeated_inside_one_document_once(feed_server):
    url = feed_server.serve("/dup.xml", rss(("g1", "First copy"), ("g2", "Two"), ("g1", "Again")))
    source = Source.objects.create(url=url)

    new_ids = _poll(source)

    assert len(new_ids) == 2
    assert RawPost.objects.get(source=source, external_id="g1").title == "First copy"
    log = PollLog.objects.get(source=source)
    assert (log.items_seen, log.items_new) == (3, 2)


def test_it_keeps_the_same_guid_apart_in_two_sources(feed_server):
    a = Source.objects.create(url=feed_server.serve("/a1.xml", rss(("shared", "In A"))))
    b = Source.objects.create(url=feed_server.serve("/b1.xml", rss(("shared", "In B"))))

    assert len(_poll(a)) == 1
    assert len(_poll(b)) == 1
    assert sorted(RawPost.objects.values_list("title", flat=True)) == ["In A", "In B"]


def test_it_accepts_a_gzip_encoded_feed(feed_server):
    body = rss(("g1", "Compressed")).encode()
    url = feed_server.serve(
        "/gz.xml", gzip.compress(body), headers={"Content-Encoding": "gzip"}, etag=False
    )
    source = Source.objects.create(url=url)

    new_ids = _poll(source)

    assert [RawPost.objects.get(id=i).title for i in new_ids] == ["Compressed"]


def test_it_follows_a_redirect_and_resolves_links_against_the_final_url(feed_server):
    feed_server.serve(
        "/moved.xml", b"", status=301, headers={"Location": "/new/feed.xml"}, etag=False
    )
    feed_server.serve(
        "/new/feed.xml",
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        "<item><title>Rel</title><guid>r1</guid><link>item/1</link></item></channel></rss>",
    )
    source = Source.objects.create(url=feed_server.url("/moved.xml"))

    [raw_id] = _poll(source)

    assert RawPost.objects.get(id=raw_id).url == feed_server.url("/new/item/1")
