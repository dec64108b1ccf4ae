"""Web page sources through `read_web_page`, against a real HTTP server serving fixture pages."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feeds import services, web
from feeds.models import PollLog, PollStatus, RawPost, Source, SourceKind
from feeds.parsing import NotAFeed
from feeds.web import read_web_page
from tests.support.feedserver import SeenRequest

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "web"
HTML = "text/html; charset=utf-8"

LISTING = "/news/"
ARTICLES = {
    "/news/2026/11/24/harbour-crane-strike-ends-after-nine-days": "article-crane-strike.html",
    "/news/2026/11/23/council-approves-tram-line-to-the-eastern-docks": "article-tram-line.html",
    "/news/2026/11/23/ferry-timetable-winter-changes": "article-ferry-timetable.html",
    "/news/2026/11/22/live-blog-storm-ciaran-updates": "article-live-blog.html",
    "/news/2026/11/21/old-lighthouse-reopens-as-museum": "article-lighthouse.html",
}
CRANE, TRAM, FERRY, LIVE, LIGHTHOUSE = ARTICLES


class Known:
    """The `known` callable a reader gets: answers from `stored`, records what it was asked."""

    def __init__(self, stored: Iterable[str] = ()) -> None:
        self.stored = set(stored)
        self.asked: list[list[str]] = []

    def __call__(self, external_ids: Iterable[str]) -> set[str]:
        ids = list(external_ids)
        self.asked.append(ids)
        return self.stored & set(ids)


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def site(feed_server):
    """The Harbour Ledger: a listing at /news/ and its five articles."""
    feed_server.serve(
        LISTING,
        _fixture("listing.html"),
        content_type=HTML,
        headers={"Cache-Control": "max-age=1800"},
    )
    for path, name in ARTICLES.items():
        feed_server.serve(path, _fixture(name), content_type=HTML)
    return feed_server


def _source(server, path: str = LISTING, **fields) -> Source:
    return Source.objects.create(kind=SourceKind.WEB, url=server.url(path), **fields)


def _etag(body: bytes) -> str:
    # What FeedServer sends.
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _log(server, count: int) -> list[SeenRequest]:
    """The server's request log once it holds `count` requests. FeedServer records a request
    after answering it, so the client can finish before the entry is written; this waits for
    that, it does not time anything."""
    deadline = time.monotonic() + 5
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(server.requests)


def _paths(log: list[SeenRequest], path: str | None = None) -> list[str]:
    return [r.path for r in log if r.path == path or (path is None and r.path in ARTICLES)]


def test_it_finds_exactly_the_article_links_of_a_listing(site):
    known = Known()

    read = read_web_page(_source(site), known)

    # In page order; the relative link resolved against /news/; the utm-tagged duplicate, the
    # '#comments' link and 'Read more' folded into their articles; nav, tags, categories,
    # authors, sign-in, pagination, the sidebar, the partner site, the PDF and the footer left out.
    expected = [site.url(path) for path in ARTICLES]
    assert known.asked == [expected]
    assert [e.external_id for e in read.entries] == expected
    log = _log(site, 6)
    assert sorted(r.path for r in log) == sorted([LISTING, *ARTICLES])


def test_it_finds_article_links_on_a_plain_listing_without_article_markup(feed_server):
    # No <article>, <main> or linked headings: furniture is told by ids and classes (header,
    # menu, sidebar, footer), and the layout wrapper that says "with-sidebar" is not furniture.
    # Served as ISO-8859-1 with the charset only in a <meta>.
    feed_server.serve("/", _fixture("listing-plain.html"), content_type="text/html")
    stories = [
        "/2026/11/25/fishing-quotas-cut-for-next-season.html",
        "/2026/11/24/new-pier-lights-switched-on.html",
        "/stories/48213",
        "/?p=4821",
        "/2026/11/21/cafe-on-the-quay-wins-award.html",
    ]
    for path in stories:
        feed_server.serve(path, _fixture("article-ferry-timetable.html"), content_type=HTML)
    known = Known([feed_server.url("/stories/48213")])

    read = read_web_page(_source(feed_server, "/"), known)

    assert known.asked == [[feed_server.url(path) for path in stories]]
    assert read.title == "Quayside Weekly - Café and harbour news"
    new = [path for path in stories if path != "/stories/48213"]
    assert [e.url for e in read.entries] == [feed_server.url(path) for path in new]
    assert sorted(r.path for r in _log(feed_server, 5)) == sorted(["/", *new])


def test_it_takes_at_most_max_articles_links_from_the_top(site):
    known = Known()

    read = read_web_page(_source(site, config={"max_articles": 2}), known)

    assert known.asked == [[site.url(CRANE), site.url(TRAM)]]
    assert len(read.entries) == 2


def test_it_refuses_a_max_articles_that_is_not_a_positive_integer(site):
    with pytest.raises(NotAFeed, match="max_articles in the source's config must be a positive"):
        read_web_page(_source(site, config={"max_articles": "lots"}), Known())


def test_it_extracts_an_articles_main_text_and_metadata(site):
    read = read_web_page(_source(site), Known())

    crane = next(e for e in read.entries if e.url == site.url(CRANE))
    assert "signed an agreement on a new shift rota" in crane.text
    assert "who led the negotiations for the union" in crane.text
    assert "Port and shipping desk navigation" not in crane.text  # the site's menu
    assert "Crane drivers vote to strike" not in crane.text  # the related-links aside
    assert "The Harbour Ledger" not in crane.text  # header and footer
    assert crane.title == "Harbour crane strike ends after nine days"
    assert crane.author == "Mira Santos"
    assert crane.published_at == datetime(2026, 11, 24, 16, 40, tzinfo=UTC)
    assert crane.link_key  # an identity rung for cross-source dedup
    # Links inside the article are absolute.
    assert f'href="{site.url("/documents/crane-agreement-summary")}"' in crane.html


def test_it_keeps_an_article_without_text_as_its_title_and_link(site):
    read = read_web_page(_source(site), Known())

    live = next(e for e in read.entries if e.url == site.url(LIVE))
    assert live.title == "Live: storm warnings along the coast"
    assert (live.text, live.html) == ("", "")
    assert len(read.entries) == 5


def test_it_fetches_an_article_only_once(site):
    source = _source(site)
    first = read_web_page(source, Known())

    second = read_web_page(source, Known(e.external_id for e in first.entries))

    assert len(first.entries) == 5
    assert second.entries == []
    log = _log(site, 7)
    assert sorted(_paths(log)) == sorted(ARTICLES)  # each exactly once
    assert len(_paths(log, LISTING)) == 2


def test_it_fetches_at_most_the_per_poll_cap_and_the_rest_next_time(site, settings):
    settings.WEB_MAX_FETCHES_PER_POLL = 2
    source = _source(site)
    stored: set[str] = set()

    batches = []
    for _ in range(3):
        read = read_web_page(source, Known(stored))
        batches.append([e.url for e in read.entries])
        stored.update(e.external_id for e in read.entries)

    assert batches == [
        [site.url(CRANE), site.url(TRAM)],
        [site.url(FERRY), site.url(LIVE)],
        [site.url(LIGHTHOUSE)],
    ]
    log = _log(site, 8)
    assert sorted(_paths(log)) == sorted(ARTICLES)
    assert len(_paths(log, LISTING)) == 3


def test_it_does_not_keep_the_listing_validators_while_articles_wait(site, settings):
    settings.WEB_MAX_FETCHES_PER_POLL = 2
    source = _source(site)

    stored: set[str] = set()
    etags = []
    for _ in range(3):
        read = read_web_page(source, Known(stored))
        stored.update(e.external_id for e in read.entries)
        etags.append(read.etag)

    # While articles wait, a 304 next time would leave them unread until the listing changes.
    assert etags[:2] == ["", ""]
    assert etags[2] == _etag(site.routes[LISTING].body)
    assert len(stored) == 5


def test_it_reads_the_listing_title_validators_and_freshness(site):
    read = read_web_page(_source(site), Known())

    listing = site.routes[LISTING].body
    assert read.title == "Latest news | The Harbour Ledger"
    assert read.site_url == site.url(LISTING)
    assert read.http_status == 200
    assert read.etag == _etag(listing)
    assert read.min_interval == 1800
    assert read.bytes_received == len(listing) + sum(
        len(site.routes[path].body) for path in ARTICLES
    )


def test_it_answers_not_modified_without_fetching_articles(site):
    source = _source(site)
    first = read_web_page(source, Known())
    source.etag = first.etag

    again = read_web_page(source, Known())

    assert again.not_modified
    assert again.entries == []
    log = _log(site, 7)
    assert [r.status for r in log if r.path == LISTING] == [200, 304]
    assert len(_paths(log)) == 5


def test_it_follows_the_sources_link_selector(site):
    for number in (10421, 10422, 10423):
        site.serve(f"/briefs/{number}", _fixture("article-ferry-timetable.html"), content_type=HTML)
    known = Known()

    read_web_page(_source(site, config={"link_selector": "section.briefs li > a"}), known)

    assert known.asked == [[site.url(f"/briefs/{n}") for n in (10421, 10422, 10423)]]


def test_it_refuses_an_invalid_link_selector_clearly(site):
    source = _source(site, config={"link_selector": "article h2 > a["})

    with pytest.raises(NotAFeed) as error:
        read_web_page(source, Known())

    assert "invalid link selector 'article h2 > a['" in str(error.value)
    assert site.requests == []


def test_it_takes_the_content_selectors_element_sanitized(site):
    source = _source(site, config={"content_selector": "div.entry-content"})

    read = read_web_page(source, Known())

    crane = next(e for e in read.entries if e.url == site.url(CRANE))
    assert crane.text.startswith("The nine-day strike that halted every container crane")
    assert "Harbour crane strike ends" not in crane.text  # the headline is outside the element
    # The element holds a <script> and an onclick handler; neither is stored.
    assert "<script" not in crane.html and "INJECTED BY SCRIPT" not in crane.text
    assert "onclick" not in crane.html and "trackRead" not in crane.html
    assert "<p>" in crane.html
    # Where the selector matches nothing, the extractor still reads the article.
    tram = next(e for e in read.entries if e.url == site.url(TRAM))
    assert "voted 31 to 12" in tram.text


def test_it_sanitizes_extracted_html(site):
    read = read_web_page(_source(site), Known())

    for entry in read.entries:
        assert "<script" not in entry.html
        assert "onclick" not in entry.html and "onerror" not in entry.html
    lighthouse = next(e for e in read.entries if e.url == site.url(LIGHTHOUSE))
    # The image stays, with its relative src resolved and its handler gone.
    assert f'src="{site.url("/news/img/lighthouse.jpg")}"' in lighthouse.html


def test_it_reports_a_page_without_article_links_clearly(feed_server):
    feed_server.serve("/", _fixture("no-articles.html"), content_type=HTML)

    with pytest.raises(NotAFeed) as error:
        read_web_page(_source(feed_server, "/"), Known())

    assert str(error.value) == (
        f"no article links found on {feed_server.url('/')}; "
        "set a link selector in the source's config"
    )
    assert error.value.http_status == 200


def test_it_points_to_the_feed_a_page_without_articles_names(feed_server):
    feed_server.serve("/site/", _fixture("with-rss.html"), content_type=HTML)

    with pytest.raises(NotAFeed) as error:
        read_web_page(_source(feed_server, "/site/"), Known())

    assert "no article links found" in str(error.value)
    assert f"the page names a feed, {feed_server.url('/site/feed.xml')}" in str(error.value)


def test_it_says_a_feed_url_is_a_feed_not_a_web_page(feed_server):
    body = (FIXTURES.parent / "feeds" / "rss2.xml").read_bytes()
    feed_server.serve("/feed.xml", body, content_type="application/rss+xml")

    with pytest.raises(NotAFeed, match="is a feed, not a web page: add it as an RSS source"):
        read_web_page(_source(feed_server, "/feed.xml"), Known())


def test_it_skips_an_article_that_fails_and_reads_it_on_a_later_poll(site):
    site.serve(FERRY, "Not found", status=404, content_type="text/plain")
    source = _source(site)

    first = read_web_page(source, Known())
    site.serve(FERRY, _fixture("article-ferry-timetable.html"), content_type=HTML)
    second = read_web_page(source, Known(e.external_id for e in first.entries))

    assert [e.url for e in first.entries] == [site.url(p) for p in ARTICLES if p != FERRY]
    assert first.etag == ""  # the listing is read in full next time
    assert [e.url for e in second.entries] == [site.url(FERRY)]
    assert "no longer sail at one o'clock" in second.entries[0].text


def test_it_keeps_an_article_that_keeps_failing_as_its_title_and_link(site, settings, redis_client):
    settings.WEB_ARTICLE_MAX_ATTEMPTS = 3
    site.serve(FERRY, "Gone", status=410, content_type="text/plain")
    source = _source(site)
    stored: set[str] = set()

    reads = []
    for _ in range(4):
        read = read_web_page(source, Known(stored))
        stored.update(e.external_id for e in read.entries)
        reads.append(read)
        if not read.not_modified:  # what a poll keeps
            source.etag, source.last_modified = read.etag, read.last_modified

    # Two polls skip it and read the listing in full again; the third keeps it as title and
    # link, so the listing's validators are kept and the fourth poll is a 304.
    assert [len(r.entries) for r in reads] == [4, 0, 1, 0]
    assert [r.etag for r in reads[:2]] == ["", ""]
    assert reads[2].etag == _etag(site.routes[LISTING].body)
    ferry = reads[2].entries[0]
    assert (ferry.url, ferry.text, ferry.html) == (site.url(FERRY), "", "")
    assert ferry.title
    assert reads[3].not_modified
    assert len(_paths(_log(site, 4 + 3 + 3), FERRY)) == 3


def test_it_truncates_a_huge_article_instead_of_refusing_it(feed_server):
    paragraphs = "".join(
        f"<p>Item {n}: the harbour board met again on Thursday to discuss the dredging of the "
        f"outer channel, which has silted up faster than the engineers expected.</p>\n"
        for n in range(3000)
    )
    article = (
        "<html><head><title>The longest report</title></head><body><article>"
        f"<h1>The longest report</h1>{paragraphs}</article></body></html>"
    )
    feed_server.serve("/", '<h2><a href="/reports/the-longest-report-ever">Report</a></h2>')
    feed_server.routes["/"].content_type = HTML
    feed_server.serve("/reports/the-longest-report-ever", article, content_type=HTML)

    read = read_web_page(_source(feed_server, "/"), Known())

    (entry,) = read.entries
    assert len(paragraphs) > web.MAX_HTML_CHARS
    assert entry.text.startswith("The longest report")
    assert entry.text.endswith(" " + web.ELLIPSIS)
    assert len(entry.text) <= web.MAX_TEXT_CHARS
    assert len(entry.html) <= web.MAX_HTML_CHARS
    assert entry.html.endswith(f"<p>{web.ELLIPSIS}</p>")


def test_it_sends_the_sources_user_agent_and_asks_for_html(site):
    read_web_page(_source(site, user_agent="HarbourReader/2.0"), Known())

    log = _log(site, 6)
    assert len(log) == 6
    for request in log:
        assert request.headers["User-Agent"] == "HarbourReader/2.0"
        assert request.headers["Accept"].startswith("text/html")


def test_it_extracts_without_any_network_access_of_its_own(site, monkeypatch):
    import trafilatura.downloads
    import urllib3

    def no_network(*args, **kwargs):
        raise AssertionError("the extractor tried to use the network")

    # trafilatura downloads with urllib3; our fetcher uses httpx and is unaffected.
    monkeypatch.setattr(urllib3.PoolManager, "urlopen", no_network)
    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", no_network)
    monkeypatch.setattr(trafilatura.downloads, "fetch_url", no_network)
    monkeypatch.setattr(trafilatura.downloads, "fetch_response", no_network)

    read = read_web_page(_source(site), Known())

    assert sum(1 for e in read.entries if e.text) == 4


def test_a_poll_stores_a_web_sources_articles_as_raw_posts(site):
    site.routes[LISTING].etag = False  # no 304: the second poll reads the listing again
    source = _source(site)

    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    new_ids = services.poll_source(source_id=source.id, token=claim.token)
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    again = services.poll_source(source_id=source.id, token=claim.token)

    posts = RawPost.objects.filter(source=source)
    assert sorted(new_ids) == sorted(posts.values_list("id", flat=True))
    assert sorted(posts.values_list("external_id", flat=True)) == sorted(
        site.url(p) for p in ARTICLES
    )
    assert "relieved and ready to get back to work" in posts.get(url=site.url(CRANE)).text
    assert posts.get(url=site.url(LIVE)).text == ""
    assert again == []
    log = _log(site, 7)
    assert [r.status for r in log if r.path == LISTING] == [200, 200]
    assert sorted(_paths(log)) == sorted(ARTICLES)  # the second poll fetched none
    log = PollLog.objects.filter(source=source).order_by("started_at").first()
    assert (log.status, log.items_new) == (PollStatus.OK, 5)
    source.refresh_from_db()
    assert source.title == "Latest news | The Harbour Ledger"


def test_a_poll_of_a_page_without_articles_ends_as_a_clear_error(feed_server):
    feed_server.serve("/", _fixture("no-articles.html"), content_type=HTML)
    source = _source(feed_server, "/")

    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    services.poll_source(source_id=source.id, token=claim.token)

    source.refresh_from_db()
    assert source.last_status == PollStatus.NOT_A_FEED
    assert source.last_error.startswith("no article links found on ")
    assert RawPost.objects.filter(source=source).count() == 0
