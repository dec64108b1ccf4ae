"""The reference reader skips feedparser's strict parse of a document that is not well-formed
(`feeds.parsing.reference._loose_parse`). feedparser.parse would run its strict SAX parser first
and, when expat rejects the document, throw that work away and read it again leniently. The
shortcut must give exactly what feedparser.parse gives: it runs expat alone, set up as xml.sax
sets it up for feedparser, and the lenient parser only when expat rejects the bytes.

Checked on hostile generated documents, on every fixture cut short at many points and with
typical breakage put in, and on the hostile corpus."""

from __future__ import annotations

import io
import traceback
import xml.sax
from pathlib import Path
from typing import Any

import feedparser
import pytest
from feedparser.encodings import convert_to_utf8
from feedparser.sanitizer import replace_doctype
from hypothesis import given, settings

from feeds.parsing.reference import _loose_parse, expat_error
from tests.fuzz.profiles import scaled
from tests.fuzz.strategies import url_values, xml_feeds

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BASE = "https://base.example/dir/feed.xml"
_XML = [
    path
    for folder in ("feeds", "hostile")
    for path in sorted((FIXTURES / folder).iterdir())
    if path.suffix in (".xml", ".rdf", ".opml", ".html")
]
# What publishers' broken feeds hold (seen in a corpus of real feeds): an HTML entity XML does
# not define, a bare "&", a control character, text after the root, a CDATA section cut short.
_BREAKAGE = [b"&nbsp;", b"AT&T", b"\x0b", b"&colon;", b"<![CDATA[x", b"</nope>"]


def _reference(body: bytes, base_url: str) -> Any:
    return feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-location": base_url} if base_url else None,
        sanitize_html=False,
        resolve_relative_uris=False,
    )


def _prepared(body: bytes) -> bytes | None:
    """The bytes feedparser.parse hands its parsers, or None where it fails before that."""
    result: dict[str, Any] = {}
    try:
        return replace_doctype(convert_to_utf8({}, body, result))[1]
    except (ValueError, UnicodeError):
        return None


def _strict_sax_rejects(data: bytes) -> bool:
    """Whether feedparser's strict parser, set up as feedparser.parse sets it up, stops on an
    error for these bytes (with a content handler that does nothing)."""
    parser = xml.sax.make_parser()
    parser.setFeature(xml.sax.handler.feature_namespaces, 1)
    parser.setFeature(xml.sax.handler.feature_external_ges, 0)
    parser.setContentHandler(xml.sax.handler.ContentHandler())
    source = xml.sax.xmlreader.InputSource()
    source.setByteStream(io.BytesIO(data))
    try:
        parser.parse(source)
    except xml.sax.SAXException:
        return True
    return False


def _check(body: bytes, base_url: str = BASE) -> bool:
    """Assert the shortcut agrees with feedparser.parse; True if it took the lenient parser."""
    reference, failure = None, None
    try:
        reference = _reference(body, base_url)
    except (ValueError, UnicodeError, OverflowError) as exc:
        failure = exc  # feedparser trips over the document itself
    try:
        shortcut = _loose_parse(body, base_url)
    except (ValueError, UnicodeError, OverflowError):
        assert failure is not None, "the shortcut fails where feedparser does not"
        return True
    if shortcut is None:
        return False  # feedparser.parse itself reads it
    if failure is not None:
        # The one difference: feedparser's strict handlers can crash on a document before
        # expat reaches its error (a namespace URI with a no-break space splits into too many
        # parts); the shortcut never runs them, and reads it leniently.
        assert _raised_in_strict_parser(failure), failure
        return True
    for key in ("feed", "entries", "version", "namespaces", "encoding", "bozo"):
        assert shortcut.get(key) == reference.get(key), key
    return True


def _raised_in_strict_parser(exc: BaseException) -> bool:
    files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
    return any(name.endswith(("parsers/strict.py", "sax/expatreader.py")) for name in files)


def _same_verdict(body: bytes) -> bool | None:
    """Whether expat alone rejects the document (asserting that xml.sax does the same), or None
    where feedparser fails before parsing."""
    data = _prepared(body)
    if data is None:
        return None
    rejected = expat_error(data) is not None
    assert rejected == _strict_sax_rejects(data), body[:200]
    return rejected


def test_expat_alone_rejects_what_feedparsers_sax_parser_rejects():
    fixtures = [path.read_bytes() for path in _XML]
    bodies = fixtures + [body[:cut] for body in fixtures for cut in (40, 200, 700)]
    bodies += [
        body.replace(b"</title>", bad + b"</title>", 1) for body in fixtures for bad in _BREAKAGE
    ]

    verdicts = {_same_verdict(body) for body in bodies}

    assert {True, False} <= verdicts


@pytest.mark.parametrize("path", _XML, ids=lambda path: path.name)
def test_it_gives_feedparsers_result_for(path):
    _check(path.read_bytes())


@pytest.mark.parametrize(
    "path", [p for p in _XML if p.parent.name == "feeds"], ids=lambda p: p.name
)
def test_it_gives_feedparsers_result_for_broken_copies_of(path):
    body = path.read_bytes()
    lenient = [_check(body[:cut]) for cut in range(len(body) // 7, len(body), len(body) // 7)]
    for bad in _BREAKAGE:
        for tag in (b"</title>", b"</description>", b"</summary>", b"</channel>", b"</feed>"):
            if tag in body:
                lenient.append(_check(body.replace(tag, bad + tag)))
    lenient.append(_check(body + b"<trailing/>"))
    assert any(lenient), "no copy took the lenient parser: nothing was compared"


def test_the_not_well_formed_fixture_takes_the_lenient_parser_at_once():
    body = (FIXTURES / "feeds" / "not_well_formed.xml").read_bytes()

    assert _check(body)
    parsed = _loose_parse(body, BASE)
    assert parsed.bozo and parsed.entries
    assert "not well-formed" in str(parsed.bozo_exception) or "undefined entity" in str(
        parsed.bozo_exception
    )


def test_a_well_formed_document_is_left_to_feedparser():
    assert _loose_parse((FIXTURES / "feeds" / "rss2.xml").read_bytes(), BASE) is None


@settings(max_examples=scaled(150))
@given(body=xml_feeds, base_url=url_values)
def test_hostile_documents_give_feedparsers_result(body: bytes, base_url: str) -> None:
    _check(body, base_url)
    _same_verdict(body)
