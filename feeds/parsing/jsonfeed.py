"""JSON Feed 1.x."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from feeds.parsing.entries import (
    MAX_ENTRIES,
    NotAFeed,
    ParsedFeed,
    _clip_url,
    _str,
    _usable,
    make_entry,
)
from feeds.sanitize import clean_fragment, html_to_text


def looks_like_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or body.lstrip()[:1] == b"{"


def parse_json_feed(body: bytes) -> ParsedFeed:
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
        html, text = clean_fragment(raw_html)
        if not raw_html:
            text = _str(item.get("content_text"))
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        if not isinstance(authors, list):
            authors = []  # a number, a string, true: nothing to read a name from
        author = next(
            (_str(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")), ""
        )
        entries.append(
            make_entry(
                guid=_str(item.get("id")),
                url=_clip_url(_str(item.get("url"))),
                title=html_to_text(_str(item.get("title"))),
                text=text,
                html=html,
                author=author,
                published_at=_iso_date(item.get("date_published") or item.get("date_modified")),
            )
        )
    return ParsedFeed(
        title=_str(data.get("title"))[:300],
        site_url=_clip_url(_str(data.get("home_page_url"))),
        entries=_usable(entries),
        parser="json",
    )


def _iso_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):  # not ISO 8601, or out of range once in UTC
        return None
