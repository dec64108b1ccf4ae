"""Properties of `feeds.parsing.parse_feed` on hostile bytes: it returns clean entries or raises
NotAFeed, and nothing else, whatever the document (arbitrary bytes, or RSS/Atom/RDF/JSON Feed
built from hostile parts: markup and scripts in every field, entities, DOCTYPEs, control
characters, invalid UTF-8, wrong byte order marks, truncation)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds.parsing import MAX_ENTRIES, NotAFeed, ParsedFeed, parse_feed
from tests.fuzz.profiles import scaled
from tests.fuzz.reported import passing_over_reported_bugs
from tests.fuzz.safety import assert_clean_entry, assert_storable
from tests.fuzz.strategies import CANARY, json_feeds, url_values, xml_feeds


def _parse(body: bytes, **kwargs: str) -> ParsedFeed | None:
    try:
        return parse_feed(body, **kwargs)
    except NotAFeed as exc:
        assert str(exc), "NotAFeed without a message"
        return None


def _check(body: bytes, *, canary: str | None = None, **kwargs: str) -> None:
    with passing_over_reported_bugs():
        assert_clean_feed(_parse(body, **kwargs), canary=canary)


def assert_clean_feed(feed: ParsedFeed | None, *, canary: str | None = None) -> None:
    if feed is None:
        return
    assert_storable("feed title", feed.title)
    assert len(feed.title) <= 300
    assert feed.site_url == "" or feed.site_url.lower().startswith(("http://", "https://"))
    assert_storable("site_url", feed.site_url)
    assert feed.ttl_seconds is None or 0 < feed.ttl_seconds <= 7 * 86400
    assert len(feed.entries) <= MAX_ENTRIES
    for entry in feed.entries:
        assert_clean_entry(entry, canary=canary, parser=feed.parser)


_starts = st.sampled_from(
    [
        b"", b"<?xml version='1.0'?>", b"<rss version='2.0'><channel>",
        b"<feed xmlns='http://www.w3.org/2005/Atom'>", b"{",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [', b"\xef\xbb\xbf", b"\xff\xfe",
        b"<!DOCTYPE html><html>", b"<rdf:RDF>",
    ]
)  # fmt: skip


@settings(max_examples=scaled(150))
@given(
    body=st.one_of(
        st.binary(max_size=2048), st.builds(bytes.__add__, _starts, st.binary(max_size=512))
    )
)
@example(body=b"\x00")
@example(body=b"<rss><channel><item><title>\x00</title></item></channel></rss>")
def test_arbitrary_bytes_are_a_feed_or_not_a_feed(body: bytes) -> None:
    _check(body)


@settings(max_examples=scaled(200))
@given(
    body=xml_feeds,
    content_type=st.sampled_from(
        ["", "application/rss+xml", "text/html", "application/json; charset=x"]
    ),
    base_url=url_values,
)
def test_hostile_rss_atom_and_rdf_give_clean_entries_or_not_a_feed(
    body: bytes, content_type: str, base_url: str
) -> None:
    _check(body, content_type=content_type, base_url=base_url, canary=CANARY)


@settings(max_examples=scaled(150))
@given(body=json_feeds)
def test_hostile_json_feeds_give_clean_entries_or_not_a_feed(body: bytes) -> None:
    _check(body, content_type="application/feed+json", canary=CANARY)
