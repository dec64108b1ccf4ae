"""Properties of the readers' pure parts on hostile pages: the t.me/s preview parser
(feeds/telegram/preview.py), the web page reader's listing and article extraction and its
config (feeds/web.py), feed autodiscovery (feeds/discovery.py) and OPML import
(feeds/opml.py). Each returns clean results or raises its documented error (NotAFeed, OpmlError;
discovery returns nothing), never anything else; OPML never expands an entity or reads a file.
"""

from __future__ import annotations

import html as html_lib
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml.cssselect import CSSSelector

from feeds import web
from feeds.discovery import discover_feeds
from feeds.fetcher import FetchResult
from feeds.opml import OpmlError, parse_opml
from feeds.parsing import NotAFeed
from feeds.telegram.preview import parse_preview
from tests.fuzz.profiles import scaled
from tests.fuzz.safety import assert_clean_entry, assert_storable, no_file_or_network_access
from tests.fuzz.strategies import (
    CANARY,
    DATE_EDGES,
    dates,
    hostile_text,
    html_soup,
    html_trees,
    url_values,
)

any_html = st.one_of(html_trees, html_soup)
attr = st.one_of(url_values, hostile_text).map(lambda s: html_lib.escape(s, quote=True))
page_bytes = st.one_of(
    st.binary(max_size=1024),
    any_html.map(lambda s: s.encode("utf-8", "surrogatepass")),
    any_html.map(lambda s: s.encode("utf-16")),
)

# --- t.me/s preview --------------------------------------------------------------------------

_POST_IDS = [
    "chan/101", "chan/0", "chan/-1", "chan/", "chan/abc", "chan/\u00b2", "chan/\u0661\u0662",
    "chan/" + "9" * 30, "chan/" + "9" * 5000, "101", "/", "", "chan/1/2", "chan/ 7",
]  # fmt: skip


@st.composite
def _bubble(draw: st.DrawFn) -> str:
    post = draw(
        st.one_of(st.sampled_from(_POST_IDS), st.integers(1, 10**6).map(lambda n: f"chan/{n}"))
    )
    classes = draw(st.sampled_from(["tgme_widget_message", "tgme_widget_message service_message"]))
    parts = [f'<div class="{classes}" data-post="{html_lib.escape(post, quote=True)}">']
    if draw(st.booleans()):
        parts.append(
            f'<div class="tgme_widget_message_text js-message_text">{draw(any_html)}</div>'
        )
    if draw(st.booleans()):
        reply = draw(html_trees)
        parts.append(
            f'<a class="tgme_widget_message_reply"><div class="tgme_widget_message_text">{reply}'
            "</div></a>"
        )
    if draw(st.booleans()):
        hrefs = draw(st.lists(attr, max_size=3))
        links = "".join(
            f'<a class="tgme_widget_message_photo_wrap" href="{h}" '
            f"style=\"background-image:url('{h}')\"></a>"
            for h in hrefs
        )
        parts.append(f'<div class="tgme_widget_message_grouped_wrap">{links}</div>')
    if draw(st.booleans()):
        parts.append(
            f'<a class="tgme_widget_message_link_preview" href="{draw(attr)}">'
            f'<div class="link_preview_title">{draw(any_html)}</div>'
            f'<div class="link_preview_description">{draw(any_html)}</div></a>'
        )
    if draw(st.booleans()):
        parts.append(f'<i class="tgme_widget_message_video_thumb" style="{draw(attr)}"></i>')
    if draw(st.booleans()):
        when = html_lib.escape(draw(dates), quote=True)
        parts.append(
            f'<span class="tgme_widget_message_meta"><a class="tgme_widget_message_date">'
            f'<time datetime="{when}">x</time></a></span>'
        )
    if draw(st.booleans()):
        parts.append(f'<div class="tgme_widget_message_from_author">{draw(any_html)}</div>')
    parts.append("</div>")
    wrap = draw(st.booleans())
    inner = "".join(draw(st.permutations(parts[1:-1])))
    bubble = parts[0] + inner + parts[-1]
    return f'<div class="tgme_widget_message_wrap">{bubble}</div>' if wrap else bubble


@st.composite
def tme_pages(draw: st.DrawFn) -> bytes:
    title = draw(any_html)
    info = (
        f'<div class="tgme_channel_info"><div class="tgme_channel_info_header_title">{title}'
        "</div></div>"
        if draw(st.integers(0, 5))
        else ""
    )
    history = "".join(draw(st.lists(_bubble(), max_size=4)))
    section = (
        f'<section class="tgme_channel_history">{history}</section>'
        if draw(st.integers(0, 5))
        else f'<div class="tgme_page">{history}</div>'
    )
    page = (
        f"<!DOCTYPE html><html><head><meta charset=utf-8></head><body>{info}{section}</body></html>"
    )
    return page.encode()


