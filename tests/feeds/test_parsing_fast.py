"""The fast reader (strict lxml tree) against feedparser, the reference reader.

For every fixture feed and every construct below, the fast reader gives the same entries as
feedparser does, field by field, or it declines and parse_feed hands the document to
feedparser. Which documents it declines is pinned down here too: a fast reader that declined
everything would agree with feedparser trivially.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from feeds.parsing import (
    NotAFeed,
    ParsedFeed,
    Routed,
    parse_fast,
    parse_feed,
    parse_with_feedparser,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
BASE = "https://base.example/dir/feed.xml"
ENTRY_FIELDS = (
    "external_id", "url", "title", "text", "html", "author", "published_at", "content_hash",
    "link_key",
)  # fmt: skip

# The reader each fixture takes. Adding a fixture means adding it here.
FIXTURE_PATHS = {
    "atom.xml": "fast",
    "atom_xhtml.xml": "fast",
    "cdata.xml": "fast",
    "entities.xml": "fast",
    "planet_atom.xml": "fast",
    "podcast.xml": "fast",
    "rss1_content.rdf": "fast",
    "rss2.xml": "fast",
    "youtube.xml": "fast",
    "doctype_entities.xml": "feedparser",  # a DOCTYPE: feedparser keeps its simple entities
    "not_well_formed.xml": "feedparser",  # bare "&", an undefined entity, cut off
    "feed.json": "json",
    "jsonfeed_v1.json": "json",
}
FAST_FIXTURES = sorted(name for name, path in FIXTURE_PATHS.items() if path == "fast")

_RSS = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"'
    ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/"'
    ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
    ' xmlns:atom="http://www.w3.org/2005/Atom">'
    "<channel><title>Inline</title><link>https://inline.example/</link>{}</channel></rss>"
)
_ATOM = (
    '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"'
    ' xmlns:media="http://search.yahoo.com/mrss/">'
    "<title>Inline</title><id>urn:inline</id><updated>2026-11-25T00:00:00Z</updated>{}</feed>"
)
_DATES = [
    "Wed, 25 Nov 2026 10:00:00 EST",
    "25 Nov 26 10:00 +0100",
    "2026-11-25",
    "2026-11-25T10:00+02:00",
    "2026-11-25T10:00:00.123456Z",
    "Wed, 31 Nov 2026 10:00:00 GMT",
    "Wed, 25 Nov 2026 24:00:00 GMT",
    "not a date",
]
# Constructs where feedparser's reading has quirks the fast reader reproduces.
CONSTRUCTS = {
    # Void elements in inline XHTML (feedparser writes <br></br>); the wrapping <div> is dropped
    # only when it wraps everything.
    "xhtml_void_elements": _ATOM.format(
        "<entry><id>urn:e1</id><title>t</title><updated>2026-11-25T00:00:00Z</updated>"
        '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">one<br/>two<hr/>'
        '<p class="x">three</p></div></content></entry>'
    ),
    "xhtml_two_divs": _ATOM.format(
        '<entry><id>urn:e1</id><title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">a'
        '</div><div xmlns="http://www.w3.org/1999/xhtml">b</div></title>'
        "<updated>2026-11-25T00:00:00Z</updated></entry>"
    ),
    # An Atom <id> is a link until a <link> says otherwise, and is resolved like one.
    "atom_id_as_link": _ATOM.format(
        "<entry><id>https://inline.example/by-id</id><title>id as link</title>"
        '<link rel="self" href="https://inline.example/self"/>'
        "<updated>2026-11-25T00:00:00Z</updated></entry>"
        "<entry><id>12345</id><title>relative id</title>"
        "<updated>2026-11-25T00:00:00Z</updated></entry>"
    ),
    "atom_text_types": _ATOM.format(
        '<entry><id>urn:e2</id><title type="text">A &lt;b&gt; B</title>'
        '<summary type="html">&lt;p&gt;S&lt;/p&gt;</summary>'
        '<content src="https://inline.example/out-of-line"/>'
        "<author><uri>https://inline.example/me</uri></author>"
        "<updated>2026-11-25T00:00:00Z</updated></entry>"
    ),
    "rss_guid_as_link": _RSS.format(
        "<item><title>permalink guid</title><guid>https://inline.example/g1</guid></item>"
        "<item><title>relative permalink</title><guid>/g2</guid></item>"
        "<item><title>link after guid</title><guid>https://inline.example/g3</guid>"
        "<link>https://inline.example/l3</link></item>"
        '<item><title>not a permalink</title><guid isPermaLink="false">https://inline.example/g4'
        "</guid></item>"
    ),
    # A second description is read as content, and content wins over the summary.
    "rss_two_descriptions": _RSS.format(
        "<item><title>two</title><description>first</description>"
        "<media:description>second</media:description></item>"
        "<item><title>content first</title><content:encoded>&lt;p&gt;full&lt;/p&gt;"
        "</content:encoded><description>teaser</description></item>"
    ),
    # A deeper media:title does not replace a title; only the first of equals counts, unless
    # it came from media:title.
    "media_titles": _RSS.format(
        "<item><media:group><media:title>A</media:title><media:description>first"
        "</media:description></media:group><media:content url='https://inline.example/v'>"
        "<media:title>B</media:title></media:content></item>"
        "<item><description>shallow</description><media:group><media:description>deep"
        "</media:description></media:group></item>"
    ),
    # A value from a deeper element does not replace one from a shallower element.
    "deeper_values": _RSS.format(
        "<item><title>t</title><guid isPermaLink='false'>shallow-id</guid>"
        "<author>shallow@inline.example</author><extra><guid isPermaLink='false'>deep-id</guid>"
        "<dc:creator>Deep</dc:creator></extra></item>"
    ),
    # A title inside <source> blocks later titles at its depth or deeper.
    "atom_source_first": _ATOM.format(
        "<entry><id>urn:s1</id><source><title>Source title</title></source>"
        "<media:group><media:title>Media title</media:title></media:group>"
        "<summary>s</summary><updated>2026-11-25T00:00:00Z</updated></entry>"
    ),
    "rss_authors": _RSS.format(
        "<item><title>a</title><author>x@inline.example (X)</author><dc:creator>Dee"
        "</dc:creator></item>"
        "<item><title>b</title><dc:creator>First</dc:creator><dc:creator>Second</dc:creator>"
        "</item><item><title>c</title><author><name>Nested Name</name></author></item>"
    ),
    # feedparser lower-cases element names.
    "rss_mixed_case": _RSS.format(
        "<Item><Title>Upper</Title><Link>https://inline.example/upper</Link>"
        "<PubDate>Wed, 25 Nov 2026 10:00:00 GMT</PubDate><Description>d</Description></Item>"
    ),
    # The forms the fast reader computes itself, and those it leaves to feedparser.
    "rss_dates": _RSS.format(
        "".join(
            f"<item><title>d{i}</title><pubDate>{d}</pubDate></item>" for i, d in enumerate(_DATES)
        )
    ),
    # The published date when it reads as one, else the updated one; of two, the last.
    "atom_dates": _ATOM.format(
        "<entry><id>urn:d1</id><title>a</title><published>not a date</published>"
        "<updated>2026-11-25T10:00:00Z</updated></entry>"
        "<entry><id>urn:d2</id><title>b</title><updated>2026-11-24T10:00:00Z</updated>"
        "<published>2026-11-20T10:00:00+02:00</published></entry>"
        "<entry><id>urn:d3</id><title>c</title><published>2026-11-21T10:00:00Z</published>"
        "<published>2026-11-22T10:00:00Z</published><updated>junk</updated></entry>"
        "<entry><id>urn:d4</id><title>d</title><published></published></entry>"
    ),
    "rss_xml_base": (
        '<?xml version="1.0"?><rss version="2.0"><channel xml:base="https://chan.example/a/">'
        '<title>b</title><link>home</link><item xml:base="sub/"><title>x</title>'
        '<link>page.html</link><description>&lt;a href="rel.html"&gt;r&lt;/a&gt; '
        '&lt;img src="/i.png"&gt;</description></item><item><title>y</title>'
        "<link>../up.html</link></item></channel></rss>"
    ),
    "media_content_description": _RSS.format(
        "<item><title>m</title><link>https://inline.example/m</link>"
        '<media:content url="https://inline.example/v.mp4"><media:title>Media title'
        "</media:title><media:description>Described in media:content</media:description>"
        "</media:content></item>"
    ),
    "rss_source_and_atom_link": _RSS.format(
        "<item><title>From a news aggregator</title><link>https://inline.example/gn</link>"
        '<source url="https://paper.example/rss">The Paper</source>'
        '<atom:link href="https://inline.example/atom-link"/></item>'
    ),
    "empty_values": _RSS.format(
        "<item><title></title><link></link><description></description><guid></guid></item>"
        "<item><title>   </title><description>x</description></item>"
    ),
    # C1 controls, which feedparser reads as Windows-1252: raw (UTF-8 encoded) and as decimal
    # and hexadecimal references; and a document in another encoding.
    # Blank lines before the XML declaration; a DOCTYPE feedparser drops (no internal subset).
    "blank_lines_before_declaration": "\n \r\n\t" + _RSS.format("<item><title>b</title></item>"),
    "plain_doctype": _RSS.format("<item><title>d</title></item>").replace(
        "?><rss", '?>\n<!DOCTYPE rss SYSTEM "https://dtd.example/rss.dtd">\n<rss'
    ),
    "html5_doctype": _ATOM.format("<entry><id>urn:h</id><title>h</title></entry>").replace(
        "?><feed", "?>\n<!DOCTYPE html><feed"
    ),
    # A prefix feedparser reads (dc:, media:) bound to a namespace it does not know: it names
    # the elements by the prefix; a known namespace under another prefix (atom10:) is fine.
    "prefix_bound_elsewhere": (
        '<?xml version="1.0"?><rss version="2.0" xmlns:dc="https://purl.org/dc/elements/1.1/"'
        ' xmlns:media="http://www.rssboard.org/media-rss"'
        ' xmlns:atom10="http://www.w3.org/2005/Atom"><channel><title>p</title>'
        '<atom10:link rel="self" href="https://inline.example/feed"/><item><title>t</title>'
        "<dc:creator>who</dc:creator><media:description>described</media:description>"
        "</item></channel></rss>"
    ),
    "c1_raw": _RSS.format("<item><title>raw \x96 dash</title></item>"),
    "c1_hexadecimal": _RSS.format("<item><title>hex &#x93;q&#x94; &#x0080;</title></item>"),
    "c1_decimal": _RSS.format("<item><title>decimal &#0150; &#159;</title></item>"),
    "c1_controls_latin1": (
        '<?xml version="1.0" encoding="windows-1252"?><rss version="2.0"><channel><title>w'
        "</title><item><title>\u2013 en dash \xe9</title><description>caf\xe9 \u20ac"
        "</description></item></channel></rss>"
    ),
    # An XML declaration the strict parser refuses, which feedparser reads past: it decodes
    # the document itself (UTF-8 here, whatever the declaration says) and parses it as UTF-8.
    "declaration_without_blank": (
        '<?xml version="1.0"encoding="utf-8"?><rss version="2.0"><channel><title>b</title>'
        "<item><title>caf\u00e9</title><description>&lt;p&gt;d&lt;/p&gt;</description></item>"
        "</channel></rss>"
    ),
    "channel_after_items": (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel>'
        "<itunes:summary>s</itunes:summary><description>d</description>"
        "<item><title>i</title><description>first</description><itunes:summary>second"
        "</itunes:summary></item><title>Late title</title><ttl> 30 </ttl></channel></rss>"
    ),
}

# Documents the fast reader must hand to feedparser, and the reason it gives.
ROUTED = {
    # Decoded as feedparser decodes it, still not well-formed: its lenient parser reads it.
    "declared_utf16_and_broken": (
        '<?xml version="1.0" encoding="utf-16"?>\n<rss version="2.0"><channel><title>n</title>'
        "<item><title>no&nbsp;break</title></item></channel></rss>",
        "not well-formed",
    ),
    "doctype": (
        '<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"'
        ' "http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91"><channel>'
        "<title>n</title><item><title>caf&eacute;</title></item></channel></rss>",
        "DOCTYPE",
    ),
    "doctype_after_declaration": (
        '<?xml version="1.0"?><!DOCTYPE rss SYSTEM "https://dtd.example/rss.dtd"><rss '
        'version="2.0"><channel><title>n</title><item><title>t</title></item></channel></rss>',
        "DOCTYPE",
    ),
    "entity_of_a_dropped_doctype": (
        '<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "https://dtd.example/rss.dtd">\n<rss '
        'version="2.0"><channel><title>n</title><item><title>caf&eacute;</title></item>'
        "</channel></rss>",
        "not well-formed",
    ),
    "bare_ampersand": (
        _RSS.format("<item><title>Record, replay & measure</title></item>"),
        "not well-formed",
    ),
    "undefined_entity": (
        _RSS.format("<item><title>Re&colon; ledgers</title></item>"),
        "not well-formed",
    ),
    "truncated": (
        _RSS.format("<item><title>Complete</title></item><item><title>Cut off").split("</ch")[0],
        "not well-formed",
    ),
    "atom_03": (
        '<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>o</title>'
        "<entry><title>old</title><id>x</id></entry></feed>",
        "root element",
    ),
    "unescaped_html_in_description": (
        _RSS.format("<item><title>t</title><description>Hi <b>there</b></description></item>"),
        "holds elements",
    ),
    "base64_content": (
        _ATOM.format(
            '<entry><id>urn:b</id><title>b</title><content type="application/octet-stream">'
            "aGVsbG8=</content></entry>"
        ),
        "base64",
    ),
    "svg_in_xhtml": (
        _ATOM.format(
            '<entry><id>urn:s</id><title>s</title><content type="xhtml"><div '
            'xmlns="http://www.w3.org/1999/xhtml"><svg xmlns="http://www.w3.org/2000/svg"/>'
            "</div></content></entry>"
        ),
        "inline XHTML",
    ),
    # feedparser renames the prefix of every dc: element to media: here (its namespace map).
    "prefix_renamed_by_a_declaration": (
        '<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://search.yahoo.com/mrss/"'
        ' xmlns:d="http://purl.org/dc/elements/1.1/"><channel><title>p</title><item>'
        "<title>t</title><d:creator>who</d:creator></item></channel></rss>",
        "prefix dc:",
    ),
}


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _fields(feed: ParsedFeed) -> tuple[object, ...]:
    entries = [tuple(getattr(entry, name) for name in ENTRY_FIELDS) for entry in feed.entries]
    return feed.title, feed.site_url, feed.ttl_seconds, entries


def _assert_same(body: bytes) -> None:
    fast = parse_fast(body, base_url=BASE)
    reference = parse_with_feedparser(body, base_url=BASE)

    assert fast.entries, "nothing to compare"
    assert (fast.parser, reference.parser) == ("fast", "feedparser")
    assert _fields(fast) == _fields(reference)


def test_it_declares_the_path_of_every_fixture():
    assert {path.name for path in FIXTURES.iterdir()} == set(FIXTURE_PATHS)


@pytest.mark.parametrize("name", sorted(FIXTURE_PATHS))
def test_it_takes_the_expected_path_for(name):
    parsed = parse_feed(_fixture(name), base_url=BASE)

    assert parsed.parser == FIXTURE_PATHS[name]
    assert parsed.entries
    assert bool(parsed.routed) == (FIXTURE_PATHS[name] == "feedparser")


def test_it_reads_most_fixtures_on_the_fast_path():
    paths = [parse_feed(_fixture(name), base_url=BASE).parser for name in FIXTURE_PATHS]

    assert paths.count("fast") >= 9
    assert paths.count("feedparser") == 2


@pytest.mark.parametrize("name", FAST_FIXTURES)
def test_it_gives_feedparsers_fields_for_fixture(name):
    _assert_same(_fixture(name))


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_it_gives_feedparsers_fields_for_construct(name):
    body = CONSTRUCTS[name]
    _assert_same(body.encode("windows-1252" if "windows-1252" in body else "utf-8"))


@pytest.mark.parametrize("name", sorted(ROUTED))
def test_it_routes_to_feedparser(name):
    body, reason = ROUTED[name]

    with pytest.raises(Routed, match=reason):
        parse_fast(body.encode(), base_url=BASE)
    parsed = parse_feed(body.encode(), base_url=BASE)
    assert parsed.parser == "feedparser"
    assert reason in parsed.routed
    assert parsed.entries


# --- The constructs a recovering parser gets wrong, read right ------------------------------


def _entries(name: str) -> list:
    return parse_feed(_fixture(name), base_url=BASE).entries


def test_it_reads_a_utf8_document_that_declares_utf16_as_feedparser_does():
    # feedparser tries the declared encoding first: an odd number of bytes cannot be UTF-16,
    # so it reads them as UTF-8; an even number decodes as UTF-16, to nothing readable.
    odd = (
        '<?xml version="1.0" encoding="utf-16"?>\n<rss version="2.0"><channel><title>u</title>'
        "<item><title>caf\u00e9 \u20ac</title><link>https://inline.example/u</link></item>"
        "</channel></rss>\n"
    ).encode()
    assert len(odd) % 2 == 1

    _assert_same(odd)
    assert [entry.title for entry in parse_feed(odd).entries] == ["caf\u00e9 \u20ac"]
    with pytest.raises(Routed, match="not well-formed"):
        parse_fast(odd + b" ")
    with pytest.raises(NotAFeed):
        parse_feed(odd + b" ")


def test_it_reads_atom_xhtml_titles_and_content():
    parsed = parse_feed(_fixture("atom_xhtml.xml"), base_url=BASE)
    rock, prefixed = parsed.entries

    assert parsed.title == "XHTML Fixture"
    assert rock.title == "Rock & roll live, 5 < 6"
    assert prefixed.title == "Prefixed div title"
    assert rock.text == "The gig was loud.\nVery.\n\nReally."
    assert "<strong>loud</strong>.<br>Very.</p>" in rock.html  # one <br>, as written
    assert "onclick" not in rock.html


def test_it_resolves_relative_links_against_xml_base_and_the_feed_url():
    rock, prefixed = _entries("atom_xhtml.xml")
    full, _ = _entries("rss1_content.rdf")

    assert rock.url == "https://xhtml.example/blog/posts/rock"  # the feed's xml:base
    assert prefixed.url == "https://other.example/relative"  # the entry's own xml:base
    # Links in the content: against the content's xml:base, else the feed URL.
    assert 'href="https://cdn.xhtml.example/media/gig.html"' in rock.html
    assert 'src="https://cdn.xhtml.example/media/stage.jpg"' in rock.html
    assert 'href="https://other.example/more"' in prefixed.html
    assert 'href="https://base.example/about"' in full.html


def test_it_reads_rss_1_0_content_encoded():
    full, short = _entries("rss1_content.rdf")

    assert full.external_id == "https://rdf.example/full"  # rdf:about
    assert full.text.startswith("The whole article, not the teaser.")
    assert "teaser that ends" not in full.text
    assert full.author == "Rita Dee"
    assert full.published_at == datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
    assert short.text == "Just the description."


def test_it_reads_youtube_media_descriptions():
    webcam, soldering = _entries("youtube.xml")

    assert webcam.external_id == "yt:video:abc123DEF45"
    assert webcam.url == "https://www.youtube.com/watch?v=abc123DEF45"
    assert webcam.text.startswith("You can easily make an ESP32-S3 into a webcam.\n\nParts:")
    assert "- ESP32-S3 board & OV2640 camera\n- a 3D-printed case <10 g" in webcam.text
    assert webcam.author == "Fixture Workshop"
    assert webcam.published_at == datetime(2026, 11, 20, 15, 0, 6, tzinfo=UTC)
    assert soldering.title == "Soldering tips & tricks"
    assert soldering.text == "Flux, heat, patience."


def test_it_keeps_titles_and_markup_of_a_feed_that_is_not_well_formed():
    parsed = parse_feed(_fixture("not_well_formed.xml"), base_url=BASE)
    tmil, ledger = parsed.entries

    assert parsed.parser == "feedparser"
    assert "not well-formed" in parsed.routed
    assert tmil.title == "TMIL: Record, replay & measure user flows"
    assert tmil.url == "https://broken.example/tmil?a=1&b=2"
    assert tmil.html == "<p>Escaped <b>markup</b> after a bare &amp; sign.</p>"
    assert ledger.title == "Re: Double-entry accounting at scale"
    assert '<img src="https://broken.example/ledger.png" alt="ledger">' in ledger.html


def test_it_reads_cdata_sections():
    parsed = parse_feed(_fixture("cdata.xml"), base_url=BASE)
    fish, mixed = parsed.entries

    assert parsed.title == "CDATA & Sons"
    assert fish.title == 'Fish & Chips <3 "quoted">'
    assert fish.url == "https://cdata.example/fish?x=1&y=2"
    assert fish.external_id == "https://cdata.example/fish"  # the guid, not the link
    assert "if (a &lt; b) {\n  fry();\n}" in fish.html
    assert "A CDATA end inside: ]]> stays text." in fish.text
    assert "alert" not in fish.html + fish.text
    assert fish.published_at == datetime(2026, 11, 23, 23, 45, tzinfo=UTC)
    assert mixed.title == "Mixed cdata and text"


def test_it_decodes_entities_once():
    double, escaped, cp1252, latin1 = _entries("entities.xml")

    assert double.title == "Double-escaped & kept once, <b> shown as text"
    assert double.text == "5 < 6 & 7 > 3"
    assert double.url == "https://ent.example/1?x=1&y=2"
    assert escaped.title == "Escaped markup in a title"
    assert (
        escaped.text == "Curly \u201cquotes\u201d, an em dash \u2014 and an apostrophe\u2019s turn."
    )
    # &#128; &#147; &#148; &#150; are C1 controls; feedparser reads them as Windows-1252.
    assert cp1252.title == "Windows-1252 code points: \u20ac \u201csmart\u201d \u2013 done"
    assert cp1252.author == "ed@ent.example (Ed & Itor)"
    assert latin1.title == "Café au lait: UTF-8 read as Latin-1"


def test_it_reads_the_feed_ttl_in_seconds():
    assert parse_feed(_fixture("cdata.xml")).ttl_seconds == 45 * 60
    assert parse_feed(_fixture("podcast.xml")).ttl_seconds == 1440 * 60
    assert parse_feed(_fixture("atom.xml")).ttl_seconds is None


def test_it_takes_the_author_from_each_kind_of_author_element():
    rock, _ = _entries("atom_xhtml.xml")
    blogger, _ = _entries("planet_atom.xml")
    episode, _ = _entries("podcast.xml")

    assert rock.author == "Xavier (x@xhtml.example)"  # Atom name and email
    assert blogger.author == "Blog Author (noreply@blogger.com)"  # beside a <gd:image>
    assert episode.author == "Guest Speaker"  # itunes:author


def test_it_identifies_entries_by_guid_then_link():
    episode, tunnels = _entries("podcast.xml")

    assert (episode.external_id, episode.url) == ("cast-episode-12", "")  # not a permalink
    assert tunnels.url == tunnels.external_id == "https://cast.example/episodes/11"


def test_it_reads_a_doctype_with_simple_entities_through_feedparser():
    parsed = parse_feed(_fixture("doctype_entities.xml"), base_url=BASE)
    [entry] = parsed.entries

    assert parsed.parser == "feedparser"
    assert entry.title == "Price\xa0drop — 20% off"


def test_it_never_reads_a_json_feed_as_xml():
    for name in ("feed.json", "jsonfeed_v1.json"):
        assert parse_feed(_fixture(name)).parser == "json"
    with pytest.raises(Routed):
        parse_fast(_fixture("jsonfeed_v1.json"))


def test_it_refuses_hostile_entities_on_every_path():
    body = (
        '<?xml version="1.0"?><!-- <a> hides the DTD from a look at the head -->'
        '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + _RSS.format("<item><title>a &x; b</title></item>").split("?>", 1)[1]
    ).encode()

    with pytest.raises(NotAFeed, match="XXE"):
        parse_fast(body)
    with pytest.raises(NotAFeed, match="XXE"):
        parse_feed(body)
