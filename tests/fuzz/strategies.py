"""Hypothesis strategies for hostile input: URLs, HTML, RSS/Atom/RDF/JSON Feed documents.

Two kinds of HTML. `html_trees` is markup a browser would read as elements: script and style
elements appear only where they are elements (never inside a raw-text element, a comment or an
attribute), and their bodies carry CANARY, so any trace of CANARY in an output is script or
style text that leaked. `html_soup` is anything: tokens that open comments, CDATA, raw-text
elements and tags without closing them, with entities and control characters; only the safety
of the output is checked for it.
"""

from __future__ import annotations

import base64
import html as html_lib
import json
from xml.sax.saxutils import escape as xml_escape

from hypothesis import strategies as st

# Letters only: no escaping or entity decoding changes it. Spelled so that it is not a string
# constant in the source (Hypothesis mixes the constants it finds there into generated text),
# and kept out of generated text below.
CANARY = "".join(["Zqx", "Canary", "Script", "Body"])

# --- Text ------------------------------------------------------------------------------------

# Characters that matter to parsers, sanitizers and the database, besides ordinary letters.
_SPECIAL_CHARS = (
    "<>&\"'=/;:#?%\\ \t\r\n\x0c\x0b\x00\x01\x08\x1b\x7f\x85\xa0\u2028\u2029\ufeff\ufffe"
    "\u200b\u202e\U0001f600\u0430\u00e9\uff1c\uff1e"
)
ENTITIES = [
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&nbsp;", "&eacute;", "&#0;", "&#x0;", "&#1;",
    "&#xD800;", "&#55296;", "&#1114112;", "&#x110000;", "&#99999999999;", "&#x6A;", "&#106;",
    "&#9;", "&#x0A;", "&#128;", "&#x9F;", "&unknown;", "&#;", "&#x;", "&", "&amp;lt;",
    "&lt;script&gt;", "&amp;#106;",
]  # fmt: skip

hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from(_SPECIAL_CHARS), st.characters(codec="utf-8")),
    max_size=40,
).map(lambda text: text.replace(CANARY, ""))
plain_words = st.text(alphabet="abcdefghij KLMNOP", max_size=20)

# --- URLs ------------------------------------------------------------------------------------

HOSTILE_URLS = [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)",
    "java\nscript:alert(1)", "javascript&#9;:alert(1)", "&#106;avascript:alert(1)",
    "&#x6A;avascript:alert(1)", " javascript:alert(1)", "\x01javascript:alert(1)",
    "java\x00script:alert(1)", "javascript&colon;alert(1)", "vbscript:msgbox(1)",
    "livescript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+", "data:image/png;base64,iVBORw0=",
    "feed:javascript:alert(1)", "jar:http://example.test!/", "file:///etc/passwd",
    "//evil.example/x", "/relative?a=1#f", "relative/path", "#frag", "?q=1", "",
    "http://example.test/a?utm_source=x&b=2", "https://example.test/", "HTTPS://EXAMPLE.TEST/",
    "mailto:a@b.example", "http://[::1]/", "http://127.0.0.1/", "http://169.254.169.254/",
    "https://exa mple.test/", "http://\u0430pple.test/", "http://a/" + "x" * 3000,
    "http://user:pass@example.test/", "http://example.test:99999/", "http://[bad/",
    "https://example.test/\x00nul", "http:\\\\example.test\\x",
]  # fmt: skip
_URL_PREFIXES = [
    "http://", "https://", "javascript:", "JAVASCRIPT:", "java\tscript:", "data:", "vbscript:",
    "//", "/", "", "mailto:", "ftp://", "http://example.test/", "https://example.test/?",
]  # fmt: skip

url_values = st.one_of(
    st.sampled_from(HOSTILE_URLS),
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(_URL_PREFIXES), hostile_text),
)

# --- HTML ------------------------------------------------------------------------------------

