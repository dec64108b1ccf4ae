"""Feed autodiscovery: <link rel="alternate"> on a page, confirmed by fetching the feed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feeds.discovery import discover_feeds, resolve_feed_url
from feeds.fetcher import FetchError, HTTPStatusError, fetch
from feeds.parsing import parse_feed
from tests.support.feedserver import SeenRequest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HTML = "text/html; charset=utf-8"


def _log(server, count: int) -> list[SeenRequest]:
    # FeedServer records a request after answering it: wait for the entry, time nothing.
    deadline = time.monotonic() + 5
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(server.requests)


def _web(name: str) -> bytes:
    return (FIXTURES / "web" / name).read_bytes()


def _feed(name: str) -> bytes:
    return (FIXTURES / "feeds" / name).read_bytes()


def test_it_finds_rss_links_in_document_order_made_absolute():
    found = discover_feeds(_web("with-rss.html"), "https://news.example/site/index.html")

    # Relative hrefs against the page; the repeated feed once; the hreflang alternate (no feed
    # type) left out; the WordPress-style application/json alternate after the real feeds.
    assert found == [
        "https://news.example/site/feed.xml",
        "https://news.example/comments/feed.xml",
        "https://news.example/wp-json/wp/v2/pages/2",
    ]


def test_it_finds_an_atom_link_relative_to_the_base_href():
    found = discover_feeds(_web("with-atom.html"), "https://science.example/index.html")

    assert found == ["https://science.example/science/atom.xml"]


def test_it_falls_back_to_feed_links_on_the_same_site():
    found = discover_feeds(_web("feed-anchor-only.html"), "https://blog.example/")

    assert found == ["https://blog.example/feed/"]  # not the other site's feed


def test_it_finds_nothing_on_a_page_without_feeds():
    assert discover_feeds(_web("no-articles.html"), "https://harbour.example/") == []
    assert discover_feeds(b"", "https://harbour.example/") == []
    assert discover_feeds(b"\x00\xff not html at all", "https://harbour.example/") == []


def test_it_resolves_a_site_url_to_its_rss_feed(feed_server):
    page = feed_server.serve("/site/", _web("with-rss.html"), content_type=HTML)
    feed_server.serve("/site/feed.xml", _feed("rss2.xml"))
    feed_server.serve("/comments/feed.xml", _feed("rss2.xml"))

    resolved = resolve_feed_url(page)

    assert resolved == feed_server.url("/site/feed.xml")
    result = fetch(resolved)
    assert parse_feed(result.body, content_type=result.content_type).title == "Fixture & Co News"
    log = _log(feed_server, 3)  # page, feed, and the test's own fetch of the feed
    assert "/comments/feed.xml" not in [r.path for r in log]  # the first candidate was a feed


def test_it_resolves_a_site_with_only_an_atom_link(feed_server):
    page = feed_server.serve("/science/", _web("with-atom.html"), content_type=HTML)
    feed_server.serve("/science/atom.xml", _feed("atom.xml"), content_type="application/atom+xml")

    assert resolve_feed_url(page) == feed_server.url("/science/atom.xml")


def test_it_keeps_a_feed_url_as_it_is(feed_server):
    url = feed_server.serve("/feed.xml", _feed("rss2.xml"))

    assert resolve_feed_url(url) == url
    assert len(_log(feed_server, 1)) == 1


def test_it_skips_a_candidate_that_is_not_a_feed(feed_server):
    page = feed_server.serve("/site/", _web("with-rss.html"), content_type=HTML)
    feed_server.serve("/site/feed.xml", _web("no-articles.html"), content_type=HTML)
    feed_server.serve("/comments/feed.xml", _feed("rss2.xml"))

    assert resolve_feed_url(page) == feed_server.url("/comments/feed.xml")


def test_it_returns_none_for_a_page_without_feeds(feed_server):
    page = feed_server.serve("/", _web("no-articles.html"), content_type=HTML)

    assert resolve_feed_url(page) is None
    assert [r.path for r in _log(feed_server, 1)] == ["/"]


def test_it_returns_none_for_something_neither_a_feed_nor_a_page(feed_server):
    url = feed_server.serve(
        "/logo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, content_type="image/png"
    )

    assert resolve_feed_url(url) is None


def test_it_says_when_the_advertised_feed_is_broken(feed_server):
    page = feed_server.serve("/science/", _web("with-atom.html"), content_type=HTML)
    feed_server.serve("/science/atom.xml", "Not found", status=404, content_type="text/plain")

    with pytest.raises(HTTPStatusError) as error:
        resolve_feed_url(page)

    assert error.value.http_status == 404
    assert "/science/atom.xml" in str(error.value)


def test_it_lets_a_fetch_error_for_the_url_itself_through(feed_server):
    url = feed_server.serve("/missing", "Not found", status=404, content_type="text/plain")

    with pytest.raises(FetchError, match="HTTP 404"):
        resolve_feed_url(url)
