"""One reader per source kind: fetch what the source publishes and turn it into entries.

A reader does network I/O through `feeds.fetcher` only and never writes to the database; what
is new, edited or deleted is decided by `feeds.services` from the `ReadResult`. A reader that
must not fetch what is already stored (a web page's articles) asks `known`, which answers which
of the given external ids are stored (or tombstoned) for the source.

Errors: a `FetchError` (network, HTTP, size, time, blocked address) or a `NotAFeed` (the body is
not what the kind expects: not a feed, a t.me page whose layout changed, a page with no
article links), each with a message the curator can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from feeds.fetcher import FetchResult, fetch
from feeds.parsing import NotAFeed, ParsedEntry, parse_feed

if TYPE_CHECKING:
    from feeds.models import Source

Known = Callable[[Iterable[str]], set[str]]


@dataclass
class ReadResult:
    entries: list[ParsedEntry] = field(default_factory=list)
    title: str = ""
    site_url: str = ""
    not_modified: bool = False
    http_status: int | None = None
    bytes_received: int = 0
    etag: str | None = None
    last_modified: str | None = None
    # The soonest the source wants to be asked again, seconds: RSS ttl, Cache-Control max-age,
    # Expires. None: no wish expressed.
    min_interval: int | None = None
    # Highest message id seen (Telegram); None: the reader keeps no cursor.
    cursor: int | None = None


def fetch_source(source: Source, *, accept: str | None = None) -> tuple[FetchResult, ReadResult]:
    """Conditional GET of the source's URL with its User-Agent, and the ReadResult that answer
    starts (status, size, validators, freshness)."""
    result = fetch(
        source.url,
        etag=source.etag,
        last_modified=source.last_modified,
        user_agent=source.user_agent or None,
        accept=accept,
    )
    read = ReadResult(
        http_status=result.status_code,
        bytes_received=len(result.body),
        etag=result.etag,
        last_modified=result.last_modified,
        min_interval=result.cache_seconds,
        not_modified=result.not_modified,
    )
    return result, read


@contextmanager
def answered(result: FetchResult) -> Iterator[None]:
    """The poll log keeps what the server answered, even when it was not what the kind expects:
    a NotAFeed raised inside carries the response's status and size."""
    try:
        yield
    except NotAFeed as exc:
        exc.http_status = result.status_code  # type: ignore[attr-defined]
        exc.bytes_received = len(result.body)  # type: ignore[attr-defined]
        raise


def read_feed(source: Source, known: Known) -> ReadResult:
    """RSS, Atom, RDF and JSON Feed, with conditional GET."""
    result, read = fetch_source(source)
    if read.not_modified:
        return read
    with answered(result):
        parsed = parse_feed(result.body, content_type=result.content_type, base_url=result.url)
    read.entries = parsed.entries
    read.title = parsed.title
    read.site_url = parsed.site_url
    if parsed.ttl_seconds is not None:
        read.min_interval = max(read.min_interval or 0, parsed.ttl_seconds)
    return read


def reader_for(kind: str) -> Callable[[Source, Known], ReadResult]:
    # Imported here: each reader module imports this one for ReadResult.
    if kind == "telegram":
        from feeds.telegram.preview import read_preview

        return read_preview
    if kind == "web":
        from feeds.web import read_web_page

        return read_web_page
    return read_feed