_ALLOWED = [
    "a", "b", "blockquote", "code", "em", "figure", "h1", "h2", "i", "li", "ol", "p", "pre",
    "q", "small", "strong", "sub", "table", "tbody", "td", "th", "tr", "u", "ul",
]  # fmt: skip
# Containers whose content is parsed as markup (so a <script> inside is an element).
_OTHER_CONTAINERS = [
    "div", "span", "font", "center", "marquee", "blink", "details", "summary", "svg", "math",
    "mtext", "mglyph", "foreignObject", "annotation-xml", "desc", "form", "button", "label",
    "select", "option", "object", "video", "audio", "picture", "map", "dialog", "article",
    "section", "nav", "header", "footer", "main", "aside", "template", "frameset", "applet",
]  # fmt: skip
_VOID = ["img", "br", "hr", "input", "embed", "source", "track", "area", "base", "meta", "link",
         "param", "wbr", "image", "keygen"]  # fmt: skip
_ATTRIBUTE_NAMES = [
    "href", "src", "srcset", "style", "title", "alt", "width", "colspan", "onerror", "onload",
    "onclick", "onmouseover", "OnFocus", "autofocus", "formaction", "action", "data", "poster",
    "background", "xlink:href", "xmlns", "srcdoc", "dynsrc", "lowsrc", "ping", "target", "rel",
    "id", "class", "is", "http-equiv", "content",
]  # fmt: skip
_STYLE_VALUES = [
    "width:expression(alert(1))", "background:url(javascript:alert(1))",
    "behavior:url(x.htc)", "-moz-binding:url(x.xml#xss)", "color:red",
    "background-image:url('https://example.test/a.png')",
]  # fmt: skip

attribute_values = st.one_of(url_values, hostile_text, st.sampled_from(_STYLE_VALUES))


@st.composite
def _attributes(draw: st.DrawFn) -> str:
    pairs = draw(
        st.lists(st.tuples(st.sampled_from(_ATTRIBUTE_NAMES), attribute_values), max_size=3)
    )
    return "".join(f' {name}="{html_lib.escape(value, quote=True)}"' for name, value in pairs)


def _text_node(xml: bool) -> st.SearchStrategy[str]:
    escape = xml_escape if xml else (lambda s: html_lib.escape(s, quote=False))
    return st.one_of(
        hostile_text.map(escape),
        st.sampled_from(ENTITIES[:8]),  # entities every XML and HTML parser knows
    )


_SCRIPTS = [
    "<script>{c}</script>", "<SCRIPT type='text/javascript'>{c}</SCRIPT>",
    "<script src='https://evil.test/x.js'>{c}</script>", "<style>p{{}} /* {c} */</style>",
    "<script>if (1 &lt; 2) {{ {c} }}</script>", "<script><!-- {c} --></script>",
]  # fmt: skip
_XML_SCRIPTS = [
    "<script>{c}</script>",
    "<script type='text/javascript'>{c}</script>",
    "<style>/* {c} */</style>",
]


def _leaf(xml: bool) -> st.SearchStrategy[str]:
    void = st.builds(
        lambda tag, attrs: f"<{tag}{attrs}{'/' if xml else ''}>",
        st.sampled_from(_VOID),
        _attributes(),
    )
    script = st.sampled_from(_XML_SCRIPTS if xml else _SCRIPTS).map(lambda s: s.format(c=CANARY))
    return st.one_of(_text_node(xml), void, script)


def _container(children: st.SearchStrategy[str], xml: bool) -> st.SearchStrategy[str]:
    return st.builds(
        lambda tag, attrs, inner, closed: (
            f"<{tag}{attrs}>{''.join(inner)}" + (f"</{tag}>" if closed or xml else "")
        ),
        st.sampled_from(_ALLOWED + _OTHER_CONTAINERS),
        _attributes(),
        st.lists(children, max_size=4),
        st.booleans(),
    )


def _trees(xml: bool) -> st.SearchStrategy[str]:
    return st.recursive(_leaf(xml), lambda kids: _container(kids, xml), max_leaves=25)


# Markup built as elements, script bodies holding CANARY; well-formed XML for xhtml_trees.
html_trees = _trees(xml=False)
xhtml_trees = _trees(xml=True)


