"""Feed autodiscovery: from a site's URL to the RSS/Atom/JSON feed it advertises.

`discover_feeds` reads a page's `<link rel="alternate">` elements (the autodiscovery convention
browsers and readers follow); only when there are none does it fall back to links whose path ends
like a feed (/feed, /rss.xml...) on the page's own site. `resolve_feed_url` confirms a candidate
by fetching and parsing it, so a guess never becomes a source.
"""

from __future__ import annotations

import logging
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from lxml import etree

from feeds.fetcher import FetchError, fetch
from feeds.parsing import NotAFeed, parse_feed

logger = logging.getLogger(__name__)

# Feed media types, in no particular order: candidates keep document order.
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/x-rss+xml",
        "application/x-atom+xml",
    }
)
# Also used for feeds, but as often for something else (WordPress advertises its REST API as
# an application/json alternate on every page): listed after the feed types.
WEAK_FEED_TYPES = frozenset({"application/json", "application/xml", "text/xml"})
# Last path segment of a link that is probably a feed (fallback only).
_FEED_PATHS = frozenset(
    {"feed", "rss", "atom", "feed.xml", "rss.xml", "atom.xml", "index.xml", "feed.json", "rss2"}
)
MAX_CANDIDATES = 5  # candidates `resolve_feed_url` fetches at most
_MAX_ELEMENTS = 2000  # <link> and <a> elements looked at: a degenerate page can hold millions


def discover_feeds(
    html: bytes, base_url: str, *, doc: lxml.html.HtmlElement | None = None
) -> list[str]:
    """Feed URLs a page advertises: absolute, deduplicated, in document order, the explicit feed
    media types before application/json and generic XML. With no such <link>, the page's links
    to /feed, /rss.xml and the like on its own host. `doc`: the page already parsed."""
    if doc is None:
        if not html.strip():
            return []
        try:
            doc = lxml.html.document_fromstring(html)
        except (ValueError, etree.ParserError):
            return []
    base = _base(doc, base_url)
    strong: list[str] = []
    weak: list[str] = []
    for count, link in enumerate(doc.iter("link")):
        if count >= _MAX_ELEMENTS:
            break
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";")[0].strip().lower()
        if "alternate" not in rel or not link.get("href"):
            continue
        if kind in FEED_TYPES:
            _add(strong, base, link.get("href", ""))
        elif kind in WEAK_FEED_TYPES:
            _add(weak, base, link.get("href", ""))
    found = _dedupe(strong + weak)
    if found:
        return found
    try:
        host = (urlsplit(base_url).hostname or "").lower()
    except ValueError:  # a page URL that does not parse has no links "on its own host"
        return []
    anchors: list[str] = []
    for count, anchor in enumerate(doc.iter("a")):
        if count >= _MAX_ELEMENTS:
            break
        url = _absolute(base, anchor.get("href") or "")
        if not url:
            continue
        parts = urlsplit(url)
        last = next((s for s in reversed(parts.path.lower().split("/")) if s), "")
        if (parts.hostname or "").lower() == host and last in _FEED_PATHS:
            anchors.append(url)
    return _dedupe(anchors)


def resolve_feed_url(url: str) -> str | None:
    """The feed to subscribe to for `url`: `url` itself when it is a feed; for an HTML page,
    the first discovered candidate (at most MAX_CANDIDATES are tried) that fetches and parses as
    a feed; otherwise None.

    A FetchError for `url` propagates. A candidate that fails to fetch is skipped; when no
    candidate is a feed and one of them failed to fetch, that first error is raised (the page
    names a feed that is broken: say so rather than "no feed").
    """
    result = fetch(url)
    try:
        parse_feed(result.body, content_type=result.content_type, base_url=result.url)
    except NotAFeed:
        pass
    else:
        return url
    if not _is_html(result.body, result.content_type):
        return None
    failure: FetchError | None = None
    for candidate in discover_feeds(result.body, result.url)[:MAX_CANDIDATES]:
        try:
            answer = fetch(candidate)
            parse_feed(answer.body, content_type=answer.content_type, base_url=answer.url)
        except FetchError as exc:
            logger.info("feed candidate %s for %s: %s", candidate, url, exc)
            failure = failure or exc
            continue
        except NotAFeed as exc:
            logger.info("feed candidate %s for %s is not a feed: %s", candidate, url, exc)
            continue
        return candidate
    if failure is not None:
        raise failure
    return None


def _is_html(body: bytes, content_type: str) -> bool:
    if "html" in content_type.lower():
        return True
    head = body[:1024].lstrip().lower()
    return head.startswith(b"<!doctype html") or b"<html" in head


def _base(doc: lxml.html.HtmlElement, page_url: str) -> str:
    for base in doc.iter("base"):
        href = (base.get("href") or "").strip()
        if href:
            return _absolute(page_url, href) or page_url
    return page_url


def _absolute(base: str, href: str) -> str | None:
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        url = urldefrag(urljoin(base, href))[0]
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        return None
    # lxml keeps control characters in attribute values; no client fetches such a URL.
    if any(ord(char) < 0x20 or char == "\x7f" for char in url):
        return None
    return url


def _add(found: list[str], base: str, href: str) -> None:
    url = _absolute(base, href)
    if url:
        found.append(url)


def _dedupe(urls: list[str]) -> list[str]:
    return list(dict.fromkeys(urls))
