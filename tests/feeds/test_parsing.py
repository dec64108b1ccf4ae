"""RSS 2.0, Atom and JSON Feed into normalized, sanitized entries (no database, no network)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.parsing import NotAFeed, ParsedEntry, parse_feed
from feeds.sanitize import clean_fragment, html_to_text, sanitize_html

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
RSS_URL = "https://news.example/feed.xml"


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _by_id(entries: list[ParsedEntry]) -> dict[str, ParsedEntry]:
    """The first entry for each identity (the copy the store keeps)."""
    first: dict[str, ParsedEntry] = {}
    for entry in entries:
        first.setdefault(entry.external_id, entry)
    return first


def _hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


def _assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# --- RSS 2.0 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rss_feed():
    return parse_feed(_fixture("rss2.xml"), content_type="application/rss+xml", base_url=RSS_URL)


def test_it_reads_the_rss_channel(rss_feed):
    assert rss_feed.title == "Fixture & Co News"
    assert rss_feed.site_url == "https://news.example/"


def test_it_reads_an_rss_item(rss_feed):
    item = _by_id(rss_feed.entries)["urn:news:1"]

    assert item.title == "Köln opens a new bridge"
    assert item.url == "https://news.example/koeln-bridge"
    assert item.author == "editor@news.example (Ed Itor)"
    # content:encoded wins over the short description.
    assert item.text.startswith("The bridge is open.")
    assert item.content_hash == _hash(item.title, item.text)


def test_it_converts_rss_dates_to_aware_utc(rss_feed):
    entries = _by_id(rss_feed.entries)

    first = entries["urn:news:1"].published_at
    _assert_utc(first)
    assert first == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # 12:00 at +02:00
    assert entries["https://news.example/by-link"].published_at == datetime(
        2026, 11, 26, 8, 30, tzinfo=UTC
    )


def test_it_leaves_a_missing_date_empty(rss_feed):
    no_date = next(e for e in rss_feed.entries if e.title == "Item with neither guid nor link")

    assert no_date.published_at is None


def test_it_identifies_items_by_guid_then_link_then_content_hash(rss_feed):
    ids = [entry.external_id for entry in rss_feed.entries]
    hashed = next(e for e in rss_feed.entries if e.title == "Item with neither guid nor link")

    assert ids[0] == "urn:news:1"  # guid, although the item has a link too
    assert ids[1] == "https://news.example/by-link"  # no guid: the link
    assert hashed.external_id == "sha256:" + _hash(hashed.title, hashed.text)  # neither


def test_it_keeps_both_copies_of_a_repeated_guid_for_the_store_to_dedupe(rss_feed):
    # The parser reports what the document says; (source, external_id) uniqueness keeps the
    # first copy (tests/feeds/test_poll.py stores a repeated item once).
    assert [e.external_id for e in rss_feed.entries].count("urn:news:1") == 2


def test_it_removes_scripts_handlers_and_unsafe_links_from_rss_html(rss_feed):
    html = _by_id(rss_feed.entries)["urn:news:1"].html

    for forbidden in ("<script", "alert(", "onclick", "onerror", "steal", "javascript:", "<iframe"):
        assert forbidden not in html
    assert "<b>bridge</b>" in html
    assert 'href="https://news.example/more"' in html
    assert 'src="https://news.example/b.jpg"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_it_makes_plain_text_without_markup_or_script_text(rss_feed):
    text = _by_id(rss_feed.entries)["urn:news:1"].text

    assert "<" not in text
    assert "alert" not in text
    assert text == "The bridge is open.\nbad link and more"


def test_it_resolves_a_relative_link_against_the_feed_url(rss_feed):
    assert _by_id(rss_feed.entries)["urn:news:rel"].url == "https://news.example/relative/path"


def test_it_drops_a_link_that_is_not_http(rss_feed):
    assert _by_id(rss_feed.entries)["urn:news:js"].url == ""


def test_it_stores_only_http_urls():
    for entry in parse_feed(
        _fixture("rss2.xml"), content_type="application/rss+xml", base_url=""
    ).entries:
        assert entry.url == "" or entry.url.startswith(("http://", "https://"))


# --- Atom ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atom_feed():
    return parse_feed(
        _fixture("atom.xml"),
        content_type="application/atom+xml",
        base_url="https://science.example/atom.xml",
    )


def test_it_reads_an_atom_feed(atom_feed):
    entries = _by_id(atom_feed.entries)
    comets = entries["tag:science.example,2026:comets"]

    assert atom_feed.title == "Science Fixture"
    assert atom_feed.site_url == "https://science.example/"
    assert comets.title == "Comets & asteroids"  # an html title, as plain text
    assert comets.url == "https://science.example/comets"
    assert comets.author == "Dr. Ada"
    assert comets.text == "Comets are icy."
    assert "<strong>icy</strong>" in comets.html


def test_it_prefers_the_atom_published_date_in_utc(atom_feed):
    comets = _by_id(atom_feed.entries)["tag:science.example,2026:comets"]

    _assert_utc(comets.published_at)
    assert comets.published_at == datetime(2026, 11, 25, 3, 15, tzinfo=UTC)  # 22:15 at -05:00


def test_it_falls_back_to_the_atom_updated_date(atom_feed):
    paper = _by_id(atom_feed.entries)["tag:science.example,2026:paper-42"]

    assert paper.published_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_it_removes_scripts_styles_and_handlers_from_atom_html(atom_feed):
    html = _by_id(atom_feed.entries)["tag:science.example,2026:comets"].html

    for forbidden in ("<script", "pwned", "onmouseover", "style="):
        assert forbidden not in html


def test_it_resolves_an_atom_link_against_xml_base(atom_feed):
    paper = _by_id(atom_feed.entries)["tag:science.example,2026:paper-42"]

    assert paper.url == "https://science.example/papers/42"


# --- JSON Feed ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def json_feed():
    return parse_feed(_fixture("feed.json"), content_type="application/feed+json")


def test_it_reads_a_json_feed(json_feed):
    entries = _by_id(json_feed.entries)
    first = entries["tech-1"]

    assert json_feed.title == "Tech Fixture"
    assert json_feed.site_url == "https://tech.example/"
    assert first.title == "Rust 2026 edition"
    assert first.url == "https://tech.example/posts/1"
    assert first.author == "Ferris"
    assert first.text == "Release notes here."
    assert entries["tech-2"].text == "Just text, no markup."
    assert entries["tech-2"].html == ""
    assert entries["tech-2"].author == "Old-style author"


def test_it_skips_json_feed_items_that_are_not_objects(json_feed):
    assert len(json_feed.entries) == 5  # six items, one of them a bare string


def test_it_converts_json_feed_dates_to_aware_utc(json_feed):
    entries = _by_id(json_feed.entries)

    for entry_id, expected in [
        ("tech-1", datetime(2026, 11, 25, 12, 30, tzinfo=UTC)),  # 14:30 at +02:00
        ("tech-2", datetime(2026, 11, 25, 8, 0, tzinfo=UTC)),  # Z
        ("https://tech.example/posts/4", datetime(2026, 11, 25, 8, 0, tzinfo=UTC)),  # naive
    ]:
        _assert_utc(entries[entry_id].published_at)
        assert entries[entry_id].published_at == expected
    assert entries["tech-3"].published_at is None


def test_it_identifies_json_feed_items_by_id_then_url(json_feed):
    ids = [entry.external_id for entry in json_feed.entries]

    assert ids == ["tech-1", "tech-2", "tech-3", "https://tech.example/posts/4", "tech-1"]


def test_it_sanitizes_json_feed_html(json_feed):
    html = _by_id(json_feed.entries)["tech-1"].html

    for forbidden in ("<script", "javascript:", "onclick"):
        assert forbidden not in html
    assert html.startswith("<p>Release notes")


def test_it_drops_a_relative_json_feed_url(json_feed):
    assert _by_id(json_feed.entries)["tech-3"].url == ""


def test_it_treats_a_json_body_as_json_whatever_the_content_type():
    body = json.dumps(
        {"version": "https://jsonfeed.org/version/1", "items": [{"id": "x", "title": "T"}]}
    ).encode()

    assert [e.external_id for e in parse_feed(body, content_type="text/plain").entries] == ["x"]


def test_it_refuses_a_json_feed_without_items():
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "x"}).encode()

    with pytest.raises(NotAFeed, match="no items list"):
        parse_feed(body, content_type="application/feed+json")


# --- Limits and oddities ------------------------------------------------------------------


def test_it_hashes_an_overlong_identity():
    guid = "g" * 600
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f'<item><title>Long</title><guid isPermaLink="false">{guid}</guid></item>'
        "</channel></rss>"
    ).encode()

    [entry] = parse_feed(body).entries

    assert entry.external_id == "sha256:" + hashlib.sha256(guid.encode()).hexdigest()


def test_it_identifies_identical_guidless_items_by_the_same_hash():
    item = "<item><title>Same</title><description>Same words.</description></item>"
    body = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{item}{item}'
        "</channel></rss>"
    ).encode()

    first, second = parse_feed(body).entries

    assert first.external_id == second.external_id
    assert first.external_id.startswith("sha256:")


def test_it_reads_a_feed_in_a_declared_legacy_encoding():
    body = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>t</title>'
        '<item><title>Café crème</title><guid isPermaLink="false">c</guid></item>'
        "</channel></rss>"
    ).encode("iso-8859-1")

    [entry] = parse_feed(body, content_type="application/rss+xml", base_url=RSS_URL).entries

    assert entry.title == "Café crème"


def test_it_reads_an_undeclared_utf8_feed_served_without_a_content_type():
    body = (
        '<rss version="2.0"><channel><title>t</title>'
        '<item><title>Straße nach Köln</title><guid isPermaLink="false">s</guid></item>'
        "</channel></rss>"
    ).encode()

    [entry] = parse_feed(body, content_type="", base_url=RSS_URL).entries

    assert entry.title == "Straße nach Köln"


def test_it_accepts_a_valid_feed_with_no_items():
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'

    parsed = parse_feed(body, content_type="application/rss+xml", base_url=RSS_URL)

    assert (parsed.title, parsed.entries) == ("Quiet", [])


# --- The sanitizer on its own -------------------------------------------------------------


def test_it_keeps_allowed_markup_and_drops_the_rest():
    dirty = (
        '<div class="x"><p>Hi <a href="https://ok.example/" onclick="x()" target="_blank">ok</a>'
        '<a href="data:text/html,boom">data</a><img src="javascript:x()">'
        "<style>p{}</style><object data='x'></object></p></div>"
    )

    clean = sanitize_html(dirty)

    assert clean == (
        '<p>Hi <a href="https://ok.example/" rel="noopener noreferrer nofollow">ok</a>'
        '<a rel="noopener noreferrer nofollow">data</a><img></p>'
    )


def test_it_turns_html_into_readable_text():
    html = "<h1>Title</h1><p>One &amp; two</p><p>Three<br>four</p><script>x()</script>"

    assert html_to_text(html) == "Title\nOne & two\nThree\nfour"
    assert html_to_text("") == ""


def test_it_resolves_relative_links_and_images_only_against_an_http_base():
    html = '<a href="../up">u</a><img src="i.png"><a href="mailto:x@y.example">m</a>'

    assert sanitize_html(html, base_url="https://news.example/a/b/") == (
        '<a href="https://news.example/a/up" rel="noopener noreferrer nofollow">u</a>'
        '<img src="https://news.example/a/b/i.png">'
        '<a href="mailto:x@y.example" rel="noopener noreferrer nofollow">m</a>'
    )
    assert 'href="../up"' in sanitize_html(html, base_url="ftp://files.example/")
    assert 'href="../up"' in sanitize_html(html)


# --- One nh3 pass for both the HTML and the text -------------------------------------------

FRAGMENTS = [
    "<h1>Title</h1><p>One &amp; two</p><p>Three<br>four</p><script>x()</script>",
    "<p>a<p>b<ul><li>one<li>two</ul>",  # implied end tags: no line break in html_to_text
    "<div>a</div><div>b</div>x</div>y",
    "<pre>\n\nif (a &lt; b) {<br>  go();\n}</pre><p>after</p>",
    "<table><tr><td>a</td></tr><p>fostered</p></table>tail",
    "<b>bold<p>misnested</b> paragraph</p>",
    "<a title='x</p>y'>attr</a><textarea>t</p>u</textarea><!-- c</p> -->",
    "Plain text > with\u00a0no-break spaces,\ttabs  and\n\n\n\nlines ",
    "\ufeffbyte order mark first",
    "carriage\rreturns\r\nhere",
    "<P>UPPER</P ><BR/>case",
    "form\x0cfeed <b>and</b> markup",
    "",
]


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_it_gives_html_to_text_and_sanitize_html_from_one_pass(fragment):
    html, text = clean_fragment(fragment, base_url="https://news.example/")

    assert text == html_to_text(fragment)
    assert html == sanitize_html(fragment, base_url="https://news.example/").strip()


@pytest.mark.parametrize("fragment", ["<p><b>x</p><p>y</p>", '<p><a href="/a">x</p><p>y</p>'])
def test_it_reopens_misnested_formatting_where_the_text_breaks_lines(fragment):
    # The line break html_to_text adds after </p> makes the HTML parser re-open <b> or <a>
    # there instead of inside the next paragraph: the same text in the same elements.
    html, text = clean_fragment(fragment)
    tags = re.compile(r"<(\w+)")

    assert text == html_to_text(fragment) == "x\ny"
    assert sorted(tags.findall(html)) == sorted(tags.findall(sanitize_html(fragment)))
    assert html_to_text(html) == html_to_text(sanitize_html(fragment))


def test_it_keeps_line_breaks_inside_pre_as_written():
    html, text = clean_fragment("<pre>line<br>next\nlast</pre>")

    assert html == "<pre>line<br>next\nlast</pre>"
    assert text == "line\nnext\nlast"


# --- Hostile XML ----------------------------------------------------------------------------


def _rss_with(doctype: str, title: str) -> bytes:
    return (
        f'<?xml version="1.0"?>{doctype}<rss version="2.0"><channel><title>t</title>'
        f"<item><title>{title}</title><link>https://news.example/x</link></item>"
        "</channel></rss>"
    ).encode()


def _billion_laughs() -> str:
    levels = "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(2, 10)
    )  # 10^9 "lol" if expanded
    return f'<!DOCTYPE lolz [<!ENTITY lol1 "lol">{levels}]>'


def test_it_refuses_an_external_entity_and_reads_no_file():
    body = _rss_with('<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "a &xxe; b")

    with pytest.raises(NotAFeed, match="XXE") as refused:
        parse_feed(body, content_type="application/rss+xml")
    assert "root:" not in str(refused.value)


def test_it_fetches_nothing_a_document_points_to(feed_server):
    dtd = feed_server.serve("/evil.dtd", b'<!ENTITY leak "LEAKED">', content_type="text/plain")
    text = feed_server.serve("/secret", b"LEAKED", content_type="text/plain")
    refused = [
        _rss_with(f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "{text}">]>', "a &xxe; b"),
        _rss_with(f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{dtd}"> %p;]>', "a &leak; b"),
    ]
    for body in refused:
        with pytest.raises(NotAFeed, match="XXE"):
            parse_feed(body)
    # An external DTD alone (as RSS 0.91 feeds declare) is read without it.
    parsed = parse_feed(_rss_with(f'<!DOCTYPE rss SYSTEM "{dtd}">', "a &leak; b"))

    assert [e.title for e in parsed.entries] == ["a b"]
    assert "LEAKED" not in repr(parsed)
    assert feed_server.requests == []


@pytest.mark.parametrize("hidden", [False, True], ids=["in_the_head", "behind_a_comment"])
def test_it_refuses_billion_laughs(hidden):
    comment = "<!-- an <a> in a comment ends a look at the head early -->" if hidden else ""

    with pytest.raises(NotAFeed, match="billion-laughs"):
        parse_feed(_rss_with(comment + _billion_laughs(), "&lol9;"))


def test_it_refuses_one_large_entity_used_many_times():
    doctype = f'<!DOCTYPE r [<!ENTITY big "{"x" * 50_000}">]>'

    with pytest.raises(NotAFeed, match="XXE"):
        parse_feed(_rss_with(doctype, "&big;" * 2000))  # 100 MB if expanded


def test_it_reads_a_text_node_larger_than_the_strict_parser_allows():
    # libxml2 without huge_tree stops at 10 MB text nodes; feedparser reads the document.
    body = _rss_with("", "Big").replace(
        b"</title>", b"</title><description>" + b"a" * 10_500_000 + b"</description>"
    )

    parsed = parse_feed(body)

    assert parsed.parser == "feedparser"
    assert "not well-formed" in parsed.routed
    assert [len(e.text) for e in parsed.entries] == [10_500_000]


def test_it_refuses_nesting_deeper_than_any_feed():
    body = _rss_with("", "Deep" + "<x>" * 5000 + "</x>" * 5000)

    with pytest.raises(NotAFeed, match="deeper than any feed"):
        parse_feed(body)
