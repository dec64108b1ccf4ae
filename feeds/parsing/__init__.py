"""Turn fetched bytes into normalized, sanitized entries.

Two readers give the same entries. The fast one builds a tree with a strict lxml parser (no
entities expanded, no DTD or network access, libxml2's size limits) and reads it the way
feedparser reads its SAX events, for the RSS 2.0, Atom 1.0 and RSS 1.0 constructs it knows. A
document that is not well-formed, has a DOCTYPE, or holds a construct the fast reader does not
model (listed in `Routed` messages) goes to feedparser, the reference: it recovers what it can
from broken XML, where a recovering parser would silently cut titles and drop markup. Both
readers hand their raw strings to the same code, so the fields cannot drift apart by path;
tests/feeds/test_parsing_fast.py checks that they agree.

feedparser only ever sees bytes (given a string that looks like a URL it would fetch it itself,
around our fetcher's limits). JSON Feed 1.x is parsed here. Every title, text and HTML field is
sanitized before it leaves this module.

Layout: `entries` (the entry and feed types, `make_entry`, the field handling both readers
share), `fast` (the fast reader), `reference` (feedparser), `jsonfeed` (JSON Feed).
"""

from __future__ import annotations

from feeds.parsing.entries import MAX_ENTRIES, NotAFeed, ParsedEntry, ParsedFeed, Parser, make_entry
from feeds.parsing.fast import Routed, parse_fast
from feeds.parsing.jsonfeed import looks_like_json, parse_json_feed
from feeds.parsing.reference import parse_with_feedparser

__all__ = [
    "MAX_ENTRIES",
    "NotAFeed",
    "ParsedEntry",
    "ParsedFeed",
    "Parser",
    "Routed",
    "make_entry",
    "parse_fast",
    "parse_feed",
    "parse_with_feedparser",
]


def parse_feed(body: bytes, *, content_type: str = "", base_url: str = "") -> ParsedFeed:
    """Parse RSS, Atom or JSON Feed bytes; raise NotAFeed with a reason otherwise."""
    if not body.strip():
        raise NotAFeed("the response body is empty")
    if looks_like_json(body, content_type):
        return parse_json_feed(body)
    try:
        return parse_fast(body, base_url=base_url)
    except Routed as route:
        parsed = parse_with_feedparser(body, content_type=content_type, base_url=base_url)
        parsed.routed = str(route)
        return parsed
