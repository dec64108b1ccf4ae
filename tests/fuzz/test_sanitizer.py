"""Properties of the one sanitizer (feeds/sanitize.py) on hostile HTML: its output is a fixed
point (sanitizing twice changes nothing), holds nothing outside the allow-list (no script,
style, iframe, object, svg, no event handler, no javascript:/vbscript:/data: URL), never
carries the text of a script or style element, and `clean_fragment` gives exactly the text of
`html_to_text` with HTML as safe as `sanitize_html`'s."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds.sanitize import (
    _SERIALIZED_TAG,
    _normalize_text,
    _text_cleaner,
    _unescape_serialized,
    clean_fragment,
    html_to_text,
    sanitize_html,
)
from tests.fuzz.profiles import scaled
from tests.fuzz.reported import passing_over_reported_bugs
from tests.fuzz.safety import assert_safe_html, assert_storable
from tests.fuzz.strategies import CANARY, HOSTILE_URLS, html_soup, html_trees

any_html = st.one_of(html_trees, html_soup)
base_urls = st.sampled_from(
    ["", "https://example.test/dir/page", "javascript:alert(1)//", *HOSTILE_URLS[:6]]
)

VECTORS = [
    # From feedparser's tests/wellformed/sanitize and published sanitizer bypasses (tab in
    # the scheme, NUL, namespace confusion, noscript and misnested-table mutation XSS).
    '<a href="javascript&#9;:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<svg><script>alert(1)</script></svg>",
    "<svg onload=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<iframe src=javascript:alert(1)></iframe>",
    "<object data=javascript:alert(1)></object><embed src=javascript:alert(1)>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<div style="width: expression(alert(1))">x</div>',
    "<base href=javascript:alert(1)//>",
    "<form action=javascript:alert(1)><input type=submit></form>",
    "<scr<script>ipt>alert(1)</script>",
    "<table><a href=javascript:alert(1)>x</a></table>",
]


@settings(max_examples=scaled(200))
@given(fragment=any_html, base_url=base_urls)
def test_sanitizing_twice_changes_nothing(fragment: str, base_url: str) -> None:
    once = sanitize_html(fragment, base_url=base_url)
    twice = sanitize_html(once, base_url=base_url)
    if twice == once:
        return
    with passing_over_reported_bugs():
        if once.startswith("\ufeff"):
            raise AssertionError(f"not a fixed point (leading BOM): {once!r} -> {twice!r}")
        # It must at least settle, and stay safe, on the next pass.
        assert sanitize_html(twice, base_url=base_url) == twice, (once, twice)
        assert_safe_html(twice)
        # Restructured: the same text and no kind of element the first pass did not give.
        same = _tags(twice) <= _tags(once) and _words(once) == _words(twice)
        why = "restructured" if same else "changed"
        raise AssertionError(f"not a fixed point ({why}): {once!r} -> {twice!r}")


def _tags(html: str) -> set[str]:
    return set(re.findall(r"<([a-z0-9]+)", html))


def _words(html: str) -> str:
    # The text without its whitespace: a restructured tree moves the line breaks.
    return "".join(html_to_text(html).split())


@settings(max_examples=scaled(200))
@given(fragment=any_html, base_url=base_urls)
@example(fragment="\n".join(VECTORS), base_url="")
def test_sanitized_html_holds_only_the_allow_list(fragment: str, base_url: str) -> None:
    html = sanitize_html(fragment, base_url=base_url)
    assert_safe_html(html)
    assert_storable("sanitized HTML", html)


@settings(max_examples=scaled(200))
@given(fragment=html_trees)
def test_script_and_style_text_never_comes_out(fragment: str) -> None:
    html, text = clean_fragment(fragment)
    assert CANARY not in sanitize_html(fragment)
    assert CANARY not in html_to_text(fragment)
    assert CANARY not in html
    assert CANARY not in text


@settings(max_examples=scaled(200))
@given(fragment=any_html, base_url=base_urls)
@example(fragment="<p>a</p>\x0c<b>b</b>", base_url="")
def test_clean_fragment_gives_html_to_text_and_safe_html(fragment: str, base_url: str) -> None:
    html, text = clean_fragment(fragment, base_url=base_url)
    assert text == html_to_text(fragment)
    assert_safe_html(html)
    assert_storable("clean_fragment HTML", html)
    assert_storable("clean_fragment text", text)


@pytest.mark.parametrize("vector", VECTORS)
def test_every_known_vector_comes_out_inert(vector: str) -> None:
    assert_safe_html(sanitize_html(vector))
    assert_safe_html(clean_fragment(vector)[0])


_LINE_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_RUN = re.compile(r"\n{3,}")


def _text_as_specified(text: str) -> str:
    """html_to_text's whitespace rule, spelled as plainly as possible: the text of stored raw
    posts is hashed to tell edits, so a faster spelling must give exactly this."""
    text = _LINE_SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n", text).strip()


whitespace_text = st.lists(
    st.sampled_from(
        [
            " ",
            "  ",
            "\t",
            "\r",
            "\f",
            "\v",
            "\n",
            "\n\n\n",
            "a",
            "bc",
            "\xa0",
            "\u3000",
            "\x85",
            "\u2028",
            "\x1c",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=scaled(500))
@given(text=whitespace_text)
@example(text="a \t  b\n\n\n\n  c  \n")
@example(text=" \xa0 a\t\t\xa0b \u3000\n\n \n\n\nc")
def test_text_whitespace_follows_the_rule(text: str) -> None:
    assert _normalize_text(text) == _text_as_specified(text)


@settings(max_examples=scaled(300))
@given(fragment=st.one_of(any_html, st.text(max_size=60)), base_url=base_urls)
@example(fragment="&amp;lt; &#160; &eacute; &quot;x&quot; <b>&gt;</b>&nbsp;&", base_url="")
def test_serialized_text_decodes_like_html_unescape(fragment: str, base_url: str) -> None:
    # The text is decoded with four replacements, which is html.unescape only for what
    # html5ever writes out.
    for cleaned in (sanitize_html(fragment, base_url=base_url), _text_cleaner.clean(fragment)):
        text = _SERIALIZED_TAG.sub("", cleaned)
        assert _unescape_serialized(text) == html.unescape(text)
