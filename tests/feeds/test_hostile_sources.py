"""Hostile sources, polled end to end: each ends as a clear error on the source or a truncated
item, never a crash, a hang, an internal request or unbounded memory."""

from __future__ import annotations

import tracemalloc

import pytest

from feeds.models import PollLog, PollStatus, RawPost, Source
from feeds.parsing import MAX_ENTRIES
from tests.feeds.helpers import poll as _poll

pytestmark = pytest.mark.django_db


def _rss(items: str, *, prolog: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<rss version="2.0"><channel>'
        f"<title>Hostile</title><link>http://example.test/</link>{items}</channel></rss>"
    )


def test_an_external_entity_is_never_read(feed_server):
    body = _rss(
        "<item><title>&xxe;</title><guid>x</guid></item>",
        prolog='<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    )
    source = Source.objects.create(url=feed_server.serve("/xxe.xml", body))
    _poll(source)
    assert "root:" not in "".join(RawPost.objects.values_list("title", flat=True))
    assert "root:" not in source.last_error


def test_an_external_dtd_is_never_fetched(feed_server):
    dtd = feed_server.serve("/evil.dtd", '<!ENTITY leak "leaked">', content_type="text/plain")
    body = _rss(
        "<item><title>Hi &leak;</title><guid>d</guid></item>",
        prolog=f'<!DOCTYPE rss SYSTEM "{dtd}">',
    )
    source = Source.objects.create(url=feed_server.serve("/dtd.xml", body))
    _poll(source)
    assert feed_server.hits("/evil.dtd") == []
    assert "leaked" not in "".join(RawPost.objects.values_list("title", flat=True))


def test_billion_laughs_ends_without_expanding(feed_server):
    entities = '<!ENTITY lol "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10)
    )
    body = _rss(
        "<item><title>&lol9;</title><guid>b</guid></item>",
        prolog=f"<!DOCTYPE rss [{entities}]>",
    )
    source = Source.objects.create(url=feed_server.serve("/lol.xml", body))
    tracemalloc.start()
    try:
        _poll(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024  # fully expanded, the title alone would be ~3 GB
    assert all(len(t) < 10_000 for t in RawPost.objects.values_list("title", flat=True))
    assert source.last_status in (PollStatus.OK, PollStatus.NOT_A_FEED)


def test_a_feed_with_100000_items_is_truncated(feed_server):
    items = "".join(
        f"<item><title>Item {n}</title><guid>i{n}</guid></item>" for n in range(100_000)
    )
    source = Source.objects.create(url=feed_server.serve("/huge.xml", _rss(items)))
    new = _poll(source)
    assert len(new) == MAX_ENTRIES
    assert source.last_status == PollStatus.OK
    assert PollLog.objects.get(source=source).items_seen == MAX_ENTRIES


def test_a_5_mb_title_is_cut(feed_server):
    title = "A" * (5 * 1024 * 1024)
    body = _rss(f"<item><title>{title}</title><guid>t</guid><description>ok</description></item>")
    source = Source.objects.create(url=feed_server.serve("/title.xml", body))
    _poll(source)
    stored = RawPost.objects.get(source=source)
    assert 0 < len(stored.title) <= 1000
    assert source.last_status == PollStatus.OK


def test_invalid_utf8_is_stored_without_crashing(feed_server):
    body = _rss("<item><title>Caf\xe9 \xff\xfe ok</title><guid>u</guid></item>").encode("latin-1")
    source = Source.objects.create(url=feed_server.serve("/utf.xml", body))
    _poll(source)
    assert source.last_status in (PollStatus.OK, PollStatus.NOT_A_FEED)
    if source.last_status == PollStatus.OK:
        assert "ok" in RawPost.objects.get(source=source).title


def test_a_redirect_to_the_metadata_address_is_refused(feed_server):
    url = feed_server.serve(
        "/meta.xml", "", status=302, headers={"Location": "http://169.254.169.254/latest/"}
    )
    source = Source.objects.create(url=url)
    _poll(source)
    assert source.last_status == PollStatus.BLOCKED
    assert "169.254.169.254" in source.last_error
    assert source.error_count == 1


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/feed.xml", "file:///etc/passwd", "http://0x7f.0.0.1/feed.xml"],
)
def test_sources_naming_internal_addresses_are_refused_at_fetch_time(url, settings):
    settings.FETCH_ALLOWED_NETWORKS = ""
    # Stored behind the API's back (an old row, a direct insert): the fetcher still refuses.
    source = Source.objects.create(url=url)
    _poll(source)
    assert source.last_status == PollStatus.BLOCKED
    assert source.last_error
    assert not RawPost.objects.exists()
