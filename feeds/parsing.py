"""Turn fetched bytes into normalized, sanitized entries.

feedparser only ever sees bytes (given a string that looks like a URL it would fetch it itself,
around our fetcher's limits). JSON Feed 1.x is parsed here. Every title, text and HTML field is
sanitized before it leaves this module.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from feeds.sanitize import html_to_text, sanitize_html
from feeds.urls import clean_link, link_key

MAX_ENTRIES = 1000
_MAX_ID = 512
_MAX_URL = 2000
_NOT_A_PARSE_ERROR = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


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


def parse_feed(body: bytes, *, content_type: str = "", base_url: str = "") -> ParsedFeed:
    """Parse RSS, Atom or JSON Feed bytes; raise NotAFeed with a reason otherwise."""
    if not body.strip():
        raise NotAFeed("the response body is empty")
    if _looks_like_json(body, content_type):
        return _parse_json_feed(body)
    parsed = feedparser.parse(
        body,
        response_headers={"content-location": base_url} if base_url else None,
        sanitize_html=False,  # nh3 below, with our own allow-list
    )
    if not parsed.get("version") and not parsed.entries:
        head = body[:512].lstrip().lower()
        if "html" in content_type.lower() or head.startswith(b"<!doctype html") or b"<html" in head:
            raise NotAFeed("the URL returned an HTML page, not an RSS/Atom feed")
        reason = parsed.get("bozo_exception")
        # feedparser also sets bozo for a missing or non-XML Content-Type and for a charset
        # override; those say nothing about whether the document is well-formed.
        if parsed.get("bozo") and not isinstance(reason, _NOT_A_PARSE_ERROR):
            raise NotAFeed(f"the response is not a well-formed feed ({reason})")
        raise NotAFeed("the response is XML but neither RSS nor Atom")
    meta = parsed.feed
    return ParsedFeed(
        title=html_to_text(meta.get("title", ""))[:300],
        site_url=_clip_url(meta.get("link", "")),
        entries=_usable(_entry(item) for item in parsed.entries[:MAX_ENTRIES]),
        ttl_seconds=_ttl_seconds(meta.get("ttl")),
    )


def _ttl_seconds(value: object) -> int | None:
    """RSS 2.0 <ttl> is minutes; ignore nonsense rather than fail the poll."""
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60 if 0 < minutes <= 7 * 24 * 60 else None


def _looks_like_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or body.lstrip()[:1] == b"{"


def _entry(item: Any) -> ParsedEntry:
    content = item.get("content") or []
    raw_html = content[0].get("value", "") if content else item.get("summary", "")
    title = html_to_text(item.get("title", ""))
    url = _clip_url(item.get("link", ""))
    text = html_to_text(raw_html)
    published = item.get("published_parsed") or item.get("updated_parsed")
    return make_entry(
        guid=_str(item.get("id")),
        url=url,
        title=title,
        text=text,
        html=sanitize_html(raw_html),
        author=html_to_text(item.get("author", "")),
        published_at=datetime.fromtimestamp(calendar.timegm(published), UTC) if published else None,
    )


def _parse_json_feed(body: bytes) -> ParsedFeed:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotAFeed(f"the response is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "jsonfeed.org/version" not in str(data.get("version", "")):
        raise NotAFeed("the response is JSON but not a JSON Feed (no jsonfeed.org version)")
    items = data.get("items")
    if not isinstance(items, list):
        raise NotAFeed("the JSON Feed has no items list")
    entries = []
    for item in items[:MAX_ENTRIES]:
        if not isinstance(item, dict):
            continue
        raw_html = _str(item.get("content_html"))
        text = html_to_text(raw_html) if raw_html else _str(item.get("content_text"))
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        author = next(
            (_str(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")), ""
        )
        entries.append(
            make_entry(
                guid=_str(item.get("id")),
                url=_clip_url(_str(item.get("url"))),
                title=html_to_text(_str(item.get("title"))),
                text=text,
                html=sanitize_html(raw_html),
                author=author,
                published_at=_iso_date(item.get("date_published") or item.get("date_modified")),
            )
        )
    return ParsedFeed(
        title=_str(data.get("title"))[:300],
        site_url=_clip_url(_str(data.get("home_page_url"))),
        entries=_usable(entries),
    )


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
    # PostgreSQL text cannot hold NUL: one such character would fail every poll of the source.
    return value.replace("\x00", "") if isinstance(value, str) else ""


def _iso_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