@settings(max_examples=scaled(150))
@given(body=st.one_of(tme_pages(), page_bytes))
@example(
    body=b'<meta charset="utf-8"><section class="tgme_channel_history"><div '
    b'class="tgme_widget_message" data-post="c/\xc2\xb2"></div></section>'
    b'<div class="tgme_channel_info"></div>'
)
@example(
    body=b'<section class="tgme_channel_history"><div class="tgme_widget_message" data-post="c/1">'
    b'<div class="tgme_widget_message_grouped_wrap"><a href="http://[x/2">x</a></div></div>'
    b'</section><div class="tgme_channel_info"></div>'
)
@example(
    body=b'<section class="tgme_channel_history"><div class="tgme_widget_message" '
    b'data-post="c/1"><time datetime="9999-12-31T23:59:59-23:59"></time>'
    b'<span class="tgme_widget_message_meta"><a class="tgme_widget_message_date">'
    b'<time datetime="9999-12-31T23:59:59-23:59">x</time></a></span></div></section>'
    b'<div class="tgme_channel_info"></div>'
)
@example(
    body=b'<section class="tgme_channel_history"><div class="tgme_widget_message" data-post="c/'
    + b"9" * 600
    + b'"></div></section><div class="tgme_channel_info"></div>'
)
@example(  # an unclosed <table> pulls a link with a control character into the message text
    body=b'<meta charset=utf-8><div class="tgme_channel_info"></div><section '
    b'class="tgme_channel_history"><div class="tgme_widget_message" data-post="chan/101"><div '
    b'class="tgme_widget_message_text js-message_text"><table></div></div><div '
    b'class="tgme_widget_message" data-post="chan/102">'
    b'<div class="tgme_widget_message_grouped_wrap"><a class="tgme_widget_message_photo_wrap" href="http://\x1f"></a></div></div></section>'
)
def test_a_tme_page_gives_clean_posts_or_not_a_feed(body: bytes) -> None:
    try:
        page = parse_preview(body, username="hostile_channel")
    except NotAFeed as exc:
        assert str(exc)
        return
    assert_storable("title", page.title)
    assert all(isinstance(i, int) and 0 <= i < 10**19 for i in page.ids)
    for entry in page.entries:
        assert_clean_entry(entry)
        assert entry.external_id.isdigit()
        assert entry.url.startswith("https://t.me/hostile_channel/")


# --- Web pages -------------------------------------------------------------------------------

_LISTING_URLS = [
    "https://news.example.test/",
    "https://news.example.test/section/",
    "http://[::1]/x",
]
_ARTICLE_HREFS = [
    "/2026/05/harbour-crane-strike-ends", "https://news.example.test/story/123456",
    "?p=12345", "/a/b/some-long-headline-slug.html", "//news.example.test/x-y-z-w",
    "https://other.example/a-b-c-d", "javascript:alert(1)//a-b-c", "data:text/html,a-b-c-d",
    "/" + "a-" * 1500 + "z", "http://[::1/a-b-c", "/%ff-%fe-%fd-x",
]  # fmt: skip
_WRAPPERS = ["article", "h2", "main", "nav", "div class=sidebar", "div", "footer", "li"]


@st.composite
def listing_pages(draw: st.DrawFn) -> bytes:
    links = []
    for _ in range(draw(st.integers(0, 8))):
        href = html_lib.escape(draw(st.one_of(st.sampled_from(_ARTICLE_HREFS), url_values)), True)
        wrapper = draw(st.sampled_from(_WRAPPERS))
        tag = wrapper.split()[0]
        links.append(f'<{wrapper}><a href="{href}">{draw(any_html)}</a></{tag}>')
    base = ""
    if draw(st.booleans()):
        base = f'<base href="{draw(attr)}">'
    title = draw(any_html)
    page = f"<html><head>{base}<title>{title}</title></head><body>{''.join(links)}</body></html>"
    return page.encode("utf-8", "surrogatepass")


@st.composite
def article_pages(draw: st.DrawFn) -> bytes:
    metas = "".join(
        f'<meta property="{name}" content="{html_lib.escape(value, True)}">'
        for name, value in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["og:title", "article:published_time", "author", "pubdate"]),
                    st.one_of(st.sampled_from(DATE_EDGES), hostile_text),
                ),
                max_size=3,
            )
        )
    )
    # Soup last: an element it leaves open (<xmp>, <textarea>) turns what follows into text.
    body = "".join(draw(st.lists(html_trees, max_size=3))) + draw(html_soup)
    paragraphs = "".join(f"<p>{draw(html_trees)} lorem ipsum dolor sit amet</p>" for _ in range(3))
    when = html_lib.escape(draw(dates), True)
    page = (
        # <title> is raw text: markup in it is its text, so no CANARY there.
        f"<html><head><title>{html_lib.escape(draw(hostile_text))}</title>{metas}</head>"
        "<body><article>"
        f'<h1>{draw(html_trees)}</h1><time datetime="{when}">x</time>{paragraphs}{body}'
        "</article></body></html>"
    )
    return page.encode("utf-8", "surrogatepass")


