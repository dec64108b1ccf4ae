"""What every reader produces: entries with sanitized fields and their identity, and the
feed around them. Feed, t.me, web page and Telegram readers all build entries with
`make_entry`."""

from __future__ import annotations

import calendar
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from feeds.sanitize import clean_fragment, html_to_text
from feeds.urls import clean_link, link_key

MAX_ENTRIES = 1000
_MAX_ID = 512
_MAX_TITLE = 1000
_MAX_URL = 2000

Parser = Literal["fast", "feedparser", "json"]


class NotAFeed(Exception):
    """The body parsed as neither RSS, Atom nor JSON Feed."""

    status = "not_a_feed"


@dataclass(frozen=True)
class ParsedEntry:
    external_id: str
    url: str
    title: str
    text: str
    html: str
    author: str
    published_at: datetime | None
    content_hash: str
    link_key: str = ""  # feeds.urls.link_key(url): the second rung of the identity ladder


@dataclass
class ParsedFeed:
    title: str = ""
    site_url: str = ""
    entries: list[ParsedEntry] = field(default_factory=list)
    # RSS <ttl> in seconds: the publisher's "do not poll more often than this".
    ttl_seconds: int | None = None
    # Which reader produced this, and why the fast one declined ("" if it did not).
    parser: Parser = "feedparser"
    routed: str = ""


def _entry(
    *,
    guid: str,
    link: str,
    title: str,
    raw_html: str,
    base: str,
    author: str,
    published_at: datetime | None,
) -> ParsedEntry:
    """An entry from the raw strings either reader found: the one place they become fields."""
    html, text = clean_fragment(raw_html, base_url=base)
    return make_entry(
        guid=guid,
        url=_clip_url(link),
        title=html_to_text(title),
        text=text,
        html=html,
        author=html_to_text(author),
        published_at=published_at,
    )


def _utc(value: time.struct_time | None) -> datetime | None:
    if not value:
        return None
    try:
        if value.tm_sec < 60:  # what fromtimestamp(timegm(value)) gives, without the round trip
            return datetime(*value[:6], tzinfo=UTC)
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError):  # feedparser reads "0000-01-01" as year 0
        return None


def _ttl_seconds(value: object) -> int | None:
    """RSS 2.0 <ttl> is minutes; ignore nonsense rather than fail the poll."""
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if 0 < minutes <= 7 * 24 * 60 else None


def make_entry(
    *,
    guid: str,
    url: str,
    title: str,
    text: str,
    html: str,
    author: str,
    published_at: datetime | None,
) -> ParsedEntry:
    """One entry, sanitized fields in; the identity is computed here. Readers of every kind
    (feeds, t.me pages, web pages, the Telegram gateway) build their entries with this."""
    url = clean_link(url)
    title = title[:_MAX_TITLE]
    content_hash = hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()
    # Identity ladder: the publisher's id, else the link, else what the item says.
    external_id = guid.strip() or url or f"sha256:{content_hash}"
    if len(external_id) > _MAX_ID:
        external_id = "sha256:" + hashlib.sha256(external_id.encode()).hexdigest()
    return ParsedEntry(
        external_id=external_id,
        url=url,
        title=title,
        text=text,
        html=html,
        author=author[:300],
        published_at=published_at,
        content_hash=content_hash,
        link_key=link_key(url),
    )


def _usable(entries: Iterable[ParsedEntry]) -> list[ParsedEntry]:
    # A lenient parse of a truncated document can yield an item with nothing in it.
    return [e for e in entries if e.title or e.text or e.html or e.url]


def _clip_url(url: str) -> str:
    url = (url or "").replace("\x00", "").strip()
    if len(url) > _MAX_URL or not url.lower().startswith(("http://", "https://")):
        return ""
    return url


def _str(value: object) -> str:
    # PostgreSQL text cannot hold NUL or a lone surrogate (JSON "\ud800", or a character
    # reference feedparser's lenient parser decodes): one would fail every poll of the source.
    if not isinstance(value, str):
        return ""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode(errors="replace").decode()
    return value.replace("\x00", "")