_SOUP_TOKENS = [
    "<", ">", "</", "/>", "<!--", "-->", "--!>", "<!", "<![CDATA[", "]]>", "<?", "?>", '"', "'",
    "=", "<script>", "</script>", "<script", "<style>", "</style>", "<textarea>", "</textarea>",
    "<title>", "<noscript>", "</noscript>", "<xmp>", "<plaintext>", "<iframe>", "<noembed>",
    "<template>", "<svg>", "<svg/onload=alert(1)>", "<math><mtext><table><mglyph><style>",
    "<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)//", "<a href=javascript:alert(1)>",
    "<a href='java&#x09;script:alert(1)'>", "<object data=javascript:alert(1)>",
    "<iframe srcdoc='<script>alert(1)</script>'>", "<base href=javascript:/>",
    "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>", "<form action=x>",
    "<input onfocus=alert(1) autofocus>", "<div style=width:expression(alert(1))>",
    "<table><a href=javascript:alert(1)>", "<select><option><script>", "<p title=\"</p>",
    "<!DOCTYPE html>", "<html>", "</html>", "<body onload=alert(1)>", "</body>", "<head>",
    "<x onclick=alert(1)>", "<a href=\"https://example.test/?utm_source=a\">", "</a>", "<p>",
    "</p>", "<br>", "<li>", "<b>", "<i>", "</b>", "\x00", "\r", "\x0c", "\ufeff", "\u2028",
    "javascript:", "expression(", "on", "error", "alert(1)", " ",
]  # fmt: skip

html_soup = st.lists(
    st.one_of(st.sampled_from(_SOUP_TOKENS), st.sampled_from(ENTITIES), hostile_text),
    max_size=30,
).map("".join)

# --- Dates -----------------------------------------------------------------------------------

DATE_EDGES = [
    "0000-01-01", "0000-01-01T00:00:00Z", "9999-12-31T23:59:60Z", "9999-12-31 23:59:60Z",
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "Fri, 31 Dec 9999 23:59:59 -2359",
    "Mon, 01 Jan 0001 00:00:00 +2359", "Fri, 31 Dec 9999 23:59:60 GMT", "2024-02-30T00:00:00Z",
    "99999-01-01", "-0001-01-01", "1970-01-01T00:00:00Z", "2003-12-13T18:30:02.25+01:00",
    "2003-12-13T18:30:60Z", "Tue, 10 Jun 2003 04:00:00 GMT", "Tue, 10 Jun 2003 04:00:00 +9999",
    "10 Jun 2003", "2003-06", "2003", "yesterday", "", "\x00", "2026-13-45T99:99:99Z",
    "Sun, 06 Nov 1994 08:49:37 XYZ", "2004-02-28T18:14:55.000000000000001-08:00",
    "Thu, 01 Jan 1970 00:00:00 GMT", "Sat, 01 Jan 2000 00:00:00 EST",
    "1" * 40, "2026-05-01T10:00:00+14:00", "2026-05-01T10:00:00-12:00",
]  # fmt: skip
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@st.composite
def _formatted_date(draw: st.DrawFn) -> str:
    year = draw(st.integers(0, 10000))
    month, day = draw(st.integers(1, 12)), draw(st.integers(0, 32))
    hour, minute, second = (
        draw(st.integers(0, 25)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 61)),
    )
    sign, zh, zm = draw(st.sampled_from("+-")), draw(st.integers(0, 24)), draw(st.integers(0, 59))
    if draw(st.booleans()):
        zone = draw(st.sampled_from(["Z", f"{sign}{zh:02d}:{zm:02d}"]))
        return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{zone}"
    zone = draw(st.sampled_from(["GMT", "UT", "Z", "EST", f"{sign}{zh:02d}{zm:02d}"]))
    return f"{day} {_MONTHS[month - 1]} {year:04d} {hour:02d}:{minute:02d}:{second:02d} {zone}"


dates = st.one_of(st.sampled_from(DATE_EDGES), _formatted_date(), hostile_text)

# --- XML feed documents ----------------------------------------------------------------------