def _result(body: bytes, *, url: str, content_type: str) -> FetchResult:
    return FetchResult(
        url=url, status_code=200, body=body, content_type=content_type, etag="", last_modified=""
    )


_CONTENT_TYPES = [
    "text/html; charset=utf-8",
    "text/html; charset=x-bogus",
    "",
    "text/html; charset=utf-16",
]


@settings(max_examples=scaled(100))
@given(
    body=st.one_of(listing_pages(), page_bytes),
    url=st.sampled_from(_LISTING_URLS),
    content_type=st.sampled_from(_CONTENT_TYPES),
    limit=st.integers(1, 5),
)
def test_a_listing_gives_clean_article_links_or_not_a_feed(
    body: bytes, url: str, content_type: str, limit: int
) -> None:
    try:
        doc = web.parse_html(body, content_type, url)
    except NotAFeed:
        return
    links = web.find_article_links(doc, url, limit=limit)
    assert len(links) <= limit
    for link in links:
        assert link.url.startswith(("http://", "https://")) and len(link.url) <= 2000
        assert not any(ord(c) < 0x20 or c == "\x7f" for c in link.url), link.url
        assert 0 < len(link.external_id) <= 512
        for name in ("url", "external_id", "text"):
            assert_storable(name, getattr(link, name))
        assert "#" not in link.url


@settings(max_examples=scaled(60))
@given(
    body=st.one_of(article_pages(), page_bytes),
    content_type=st.sampled_from(_CONTENT_TYPES),
    selector=st.sampled_from([None, "article p", "h1", "*"]),
)
@example(
    body=b'<html><head><meta property="article:published_time" '
    b'content="0001-01-01T00:00:00+23:59"></head><body><p>x</p></body></html>',
    content_type="text/html",
    selector=None,
)
@example(  # a control character in a link: lxml refused to write the absolute link back
    body=b'<html><body><article><h1><a href="0\x1b">x</a></h1><p>lorem ipsum</p></article>'
    b"</body></html>",
    content_type="text/html; charset=utf-8",
    selector=None,
)
def test_an_article_page_gives_a_clean_entry(
    body: bytes, content_type: str, selector: str | None
) -> None:
    link = web.ArticleLink(
        url="https://news.example.test/a-b-c",
        external_id="https://news.example.test/a-b-c",
        text="t",
    )
    result = _result(body, url=link.url, content_type=content_type)
    entry = web.article_entry(
        link, result, content_selector=CSSSelector(selector) if selector else None
    )
    assert_clean_entry(entry, canary=CANARY)
    assert len(entry.text) <= web.MAX_TEXT_CHARS + 2
    assert len(entry.html) <= web.MAX_HTML_CHARS


class _Source:
    def __init__(self, config: object) -> None:
        self.config = config


@settings(max_examples=scaled(150))
@given(
    config=st.one_of(
        st.dictionaries(
            st.sampled_from(["link_selector", "content_selector", "max_articles"]),
            st.one_of(
                st.text(alphabet="abc#.[]=\"'*:>+~ ()-_!@$%^&|\\/0123456789", max_size=20),
                st.sampled_from(["a:has(b)", "::text", "a:contains('x')", "a[href^=x]", "!!!"]),
                st.integers(-5, 10**6),
                st.booleans(),
                st.none(),
                st.floats(),
                st.lists(st.integers(), max_size=2),
            ),
        ),
        st.lists(st.integers(), max_size=2),
        st.text(max_size=5),
        st.none(),
    )
)
@example(config={"link_selector": "\\1"})  # CSS escape of a control character: lxml's ValueError
def test_a_web_source_config_is_read_or_refused_with_not_a_feed(config: object) -> None:
    try:
        parsed = web._config(_Source(config))  # type: ignore[arg-type]
        for key in ("link_selector", "content_selector"):
            selector = web._selector(parsed, key)
            if selector is not None:
                selector(web.parse_html(b"<p><a href='/x'>x</a></p>", "text/html", "http://a/"))
        assert 1 <= web._max_articles(parsed) <= web.MAX_ARTICLES_LIMIT
    except NotAFeed as exc:
        assert str(exc)


# --- Autodiscovery ---------------------------------------------------------------------------

_FEED_TYPES = [
    "application/rss+xml",
    "application/atom+xml",
    "application/json",
    "text/xml",
    "text/html",
    "",
]


