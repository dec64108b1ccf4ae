"""The reference reader: feedparser, for every document the fast reader routes to it."""

from __future__ import annotations

import io
from typing import Any
from xml.parsers import expat

import feedparser
from feedparser.api import LooseFeedParser
from feedparser.encodings import convert_to_utf8
from feedparser.sanitizer import replace_doctype
from feedparser.urls import make_safe_absolute_uri

from feeds.parsing.entries import (
    MAX_ENTRIES,
    NotAFeed,
    ParsedEntry,
    ParsedFeed,
    _clip_url,
    _entry,
    _str,
    _ttl_seconds,
    _usable,
    _utc,
)
from feeds.sanitize import html_to_text

_NOT_A_PARSE_ERROR = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


def parse_with_feedparser(body: bytes, *, content_type: str = "", base_url: str = "") -> ParsedFeed:
    """The reference reader: feedparser, then the same field handling as the fast reader."""
    try:
        parsed = _loose_parse(body, base_url) or feedparser.parse(
            # A file object, never the bytes: feedparser tries bytes or str it is given as a
            # file name first, so a body of "/etc/passwd" or "/dev/zero" would be read from disk.
            io.BytesIO(body),
            response_headers={"content-location": base_url} if base_url else None,
            # nh3 with our own allow-list, and our own resolution of relative links in the HTML
            # (feedparser's rewrites the markup on the way), exactly as on the fast path.
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except (ValueError, UnicodeError, OverflowError) as exc:
        # Its lenient parser trips over some broken documents, e.g. chr() of "&#1114112;".
        raise NotAFeed(f"the response is not a well-formed feed ({exc!r})") from exc
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
        title=html_to_text(_void_end_tags(meta.get("title", ""), meta.get("title_detail")))[:300],
        site_url=_clip_url(meta.get("link", "")),
        entries=_usable(_feedparser_entry(item) for item in parsed.entries[:MAX_ENTRIES]),
        ttl_seconds=_ttl_seconds(meta.get("ttl")),
        parser="feedparser",
    )


def _loose_parse(body: bytes, base_url: str) -> Any:
    """What feedparser.parse(io.BytesIO(body), response_headers=..., sanitize_html=False,
    resolve_relative_uris=False) returns for a document its strict parser rejects, or None if
    that parser would read it. feedparser runs its strict (SAX) parser first, with its handlers
    doing all their work, and starts again with its lenient parser when expat finds an error:
    for a long document with a stray "&nbsp;" near the end, that is twice the work. Here expat
    alone, set up as xml.sax sets it up for feedparser, runs over the same bytes first; only
    when it rejects them does the lenient parser run, given what feedparser.parse gives it.
    Where feedparser's strict handlers would crash before expat reaches its error (on a
    namespace URI holding a no-break space), this reads the document instead of failing."""
    if not body:
        return None  # feedparser returns at once
    result = feedparser.FeedParserDict(
        bozo=False, entries=[], feed=feedparser.FeedParserDict(), headers={}
    )
    if base_url:
        result["headers"]["content-location"] = base_url
    data = convert_to_utf8(result["headers"], body, result)
    version, data, entities = replace_doctype(data)
    if result["encoding"]:  # else feedparser skips its strict parser itself
        error = expat_error(data)
        if error is None:
            return None
        result["bozo"] = 1
        result["bozo_exception"] = error
    href = result.get("href", "")
    baseuri = make_safe_absolute_uri(href, base_url) or make_safe_absolute_uri(base_url) or href
    parser = LooseFeedParser(baseuri, None, "utf-8", entities)
    parser.resolve_relative_uris = False
    parser.sanitize_html = False
    parser.feed(data.decode("utf-8", "replace"))
    result["feed"] = parser.feeddata
    result["entries"] = parser.entries
    result["version"] = version or parser.version
    result["namespaces"] = parser.namespaces_in_use
    return result


def expat_error(data: bytes) -> str | None:
    """The error expat reports for `data` as feedparser's strict parser reads it (xml.sax's
    ExpatParser with namespaces on and external entities off), or None if it reads it."""
    parser = expat.ParserCreate(None, " ")
    parser.ExternalEntityRefHandler = _accept_external_entity
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_UNLESS_STANDALONE)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        return str(exc)
    return None


def _accept_external_entity(*_: object) -> int:
    return 1  # xml.sax with feature_external_ges off: not loaded, not an error


def _feedparser_entry(item: Any) -> ParsedEntry:
    content = item.get("content") or []
    detail = content[0] if content else item.get("summary_detail") or {}
    raw_html = detail.get("value", "") if content else item.get("summary", "")
    return _entry(
        guid=_str(item.get("id")),
        link=_str(item.get("link")),
        title=_str(_void_end_tags(item.get("title"), item.get("title_detail"))),
        raw_html=_str(_void_end_tags(raw_html, detail)),
        base=_str(detail.get("base", "")),
        author=_str(item.get("author")),
        # dict.get: FeedParserDict would map a missing updated_parsed to published_parsed, with
        # a DeprecationWarning, and that one is empty here.
        published_at=_utc(item.get("published_parsed") or dict.get(item, "updated_parsed")),
    )


def _void_end_tags(value: object, detail: object) -> object:
    """Inline XHTML as feedparser writes it out gives <br/> an end tag, which an HTML parser
    reads as a second <br>: drop it (the fast reader does the same)."""
    xhtml = isinstance(detail, dict) and detail.get("type") == "application/xhtml+xml"
    return value.replace("</br>", "") if xhtml and isinstance(value, str) else value