NAMESPACES = (
    ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
    ' xmlns:media="http://search.yahoo.com/mrss/"'
    ' xmlns:atom="http://www.w3.org/2005/Atom"'
)
DOCTYPES = [
    "",
    '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE rss SYSTEM "http://127.0.0.1:9/evil.dtd">',
    '<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>',
    '<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
    '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
    '"http://my.netscape.com/publish/formats/rss-0.91.dtd">',
    '<!DOCTYPE x [<!ENTITY js "<script>' + CANARY + '</script>">]>',
]
ENTITY_REFERENCES = ["&xxe;", "&remote;", "&d;", "&js;", "&nbsp;", "&eacute;", "&undefined;"]
ENCODINGS = ["utf-8", "UTF-8", "iso-8859-1", "windows-1252", "utf-16", "koi8-r", "x-bogus", ""]


def _field(tag: str, content: str, mode: str) -> str:
    if mode == "escaped":
        body = xml_escape(content)
    elif mode == "cdata":
        body = "<![CDATA[" + content.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    else:  # raw: possibly not well-formed, which sends the document to feedparser
        body = content
    return f"<{tag}>{body}</{tag}>"


_modes = st.sampled_from(["escaped", "escaped", "cdata", "raw"])
html_content = st.one_of(html_trees, html_soup)


@st.composite
def _rss_item(draw: st.DrawFn) -> str:
    parts = []
    choices = [
        ("title", st.one_of(hostile_text, html_trees)),
        ("link", url_values),
        ("guid", st.one_of(hostile_text, url_values, st.just("x" * 600))),
        ("description", html_content),
        ("content:encoded", html_trees),
        ("pubDate", dates),
        ("dc:date", dates),
        ("author", hostile_text),
        ("dc:creator", st.one_of(hostile_text, html_trees)),
        ("media:title", hostile_text),
    ]
    for tag, values in choices:
        if draw(st.booleans()):
            parts.append(_field(tag, draw(values), draw(_modes)))
    if draw(st.integers(0, 5)) == 0:
        parts.append(draw(st.sampled_from(ENTITY_REFERENCES)))
    return "<item>" + "".join(draw(st.permutations(parts))) + "</item>"


@st.composite
def _atom_text(draw: st.DrawFn, tag: str) -> str:
    kind = draw(st.sampled_from(["text", "html", "xhtml", "none", "base64"]))
    if kind == "xhtml":
        inner = draw(xhtml_trees)
        return (
            f'<{tag} type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">{inner}</div></{tag}>'
        )
    if kind == "base64":
        encoded = base64.b64encode(draw(html_content).encode()).decode()
        return f'<{tag} type="text/html" mode="base64">{encoded}</{tag}>'
    value = draw(st.one_of(hostile_text, html_content))
    attribute = "" if kind == "none" else f' type="{kind}"'
    return f"<{tag}{attribute}>{xml_escape(value)}</{tag}>"


@st.composite
def _atom_entry(draw: st.DrawFn) -> str:
    parts = []
    if draw(st.booleans()):
        parts.append(draw(_atom_text("title")))
    for tag in ("content", "summary"):
        if draw(st.booleans()):
            parts.append(draw(_atom_text(tag)))
    if draw(st.booleans()):
        rel = draw(st.sampled_from(["alternate", "self", "enclosure", ""]))
        href = xml_escape(draw(url_values), {'"': "&quot;"})
        parts.append(f'<link rel="{rel}" href="{href}"/>')
    if draw(st.booleans()):
        parts.append(f"<id>{xml_escape(draw(st.one_of(hostile_text, url_values)))}</id>")
    for tag in ("published", "updated"):
        if draw(st.booleans()):
            parts.append(f"<{tag}>{xml_escape(draw(dates))}</{tag}>")
    if draw(st.booleans()):
        name = xml_escape(draw(st.one_of(hostile_text, html_trees)))
        parts.append(f"<author><name>{name}</name></author>")
    base = ""
    if draw(st.booleans()):
        base = f' xml:base="{xml_escape(draw(url_values), {chr(34): "&quot;"})}"'
    return f"<entry{base}>" + "".join(draw(st.permutations(parts))) + "</entry>"