@st.composite
def discovery_pages(draw: st.DrawFn) -> bytes:
    links = "".join(
        f'<link rel="{draw(st.sampled_from(["alternate", "ALTERNATE feed", "stylesheet", ""]))}" '
        f'type="{draw(st.sampled_from(_FEED_TYPES))}" href="{draw(attr)}">'
        for _ in range(draw(st.integers(0, 4)))
    )
    hrefs = st.one_of(st.sampled_from(["/feed", "/rss.xml", "feed.json"]), attr)
    anchors = "".join(f'<a href="{draw(hrefs)}">x</a>' for _ in range(draw(st.integers(0, 4))))
    base = f'<base href="{draw(attr)}">' if draw(st.booleans()) else ""
    return f"<html><head>{base}{links}</head><body>{anchors}{draw(any_html)}</body></html>".encode(
        "utf-8", "surrogatepass"
    )


@settings(max_examples=scaled(150))
@given(
    body=st.one_of(discovery_pages(), page_bytes),
    base_url=st.one_of(url_values, st.just("https://site.example.test/blog/")),
)
@example(
    body=b"<link rel=alternate type=application/rss+xml href='http://[::1'>", base_url="http://a/"
)
@example(body=b"<a href='/feed'>feed</a>", base_url="http://[bad/")
@example(body=b"<a href='/feed'>feed</a>", base_url="http://\x00")
@example(body=b"<link rel=alternate type=application/rss+xml href='/a\x1fb'>", base_url="http://a/")
def test_discovery_returns_absolute_http_links_and_never_raises(body: bytes, base_url: str) -> None:
    found = discover_feeds(body, base_url)
    assert len(found) == len(set(found))
    for url in found:
        assert url.lower().startswith(("http://", "https://")) and len(url) <= 2000, url
        assert not any(ord(c) < 0x20 or c == "\x7f" for c in url), url
        assert "#" not in url
        assert_storable("feed URL", url)


# --- OPML ------------------------------------------------------------------------------------

_OPML_DOCTYPES = [
    "",
    "<!DOCTYPE opml>",
    '<!DOCTYPE opml [<!ENTITY x "expanded">]>',
    '<!DOCTYPE opml [<!ENTITY x SYSTEM "file://{secret}">]>',
    '<!DOCTYPE opml SYSTEM "file://{secret}">',
    "<!DOCTYPE html><html>",
]


@st.composite
def opml_documents(draw: st.DrawFn, secret: str) -> bytes:
    def outline(depth: int) -> str:
        attrs = "".join(
            f' {name}="{draw(attr)}"'
            for name in draw(
                st.lists(
                    st.sampled_from(
                        ["text", "title", "xmlUrl", "xmlurl", "url", "htmlUrl", "type", "category"]
                    ),
                    max_size=4,
                    unique=True,
                )
            )
        )
        if depth > 0 and draw(st.booleans()):
            inner = "".join(outline(depth - 1) for _ in range(draw(st.integers(0, 2))))
            return f"<outline{attrs}>{inner}</outline>"
        return f"<outline{attrs}/>"

    doctype = draw(st.sampled_from(_OPML_DOCTYPES)).format(secret=secret)
    reference = draw(st.sampled_from(["", "&x;", "&amp;", "&#0;"]))
    body = "".join(outline(3) for _ in range(draw(st.integers(0, 4))))
    version = draw(st.sampled_from(["1.0", "2.0"]))
    document = (
        f'<?xml version="1.0" encoding="utf-8"?>{doctype}<opml version="{version}"><head>'
        f"<title>{reference}</title></head><body>{body}</body></opml>"
    )
    return document.encode("utf-8", "surrogatepass")


SECRET = "".join(["opml", "-secret-", "3e8d"])


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file an external entity could name: its text must never come out."""
    path = tmp_path_factory.mktemp("opml") / "secret.txt"
    path.write_text(SECRET)
    return path


@settings(max_examples=scaled(150))
@given(data=st.data())
def test_opml_parses_or_raises_opml_error_and_never_expands_or_reads(
    data: st.DataObject, secret_file: Path
) -> None:
    document = data.draw(st.one_of(opml_documents(str(secret_file)), page_bytes))
    with no_file_or_network_access() as accessed:
        try:
            entries = parse_opml(document)
        except OpmlError as exc:
            assert str(exc)
            entries = []
    assert accessed == []
    dumped = json.dumps([e.__dict__ for e in entries], ensure_ascii=False)
    assert SECRET not in dumped
    assert "expanded" not in dumped
    for entry in entries:
        for name in ("url", "title", "site_url", "category"):
            assert isinstance(getattr(entry, name), str)
        assert entry.site_url == "" or entry.site_url.lower().startswith(("http://", "https://"))
