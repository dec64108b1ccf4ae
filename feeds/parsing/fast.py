"""The fast reader: a strict lxml parse, read the way feedparser reads its SAX events."""

from __future__ import annotations

import contextlib
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import uses_relative
from xml.sax.saxutils import escape as xml_escape

from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import replace_doctype
from feedparser.urls import _urljoin, make_safe_absolute_uri
from lxml import etree

from feeds.parsing.entries import (
    MAX_ENTRIES,
    NotAFeed,
    ParsedEntry,
    ParsedFeed,
    _clip_url,
    _entry,
    _ttl_seconds,
    _usable,
    _utc,
)
from feeds.parsing.reference import expat_error
from feeds.sanitize import html_to_text


def parse_fast(body: bytes, *, base_url: str = "") -> ParsedFeed:
    """The fast reader alone (RSS 2.0, Atom 1.0, RSS 1.0): raises Routed where parse_feed
    would hand the document to feedparser, NotAFeed where it refuses it."""
    return _FastReader(base_url).read(body)


class Routed(Exception):
    """The fast reader cannot give feedparser's result for this document; the message says
    why. Not an error: parse_feed has feedparser read it."""


_ATOM = "http://www.w3.org/2005/Atom"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RSS1 = "http://purl.org/rss/1.0/"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_RDF_ABOUT = f"{{{_RDF}}}about"
# Namespace URI -> the prefix feedparser files its elements under ("" for the core formats).
_NS_PREFIX = {uri.lower(): prefix.lower() for uri, prefix in _FeedParserMixin.namespaces.items()}
_USUAL_PREFIXES = frozenset(_NS_PREFIX.values())
# feedparser runs an end-tag handler for these names even inside inline XHTML content.
_END_HANDLERS = frozenset(
    name[5:].lower() for name in dir(_FeedParserMixin) if name.startswith("_end_")
)
# A namespace declaration, as feedparser's SAX parser reports it (startPrefixMapping).
_XMLNS_PREFIX = re.compile(rb"""xmlns:([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_TITLES = frozenset({"title", "dc_title", "media_title"})
_DESCRIPTIONS = frozenset({"description", "dc_description", "media_description"})
_SUMMARIES = frozenset({"summary", "itunes_summary"})
_CONTENTS = frozenset({"content", "content_encoded", "fullitem"})
_AUTHORS = frozenset({"author", "managingeditor", "dc_author", "dc_creator", "itunes_author"})
_AUTHOR_PARTS = {
    "name": "name",
    "itunes_name": "name",
    "email": "email",
    "itunes_email": "email",
    "url": "href",
    "uri": "href",
    "homepage": "href",
}
_PUBLISHED = frozenset({"published", "issued", "pubdate", "dcterms_issued"})
_UPDATED = frozenset({"updated", "modified", "lastbuilddate", "dc_date", "dcterms_modified"})
# Other elements feedparser reads as (possibly inline-XHTML) text of fields we do not keep.
_OTHER_TEXTS = frozenset(
    {
        "subtitle", "tagline", "itunes_subtitle", "rights", "copyright", "dc_rights", "info",
        "feedburner_browserfriendly",
    }
)  # fmt: skip
# Inside <image> and <textinput> feedparser files these under the image; any other
# unprefixed element ends the image for it, and what follows lands on the feed.
_IMAGE_CHILDREN = frozenset({"title", "link", "description", "url", "href", "width", "height"})
_TEXTINPUT_CHILDREN = frozenset({"title", "link", "description", "name"})
_SOURCE_ROUTES = (
    _DESCRIPTIONS | _SUMMARIES | _CONTENTS
    | {"abstract", "body", "xhtml_body", "item", "entry", "source", "channel", "feed", "rss",
       "image", "textinput", "itunes_owner"}
)  # fmt: skip
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_SUMMARY_TYPES = _HTML_TYPES | {"text/plain"}
_C1_CONTROLS = re.compile("[\x80-\x9f]")
# A C1 control character in a UTF-8 document: encoded, or as a character reference. Undoing
# mojibake (ISO-8859-1 read back as UTF-8) cannot make one where there was none.
_C1_ENCODED = re.compile(rb"\xc2[\x80-\x9f]")
_C1_REFERENCE = re.compile(rb"&#(?:0*1(?:2[89]|[3-5][0-9])|[xX]0*[89][0-9a-fA-F]);")
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
# <!ENTITY name "text"> with at most 1024 characters of plain text and character references,
# or the W3C's XHTML entity sets by public id (old feeds declare them to get &eacute; & co;
# feedparser knows the names and fetches nothing).
_SIMPLE_ENTITY = re.compile(
    rb"<!ENTITY\s+[^\s%\"'<>]+\s+"
    rb"(?:\"(?:[^\"&<%]|&#[0-9]+;|&#x[0-9a-fA-F]+;){0,1024}\""
    rb"|'(?:[^'&<%]|&#[0-9]+;|&#x[0-9a-fA-F]+;){0,1024}')\s*>"
    rb"|<!ENTITY\s+%\s+\w+\s+PUBLIC\s+\"-//W3C//ENTITIES [\w ]+ for XHTML//EN\"\s+"
    rb"\"http://www\.w3\.org/TR/xhtml1/DTD/xhtml-(?:lat1|special|symbol)\.ent\"\s*>"
)
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")
# Where an xml:base (or a bare base) attribute may be: "base", spaces, "=" (also in text, rarely).
_BASE_ATTRIBUTE = re.compile(rb"base\s*=")
# A DOCTYPE feedparser removes before parsing (its RE_DOCTYPE_PATTERN), here without an internal
# subset: nothing in it changes how the document reads, so the fast reader can drop it too.
_PLAIN_DOCTYPE = re.compile(rb"^\s*<!DOCTYPE[^>\[]*>", re.MULTILINE)
# Dates and URLs in the forms nearly every feed uses, for which the result of feedparser's
# _parse_date and _urljoin is known without running them (they cost microseconds per call,
# several times per entry). Anything else goes through feedparser's own functions.
_W3DTF = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)", re.ASCII
)
_RFC822 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d\d?) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d\d):(\d\d):(\d\d) "
    r"([+-]\d{4}|GMT|UT|Z)",
    re.ASCII,
)
_MONTHS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
    "Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}  # fmt: skip
# An absolute http(s) URL that urljoin returns unchanged: ASCII, a plain host, no params, no
# fragment, no empty query (urlunparse would drop "?", "#" and ";" marks).
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::\d+)?(?:/[^\s?#;\[\]]*)?(?:\?[^\s#;\[\]]+)?", re.ASCII
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Element tag -> (feedparser's name for it, our handler or None). Tags of unknown namespaces are
# not kept: feedparser names those by the prefix each document declares.
_TAGS: dict[str, tuple[str, Any]] = {}
_MAX_TAGS = 10_000


class _Parsers(threading.local):
    # One per thread: lxml lets one parse at a time run on a parser object.
    def __init__(self) -> None:
        self.strict = etree.XMLParser(
            resolve_entities=False,  # with no_network and load_dtd: no XXE, no billion laughs
            no_network=True,
            load_dtd=False,
            huge_tree=False,  # libxml2's limits on text node size and depth stay on
            collect_ids=False,
            remove_comments=True,  # feedparser ignores them; text around one is one string
            remove_pis=True,
            strip_cdata=True,
        )


_PARSERS = _Parsers()


def _feedparser_text(value: str) -> str:
    """What feedparser does to every string it stores (mixin.pop), after stripping."""
    value = _feedparser_text_without_c1(value)
    if not value.isascii() and _C1_CONTROLS.search(value):
        value = value.translate(_cp1252)
    return value


def _feedparser_text_without_c1(value: str) -> str:
    """_feedparser_text for the strings of a document that holds no C1 control character
    (U+0080-U+009F): scanning every long string for one costs more than the rest together."""
    if value.isascii():
        return value
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        # Undo UTF-8 read as ISO-8859-1, as feedparser does.
        value = value.encode("iso-8859-1").decode("utf-8")
    return value


def _date(value: str) -> datetime | None:
    """_utc(feedparser's _parse_date(value))."""
    match = _W3DTF.fullmatch(value)
    if match:
        # What _parse_date_w3dtf, the first handler feedparser tries, computes.
        year, month, day, hour, minute, second, zone = match.groups()
        sign = -1 if zone[0] == "-" else 1
        offset = (sign * int(zone[1:3]), sign * int(zone[4:6])) if zone != "Z" else (0, 0)
    else:
        match = _RFC822.fullmatch(value)
        if not match:
            return _utc(_parse_date(value))
        # W3DTF rejects these (no four-digit year first); _parse_date_rfc822 computes this.
        day, month, year, hour, minute, second, zone = match.groups()
        month = str(_MONTHS[month])
        if zone[0] in "+-":
            sign = -1 if zone[0] == "-" else 1
            offset = (sign * int(zone[1:3]), sign * int(zone[3:5]))
        else:
            offset = (0, 0)
    try:
        stamp = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
        if offset == (0, 0):
            return stamp
        return stamp - timedelta(hours=offset[0], minutes=offset[1])
    except (OverflowError, ValueError):
        # Out of range (or second 60): feedparser goes on to its other handlers.
        return _utc(_parse_date(value))


def _date_of(text: str | None) -> datetime | None:
    return None if text is None else _date(text)


def _resolve(base: str, uri: str) -> str:
    """feedparser's _urljoin(base or "", uri), which resolves links and ids."""
    if _PLAIN_URL.fullmatch(uri) and uri.isascii():
        return uri
    scheme = _SCHEME.match(uri)
    if scheme and scheme.group(1).lower() not in uses_relative and "://" not in uri:
        return uri  # tag:, urn:, mailto: ...: urljoin returns them as they are
    return _urljoin(base or "", uri)


def _map_content_type(value: str) -> str:
    value = value.lower()
    return {"text": "text/plain", "plain": "text/plain", "html": "text/html"}.get(
        value, "application/xhtml+xml" if value == "xhtml" else value
    )


class _Item:
    """What feedparser keeps of one entry, for the fields we read."""

    __slots__ = (
        "author",
        "author_detail",
        "content",
        "depth",
        "id",
        "link",
        "published",
        "summary",
        "summary_base",
        "title",
        "updated",
    )

    def __init__(self) -> None:
        self.id: str | None = None
        self.link: str | None = None
        self.title: str | None = None
        self.summary: str | None = None
        self.summary_base = ""
        self.content: tuple[str, str] | None = None  # the first one: (value, base)
        self.author: str | None = None
        # The last <author>'s name/email/href, or None before the first <author> starts.
        self.author_detail: dict[str, str] | None = None
        # The text of the last published and updated elements, read as dates only when the
        # entry is made (and the second only if the first gives none).
        self.published: str | None = None
        self.updated: str | None = None
        # feedparser's property_depth_map: a value from a deeper element does not replace one
        # from a shallower element.
        self.depth: dict[str, int] = {}

    def keep(self, key: str, depth: int) -> bool:
        """Whether a value for `key` from an element at `depth` replaces the one held."""
        old = self.depth.get(key)
        if old is None or depth <= old:
            self.depth[key] = depth
            return True
        return False


class _FastReader:
    """Reads a tree as feedparser's SAX handlers read the same document (feedparser 6.0.14,
    feedparser/mixin.py and namespaces/_base.py), for the elements that decide our fields."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url  # feedparser's self.baseuri
        self.base_stack: list[str] = []
        self.depth = 0
        self.version = ""
        self.in_feed = False
        self.item: _Item | None = None
        self.items: list[_Item] = []
        self.title_depth = -1
        self.has_content = False
        self.guid_is_link = False
        self.feed_summary = False
        self.feed_title: str | None = None
        self.feed_link: str | None = None
        self.feed_ttl: str | None = None
        self.tracking_base = False
        self.text_of = _feedparser_text

    def read(self, body: bytes, *, recoded: bool = False) -> ParsedFeed:
        if body[:1].isspace() and body.lstrip()[:5] == b"<?xml":
            # Blank lines before the XML declaration (a template's): the only thing that makes
            # such a document not well-formed, and what feedparser reads past.
            body = body.lstrip()
        first = _FIRST_ELEMENT.search(body)
        head_end = first.start() if first else len(body)
        if _DOCTYPE.search(body, 0, head_end):
            _refuse_hostile_entities(body)
            body = self._without_doctype(body, head_end)
        try:
            root = etree.fromstring(body, parser=_PARSERS.strict)
        except etree.XMLSyntaxError as exc:
            if _ENTITY.search(body):  # a DTD the look at the head missed (after a comment)
                _refuse_hostile_entities(body)
            if "Excessive depth" in str(exc):
                raise NotAFeed(
                    f"the document nests elements deeper than any feed does ({exc})"
                ) from exc
            utf8 = None if recoded else _recoded(body, exc)
            if utf8 is None:
                raise Routed(f"the document is not well-formed XML ({exc})") from exc
            return self.read(utf8, recoded=True)
        if root is None:
            raise Routed("the document has no root element")
        docinfo = root.getroottree().docinfo
        if docinfo.encoding.upper() == "UTF-8" and not _holds_c1(body):
            self.text_of = _feedparser_text_without_c1  # type: ignore[assignment]
        if docinfo.doctype:
            _refuse_hostile_entities(body)
            raise Routed("the document has a DOCTYPE")
        if b"xmlns:" in body:
            _refuse_renamed_prefixes(body)
        tag = root.tag
        if tag == "rss":
            self.version = "rss20"
        elif tag == f"{{{_ATOM}}}feed":
            self.version = "atom10"
        elif tag == f"{{{_RDF}}}RDF" and root.find(f"{{{_RSS1}}}channel") is not None:
            self.version = "rss10"
        else:
            raise Routed(f"the root element is {tag}, not RSS 2.0, Atom 1.0 or RSS 1.0")
        if _BASE_ATTRIBUTE.search(body):  # else no xml:base: the base stays the feed URL
            self.tracking_base = True
            self._visit = self._visit_tracking_base  # type: ignore[method-assign]
        self._visit(root)
        return ParsedFeed(
            title=html_to_text(self.feed_title or "")[:300],
            site_url=_clip_url(self.feed_link or ""),
            entries=_usable(self._entry(item) for item in self.items[:MAX_ENTRIES]),
            ttl_seconds=_ttl_seconds(self.feed_ttl),
            parser="fast",
        )

    @staticmethod
    def _without_doctype(body: bytes, head_end: int) -> bytes:
        """The document without its DOCTYPE, as feedparser reads it, if that is all feedparser
        does to it: one DOCTYPE, no internal subset (entities feedparser keeps), not
        Netscape's RSS 0.91 (which sets feedparser's version). Else Routed."""
        doctype = _PLAIN_DOCTYPE.search(body, 0, head_end)
        if (
            doctype is None
            or _ENTITY.search(body, 0, head_end)
            or _DOCTYPE.search(body, doctype.end(), head_end)
            or b"netscape" in doctype.group().lower()
        ):
            raise Routed("the document has a DOCTYPE")
        # Entities the DTD would define are undefined now: such a document is not well-formed
        # to the strict parser and goes to feedparser as one.
        return body[: doctype.start()] + body[doctype.end() :]

    @staticmethod
    def _entry(item: _Item) -> ParsedEntry:
        raw_html, base = item.content or (item.summary or "", item.summary_base)
        # XML cannot hold NUL characters, so these need no _str().
        return _entry(
            guid=item.id or "",
            link=item.link or "",
            title=item.title or "",
            raw_html=raw_html,
            base=base,
            author=item.author or "",
            published_at=_date_of(item.published) or _date_of(item.updated),
        )

    # Walking the tree: feedparser's unknown_starttag / unknown_endtag.

    def _visit(self, el: Any) -> None:
        self.depth += 1
        name, handler = _TAGS.get(el.tag) or self._lookup(el)
        if handler is not None:
            handler(self, el, name)
        elif len(el):
            self._children(el)
        self.depth -= 1

    def _visit_tracking_base(self, el: Any) -> None:
        """_visit, keeping xml:base as feedparser does (unknown_starttag/unknown_endtag)."""
        base = el.get(_XML_BASE)
        if base is None:
            base = el.get("base")
        if base:
            if self.base:
                self.base = make_safe_absolute_uri(self.base, base) or self.base
            else:
                self.base = _urljoin(self.base, base)
        self.base_stack.append(self.base)
        _FastReader._visit(self, el)
        self.base_stack.pop()
        # feedparser goes back to the parent's base only if that one is not empty.
        if self.base_stack and self.base_stack[-1]:
            self.base = self.base_stack[-1]

    def _children(self, el: Any) -> None:
        if not self.tracking_base:
            # _visit for each child, inlined: this loop runs for every element of the feed.
            self.depth += 1
            for child in el:
                name, handler = _TAGS.get(child.tag) or self._lookup(child)
                if handler is not None:
                    handler(self, child, name)
                elif len(child):
                    self._children(child)
            self.depth -= 1
        else:
            for child in el:
                self._visit(child)

    @classmethod
    def _name(cls, el: Any) -> str:
        return cls._lookup(el)[0]

    @staticmethod
    def _lookup(el: Any) -> tuple[str, Any]:
        tag = el.tag
        known = _TAGS.get(tag)
        if known is not None:
            return known
        if tag[0] != "{":
            name = tag.lower()
        else:
            uri, _, local = tag[1:].partition("}")
            low = uri.lower()
            prefix = "" if "backend.userland.com/rss" in low else _NS_PREFIX.get(low)
            if prefix is None:
                # An unknown namespace: feedparser names the element by the declared prefix.
                given = (el.prefix or "").lower()
                name = f"{given}_{local.lower()}" if given else local.lower()
                return name, _HANDLERS.get(name)
            name = f"{prefix}_{local.lower()}" if prefix else local.lower()
        if len(_TAGS) >= _MAX_TAGS:
            _TAGS.clear()
        known = _TAGS[tag] = (name, _HANDLERS.get(name))
        return known

    # Text as feedparser's pop() returns it.

    def _text(self, el: Any, name: str) -> str:
        if len(el):
            raise Routed(f"<{name}> holds elements")
        return self.text_of((el.text or "").strip())

    def _content_text(self, el: Any, name: str, default_type: str) -> str:
        """The value of an element feedparser reads with push_content: text or inline XHTML."""
        if not el.items():  # the defaults are text types
            if len(el):
                raise Routed(f"<{name}> holds elements")
            return self.text_of((el.text or "").strip())
        attrs = _attrs(el)
        content_type = _map_content_type(attrs.get("type", default_type))
        if attrs.get("mode") == "base64" or not (
            content_type.startswith("text/") or content_type.endswith(("+xml", "/xml"))
        ):
            raise Routed(f"<{name}> is base64-encoded")
        if content_type != "application/xhtml+xml":
            return self._text(el, name)
        pieces: list[str] = []
        if el.text:
            pieces.append(xml_escape(el.text))
        self._xhtml(el, pieces)
        if self.version == "atom10":
            # feedparser drops a <div> that wraps all of the content.
            while len(pieces) > 1 and not pieces[-1].strip():
                del pieces[-1]
            while len(pieces) > 1 and not pieces[0].strip():
                del pieces[0]
            if (
                pieces
                and (pieces[0] == "<div>" or pieces[0].startswith("<div "))
                and pieces[-1] == "</div>"
                and _wraps_all(pieces)
            ):
                pieces = pieces[1:-1]
        # As _void_end_tags does to feedparser's value.
        return self.text_of("".join(pieces).strip()).replace("</br>", "")

    def _xhtml(self, el: Any, pieces: list[str]) -> None:
        for child in el:
            name = self._name(child)
            local = child.tag.rpartition("}")[2].lower()
            if name in _END_HANDLERS or local in ("svg", "math"):
                raise Routed(f"inline XHTML holds <{name}>, which feedparser treats specially")
            attrs = "".join(
                f' {key}="{xml_escape(value, {chr(34): "&quot;"})}"'
                for key, value in _attrs(child).items()
            )
            pieces.append(f"<{local}{attrs}>")
            if child.text:
                pieces.append(xml_escape(child.text))
            self._xhtml(child, pieces)
            pieces.append(f"</{local}>")
            if child.tail:
                pieces.append(xml_escape(child.tail))

    # Handlers: feedparser's _start_* / _end_* for the elements that decide our fields.

    def _feed(self, el: Any, name: str) -> None:
        if self.item is not None:
            raise Routed(f"<{name}> inside an entry")
        if name == "channel" and _cdf(el):
            raise Routed("a CDF channel")
        self.in_feed = True
        self._children(el)
        self.in_feed = False

    def _rss(self, el: Any, name: str) -> None:
        if self.depth != 1:
            raise Routed("an <rss> element below the root")
        self._children(el)

    def _item(self, el: Any, name: str) -> None:
        if self.item is not None:
            raise Routed(f"an <{name}> inside an entry")
        item = self.item = _Item()
        self.items.append(item)
        self.guid_is_link = False
        self.title_depth = -1
        if el.items():
            if _cdf(el):
                raise Routed("a CDF item")
            about = el.get(_RDF_ABOUT)
            if about:
                item.id = about
        self._children(el)
        self.item = None
        self.has_content = False

    def _title(self, el: Any, name: str) -> None:
        value = self._content_text(el, name, "text/plain")
        title_depth = self.title_depth
        if not (-1 < self.title_depth <= self.depth):
            if self.item is not None:
                if self.item.keep("title", self.depth):
                    self.item.title = value
            elif self.in_feed:
                self.feed_title = value
        if value:
            self.title_depth = self.depth
        if name == "media_title":
            self.title_depth = title_depth

    def _link(self, el: Any, name: str) -> None:
        attrs = _attrs(el) if el.items() else {}
        rel = attrs.get("rel", "alternate")
        link_type = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html")
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        if href:
            href = _resolve(self.base, href)
            if rel == "alternate" and _map_content_type(link_type) in _HTML_TYPES:
                if self.item is not None:
                    self.item.link = href
                else:
                    self.feed_link = href
            self._children(el)
            return
        value = self._text(el, name)
        if value:
            value = self.text_of(_resolve(self.base, (el.text or "").strip()))
        if self.item is not None:
            if "&" in value:
                value = _LINK_ENTITY.sub(r"&\g<1>", value.replace("&amp;", "&"))
            self.item.link = value
        elif self.in_feed:
            self.feed_link = _LINK_ENTITY.sub(r"&\g<1>", value) if "&" in value else value

    def _guid(self, el: Any, name: str) -> None:
        self.guid_is_link = not el.items() or _attrs(el).get("ispermalink", "true") == "true"
        value = self._text(el, name)
        if value and self.guid_is_link:
            value = self.text_of(_resolve(self.base, (el.text or "").strip()))
        item = self.item
        if item is None:
            # _save('link', ...) fills the feed's link, whether or not inside <channel>.
            if self.guid_is_link and self.feed_link is None:
                self.feed_link = value
            return
        if item.keep("id", self.depth):
            item.id = value
        if self.guid_is_link and item.link is None:
            item.link = value

    def _description(self, el: Any, name: str) -> None:
        item = self.item
        has_summary = self.feed_summary if item is None else item.summary is not None
        if has_summary and not self.has_content:
            # feedparser reads a second summary or description as content.
            self._content(el, "content")
            return
        default = "text/html" if name in _DESCRIPTIONS else "text/plain"
        value = self._content_text(el, name, default)
        if item is not None:
            if item.keep("summary", self.depth):
                item.summary, item.summary_base = value, self.base
        elif self.in_feed and name in _SUMMARIES:
            self.feed_summary = True

    def _content(self, el: Any, name: str) -> None:
        self.has_content = True
        default = "text/html" if name in ("content_encoded", "fullitem") else "text/plain"
        value = self._content_text(el, name, default)
        # _end_content copies text and HTML content to the summary, if there is none yet.
        content_type = _attrs(el).get("type", default) if el.items() else default
        to_summary = _map_content_type(content_type) in _SUMMARY_TYPES
        item = self.item
        if item is None:
            if to_summary:  # _save('summary') on the feed, inside <channel> or not
                self.feed_summary = True
            return
        if item.content is None:
            item.content = (value, self.base)
        if to_summary and item.summary is None:
            item.summary, item.summary_base = value, self.base  # no depth recorded

    def _author(self, el: Any, name: str) -> None:
        item = self.item
        if item is None:
            self._skip(el, name)
            return
        item.author_detail = {}
        pieces = [el.text or ""]
        for child in el:
            child_name = self._name(child)
            part = _AUTHOR_PARTS.get(child_name)
            if part is not None:
                self._author_part(child, part)
            elif child_name in _HANDLERS or len(child):
                raise Routed(f"<{name}> holds <{child_name}>")
            elif len(child.attrib):
                # feedparser keeps an unknown element with attributes (Blogger's <gd:image>)
                # as a dictionary and reads its text as part of the enclosing element.
                pieces.append(child.text or "")
            pieces.append(child.tail or "")
        value = self.text_of("".join(pieces).strip())
        if item.keep("author", self.depth):
            item.author = value
        self._sync_author(item)

    def _author_part(self, el: Any, part: str) -> None:
        # Only whether a name, an email or a link was given matters, and the name and email.
        value = self._text(el, part)
        item = self.item
        assert item is not None and item.author_detail is not None
        self._sync_author(item)
        item.author_detail[part] = value

    @staticmethod
    def _sync_author(item: _Item) -> None:
        detail = item.author_detail
        if detail:
            name, email = detail.get("name"), detail.get("email")
            if name and email:
                item.author = f"{name} ({email})"
            elif name:
                item.author = name
            elif email:
                item.author = email

    def _date(self, el: Any, name: str) -> None:
        value = self._text(el, name)
        if self.item is not None:
            if name in _PUBLISHED:
                self.item.published = value
            else:
                self.item.updated = value

    def _ttl(self, el: Any, name: str) -> None:
        value = self._text(el, name)
        if self.item is None and self.in_feed:
            self.feed_ttl = value

    def _source(self, el: Any, name: str) -> None:
        # What is inside goes to entry.source; only its titles leave a trace (title_depth).
        self.title_depth = -1
        self._source_titles(el, self.depth)

    def _source_titles(self, el: Any, depth: int) -> None:
        for child in el:
            name = self._name(child)
            if name in _TITLES:
                if self._content_text(child, name, "text/plain") and name != "media_title":
                    self.title_depth = depth + 1
            elif name in _OTHER_TEXTS:
                self._other_text(child, name)
            elif name in _SOURCE_ROUTES:
                raise Routed(f"<{name}> inside <source>")
            else:
                self._source_titles(child, depth + 1)

    def _image(self, el: Any, name: str) -> None:
        allowed = _IMAGE_CHILDREN if name == "image" else _TEXTINPUT_CHILDREN
        if self.item is not None and len(el):
            raise Routed(f"an <{name}> with elements inside an entry")
        self.title_depth = -1
        for child in el:
            child_name = self._name(child)
            if child_name not in allowed:
                raise Routed(f"<{child_name}> inside <{name}>")
            if len(child):
                raise Routed(f"<{child_name}> inside <{name}> holds elements")
            if child_name == "title" and self.text_of((child.text or "").strip()):
                self.title_depth = self.depth + 1

    def _skip(self, el: Any, name: str) -> None:
        """An element whose content feedparser files away from our fields."""
        for descendant in el.iterdescendants():
            if self._name(descendant) in ("item", "entry"):
                raise Routed(f"an entry inside <{name}>")

    def _other_text(self, el: Any, name: str) -> None:
        if len(el):
            self._content_text(el, name, "text/plain")  # routes anything feedparser would act on

    def _owner(self, el: Any, name: str) -> None:
        if self.item is not None:
            raise Routed(f"<{name}> inside an entry")
        self._skip(el, name)

    def _unexpected(self, el: Any, name: str) -> None:
        raise Routed(f"<{name}>, which the fast reader does not read")


def _recoded(body: bytes, error: etree.XMLSyntaxError) -> bytes | None:
    """The document as feedparser's strict parser reads it, if the only thing wrong with it is
    its XML declaration: feedparser decodes every document itself (the declared encoding is
    one guess among others) and hands its parser UTF-8 with a declaration saying so. A UTF-8
    document that declares UTF-16 fails at the declaration for the strict parser here, and
    reads in full once decoded as feedparser decodes it. None if that is not the case (or
    feedparser's strict parser would not read the result either)."""
    if error.position[0] != 1 or not body.startswith(b"<?xml"):
        return None
    result: dict[str, Any] = {}
    try:
        recoded = convert_to_utf8({}, body, result)
    except (ValueError, UnicodeError):
        return None
    declaration_end = recoded.find(b"?>")
    if (
        not result.get("encoding")
        or recoded == body
        or not recoded.startswith(b"<?xml")
        or b"utf-8" not in recoded[:declaration_end].lower()
        or expat_error(replace_doctype(recoded)[1]) is not None
    ):
        return None
    return recoded


def _refuse_renamed_prefixes(body: bytes) -> None:
    """Routed if feedparser would name some element by another prefix than its namespace or
    its own prefix gives. It keeps, for the whole document, a map from each prefix declared
    for a namespace it knows to that namespace's usual prefix (xmlns:foo="<Dublin Core>":
    foo -> dc), and applies it to every element's prefix: with xmlns:dc bound to Media RSS,
    a Dublin Core element, or one of an unknown namespace declared as dc:, would be read as
    media:. Prefixes bound to their usual namespace, or in upper case, change nothing."""
    renamed: dict[str, str] = {}
    unknown: set[str] = set()
    for match in _XMLNS_PREFIX.finditer(body):
        prefix = match.group(1).decode("utf-8", "replace")
        uri = (match.group(2) or match.group(3) or b"").decode("utf-8", "replace").lower()
        usual = "" if "backend.userland.com/rss" in uri else _NS_PREFIX.get(uri)
        if usual is None:
            unknown.add(prefix.lower())
        elif usual != prefix and prefix == prefix.lower():
            renamed[prefix] = usual
    clash = set(renamed) & (_USUAL_PREFIXES | unknown)
    if clash:
        prefix = min(clash)
        raise Routed(
            f"the prefix {prefix}: is declared for a namespace feedparser calls "
            f"{renamed[prefix] or 'the feed'}'s, which renames every {prefix}: element"
        )


def _holds_c1(body: bytes) -> bool:
    """Whether a UTF-8 document may hold a C1 control character. Two searches, each run only
    if its first bytes are there: one pattern with both alternatives is several times slower
    on documents full of escaped markup ("&lt;")."""
    return bool(
        (b"\xc2" in body and _C1_ENCODED.search(body))
        or (b"&#" in body and _C1_REFERENCE.search(body))
    )


def _refuse_hostile_entities(body: bytes) -> None:
    """NotAFeed for a DTD that declares an entity other than a short text or an XHTML entity
    set: external (XXE: a file or URL), a parameter entity, or one made of other entities
    (billion laughs)."""
    declared = len(_ENTITY.findall(body))
    if declared and len(_SIMPLE_ENTITY.findall(body)) != declared:
        raise NotAFeed(
            "the feed's DOCTYPE declares XML entities that are external, parameter entities or "
            "built from other entities (the XXE and billion-laughs patterns); it is not read"
        )


def _cdf(el: Any) -> bool:
    attrs = _attrs(el)
    return "lastmod" in attrs or "href" in attrs


def _wraps_all(pieces: list[str]) -> bool:
    # The loop from feedparser's pop(): the first <div> closes only at the last piece.
    depth = 0
    for piece in pieces[:-1]:
        if piece.startswith("</"):
            depth -= 1
            if depth == 0:
                return False
        elif piece.startswith("<") and not piece.endswith("/>"):
            depth += 1
    return True


def _attrs(el: Any) -> dict[str, str]:
    """An element's attributes as feedparser sees them: names lower-cased and prefixed as it
    prefixes namespaces, values of rel and type lower-cased."""
    attrs = {}
    for key, value in el.items():
        if key[0] == "{":
            uri, _, local = key[1:].partition("}")
            prefix = _NS_PREFIX.get(uri.lower())
            key = f"{prefix}:{local}" if prefix else local
        key = key.lower()
        attrs[key] = value.lower() if key in ("rel", "type") else value
    return attrs


def _dispatch() -> dict[str, Any]:
    table: dict[str, Any] = {}
    for names, handler in (
        ({"channel", "feed"}, _FastReader._feed),
        ({"rss"}, _FastReader._rss),
        ({"item", "entry"}, _FastReader._item),
        (_TITLES, _FastReader._title),
        ({"link"}, _FastReader._link),
        ({"guid", "id"}, _FastReader._guid),
        (_DESCRIPTIONS | _SUMMARIES, _FastReader._description),
        (_CONTENTS, _FastReader._content),
        (_AUTHORS, _FastReader._author),
        (_PUBLISHED | _UPDATED, _FastReader._date),
        ({"ttl"}, _FastReader._ttl),
        ({"source"}, _FastReader._source),
        ({"image", "textinput"}, _FastReader._image),
        (_OTHER_TEXTS, _FastReader._other_text),
        (
            {"contributor", "dc_contributor", "webmaster", "dc_publisher", "language",
             "dc_language"},
            _FastReader._skip,
        ),
        ({"itunes_owner"}, _FastReader._owner),
        ({"abstract", "body", "xhtml_body"}, _FastReader._unexpected),
    ):  # fmt: skip
        table.update(dict.fromkeys(names, handler))
    return table


_HANDLERS = _dispatch()