@st.composite
def _xml_document(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["rss", "atom", "rdf"]))
    title = _field("title", draw(hostile_text), draw(_modes))
    link = _field("link", draw(url_values), "escaped")
    if kind == "atom":
        entries = "".join(draw(st.lists(_atom_entry(), max_size=4)))
        body = f'<feed xmlns="http://www.w3.org/2005/Atom"{NAMESPACES}>{title}{entries}</feed>'
    elif kind == "rss":
        items = "".join(draw(st.lists(_rss_item(), max_size=4)))
        ttl = f"<ttl>{xml_escape(draw(hostile_text))}</ttl>" if draw(st.booleans()) else ""
        body = f'<rss version="2.0"{NAMESPACES}><channel>{title}{link}{ttl}{items}</channel></rss>'
    else:
        items = "".join(
            d.replace("<item>", '<item rdf:about="x">')
            for d in draw(st.lists(_rss_item(), max_size=3))
        )
        body = (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            f'xmlns="http://purl.org/rss/1.0/"{NAMESPACES}><channel>{title}{link}</channel>'
            f"{items}</rdf:RDF>"
        )
    encoding = draw(st.sampled_from(ENCODINGS))
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else ""
    return declaration + draw(st.sampled_from(DOCTYPES)) + body


def _encode(document: str, how: str) -> bytes:
    if how == "utf-8":
        return document.encode("utf-8")
    if how == "bom":
        return b"\xef\xbb\xbf" + document.encode("utf-8")
    if how == "utf-16":  # with a BOM whatever the declaration says
        return document.encode("utf-16")
    if how == "utf-16-wrong-bom":
        return b"\xfe\xff" + document.encode("utf-16-le")
    if how == "latin-1":  # invalid UTF-8 where the declaration may say UTF-8
        return document.encode("latin-1", errors="xmlcharrefreplace")
    return document.encode("cp1251", errors="replace")


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[bytes]) -> bytes:
    """`documents`, sometimes cut short or with hostile bytes spliced in."""
    data = draw(documents)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        junk = draw(
            st.one_of(
                st.sampled_from(
                    [b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"]]>", b"<", b"&"]
                ),
                st.binary(max_size=8),
            )
        )
        data = data[:at] + junk + data[at:]
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


xml_feeds = mutated(
    st.builds(
        _encode,
        _xml_document(),
        st.sampled_from(
            ["utf-8", "utf-8", "utf-8", "bom", "utf-16", "utf-16-wrong-bom", "latin-1", "cp1251"]
        ),
    )
)

# --- JSON Feed -------------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    hostile_text,
    st.sampled_from(
        ["\ud800", "a\udfffb", "\x00", "https://example.test/a?utm_source=x", "javascript:alert(1)"]
    ),
)
json_values = st.recursive(
    _json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.dictionaries(st.sampled_from(["name", "url", "x"]), kids, max_size=3),
    ),
    max_leaves=8,
)
_JSON_FIELDS = {
    "id": st.one_of(hostile_text, st.integers(), st.just("i" * 600), json_values),
    "url": st.one_of(url_values, json_values),
    "external_url": url_values,
    "title": st.one_of(hostile_text, html_trees, json_values),
    "content_html": st.one_of(html_content, json_values),
    # Plain text by the spec: markup in it is text, so no CANARY here.
    "content_text": st.one_of(hostile_text, json_values),
    "summary": hostile_text,
    "date_published": st.one_of(dates, json_values),
    "date_modified": dates,
    "author": json_values,
    "authors": st.one_of(
        st.lists(st.fixed_dictionaries({}, optional={"name": json_values, "url": url_values})),
        json_values,
    ),
}


@st.composite
def _json_item(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 6)) == 0:
        return draw(json_values)
    return {name: draw(values) for name, values in _JSON_FIELDS.items() if draw(st.booleans())}


@st.composite
def _json_feed(draw: st.DrawFn) -> bytes:
    feed: dict[str, object] = {
        "version": draw(
            st.sampled_from(
                ["https://jsonfeed.org/version/1.1", "https://jsonfeed.org/version/1", "2", ""]
            )
        ),
        "title": draw(st.one_of(hostile_text, json_values)),
        "items": draw(st.one_of(st.lists(_json_item(), max_size=5), json_values)),
    }
    if draw(st.booleans()):
        feed["home_page_url"] = draw(st.one_of(url_values, json_values))
    return json.dumps(feed).encode()


json_feeds = mutated(_json_feed())
