"""What "safe" means for our outputs, checked independently of the code under test.

Sanitized HTML is re-parsed (lxml's HTML parser, not the sanitizer's html5ever) and every
element, attribute and URL is held against the policy below, which is the one feeds/sanitize.py
documents: a small allow-list of tags and attributes, http/https/mailto URLs only. URL schemes
are read the way a browser reads them (WHATWG URL parsing: surrounding C0 controls and spaces
dropped, tabs and newlines removed anywhere), so `java\\tscript:` counts as javascript.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import lxml.html
from lxml import etree

from feeds.parsing import ParsedEntry

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h1", "h2",
        "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "s", "small",
        "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
# nh3 (Ammonia) allows these generic attributes on every tag; rel is the sanitizer's own.
GENERIC_ATTRIBUTES = frozenset({"title", "lang"})
ALLOWED_ATTRIBUTES = {
    "a": frozenset({"href", "rel"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "td": frozenset({"colspan", "rowspan"}),
    "th": frozenset({"colspan", "rowspan"}),
}
URL_ATTRIBUTES = frozenset({"href", "src"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
# Never in sanitized output, whatever the allow-list becomes.
DANGEROUS_TAGS = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg",
        "math", "form", "input", "button", "textarea", "select", "base", "meta", "link",
        "noscript", "template", "xmp", "plaintext", "noembed", "noframes",
    }
)  # fmt: skip
_STRIPPED = "".join(chr(c) for c in range(0x21))  # C0 controls and space
_TAB_OR_NEWLINE = re.compile("[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_WRAPPER = "fuzz-wrapper"


def url_scheme(url: str) -> str | None:
    """The scheme a browser would see in this attribute value (None: a relative URL)."""
    cleaned = _TAB_OR_NEWLINE.sub("", url.strip(_STRIPPED))
    match = _SCHEME.match(cleaned)
    return match.group(1).lower() if match else None


def html_problems(html: str) -> list[str]:
    """Everything in `html` that the sanitizer's policy does not allow (empty: safe)."""
    if not html.strip():
        return []
    problems = []
    parser = lxml.html.HTMLParser(remove_comments=False)
    try:
        root = lxml.html.fragment_fromstring(
            f"<{_WRAPPER}>{html}</{_WRAPPER}>", parser=parser, create_parent=False
        )
    except (etree.ParserError, ValueError) as exc:
        return [f"sanitized HTML does not re-parse: {exc}"]
    for el in root.iter():
        if el is root:
            continue
        if not isinstance(el.tag, str):
            if isinstance(el, etree._Comment):
                problems.append(f"a comment survived: {el.text!r}")
            continue
        tag = el.tag.lower()
        if tag in DANGEROUS_TAGS or tag not in ALLOWED_TAGS:
            problems.append(f"<{tag}> survived")
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset()) | GENERIC_ATTRIBUTES
        for name, value in el.attrib.items():
            name = name.lower()
            if name.startswith("on"):
                problems.append(f"event handler {name}={value!r} on <{tag}>")
            elif name not in allowed:
                problems.append(f"attribute {name}={value!r} on <{tag}>")
            if name in URL_ATTRIBUTES or name not in allowed:
                scheme = url_scheme(value)
                if scheme is not None and scheme not in SAFE_SCHEMES:
                    problems.append(f"{scheme}: URL in {name}={value!r} on <{tag}>")
    return problems


def assert_safe_html(html: str) -> None:
    problems = html_problems(html)
    assert not problems, f"unsafe HTML {html!r}: {problems}"


def unstorable(value: str) -> str:
    """Why PostgreSQL (UTF-8 text) cannot store `value` ('' when it can)."""
    if "\x00" in value:
        return "NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate"
    return ""


def assert_storable(name: str, value: str) -> None:
    why = unstorable(value)
    assert not why, f"{why} in {name}, which PostgreSQL cannot store: {value!r}"


def assert_clean_entry(entry: ParsedEntry, *, canary: str | None = None, parser: str = "") -> None:
    """An entry we may store and serve: sanitized HTML, an http(s) link or none, an id that
    fits its column, nothing PostgreSQL cannot store (NUL, lone surrogates), an aware date.

    `canary`: a word the input held inside script and style elements only; it must not reach
    the entry's HTML or text. (Title and author are plain text, escaped wherever they are
    shown: a feed that escapes markup in them means it as text, so the word may show there.)
    `parser`: which reader made the entry, for the failure message.
    """
    assert_safe_html(entry.html)
    assert entry.url == "" or entry.url.lower().startswith(("http://", "https://")), entry.url
    assert 0 < len(entry.external_id) <= 512, entry.external_id
    for name in ("external_id", "url", "title", "text", "html", "author", "link_key"):
        value = getattr(entry, name)
        assert isinstance(value, str), (name, value)
        assert_storable(name, value)
    assert entry.published_at is None or (
        isinstance(entry.published_at, datetime) and entry.published_at.utcoffset() is not None
    ), entry.published_at
    if canary is not None:
        for name in ("text", "html"):
            assert canary not in getattr(entry, name), (
                f"script text leaked into {name} (parser: {parser or 'n/a'})"
            )


# --- File and network access ---------------------------------------------------------------

_AUDITED = frozenset({"open", "socket.connect", "socket.getaddrinfo", "urllib.Request"})
# Python itself opens its own modules (a codec imported on first use): not the parser's doing.
_PYTHON_DIRS = tuple(
    {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_recorders: list[list[tuple[str, object]]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _recorders or event not in _AUDITED:
        return
    if event == "open":
        path = args[0]
        if not isinstance(path, str | bytes):
            return  # a file descriptor
        name = path.decode(errors="replace") if isinstance(path, bytes) else path
        if name.startswith(_PYTHON_DIRS) or name.endswith((".py", ".pyc", ".so")):
            return
    for recorder in _recorders:
        recorder.append((event, args[0] if args else None))


sys.addaudithook(_audit)


@contextmanager
def no_file_or_network_access() -> Iterator[list[tuple[str, object]]]:
    """Record (event, first argument) for the files Python code opens and the connections and
    lookups it makes inside the block (audit events). Code in C (libxml2) is not seen: check
    what it could leak instead."""
    recorded: list[tuple[str, object]] = []
    _recorders.append(recorded)
    try:
        yield recorded
    finally:
        _recorders.remove(recorded)
