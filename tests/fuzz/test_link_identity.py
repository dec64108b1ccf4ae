"""Properties of feeds/urls.py: `clean_link` only ever removes tracking parameters (whatever
their case or encoding) and leaves everything else as the publisher wrote it; `canonical_link`
is idempotent; `link_key` is the same for two spellings of one article's link (tracking
parameters, host case, "www.", default port, fragment, parameter order) and no function raises
on arbitrary text."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_plus, urlsplit

from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds import urls
from feeds.urls import TRACKING_PARAMS, canonical_link, clean_link, is_tracking_param, link_key
from tests.fuzz.profiles import scaled
from tests.fuzz.strategies import hostile_text, url_values

_TRACKING_NAMES = [
    *sorted(TRACKING_PARAMS),
    "utm_source", "utm_medium", "UTM_Campaign", "utm_", "Utm_Content", "pk_kwd", "mtm_cid",
    "hsa_acc", "__s", "__sXyz", "FBCLID", "GcLiD", "utm%5Fsource", "%75tm_term",
]  # fmt: skip
_NAMES = ["q", "id", "page", "p", "a", "b", "A", "ref", "utm", "source", "x y", "k%3D", "é", ""]
_VALUES = ["", "1", "a b", "a+b", "%ff", "%7e", "%7E", "%zz", "x=y", "é", "%E2%9C%93", "/?"]


def _segment(name: str, value: str) -> str:
    return f"{name}={value}" if value or name else "="


segments = st.builds(
    _segment,
    st.one_of(st.sampled_from(_NAMES), st.text(alphabet="abcXYZ019_-.~%é ", max_size=6)),
    st.one_of(st.sampled_from(_VALUES), st.text(alphabet="abc019%+=/é ~", max_size=6)),
)
tracking_segments = st.builds(_segment, st.sampled_from(_TRACKING_NAMES), st.sampled_from(_VALUES))
hosts = st.sampled_from(
    [
        "example.test",
        "news.example.test",
        "xn--bcher-kva.example",
        "127.0.0.1",
        "[::1]",
        "[2001:db8::1]",
    ]
)
paths = st.sampled_from(["", "/", "/a/b", "/a%20b/", "/%7Euser/page.html", "/é", "//double"])


def _name(segment: str) -> str:
    return unquote_plus(segment.partition("=")[0])


@st.composite
def _link_with_tracking(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """(URL, the query's segments, the non-tracking ones in order)."""
    kept = draw(st.lists(segments.filter(lambda s: not is_tracking_param(_name(s))), max_size=4))
    query = list(kept)
    for tracking in draw(st.lists(tracking_segments, max_size=4)):
        query.insert(draw(st.integers(0, len(query))), tracking)
    scheme = draw(st.sampled_from(["http", "https"]))
    fragment = draw(st.sampled_from(["", "#", "#top", "#utm_source=x"]))
    url = f"{scheme}://{draw(hosts)}{draw(paths)}?{'&'.join(query)}{fragment}"
    return url, query, kept


@settings(max_examples=scaled(300))
@given(case=_link_with_tracking())
@example(case=("http://example.test/?q=%ff&utm_source=a", ["q=%ff", "utm_source=a"], ["q=%ff"]))
@example(case=("http://example.test/?q=a+b&fbclid=1", ["q=a+b", "fbclid=1"], ["q=a+b"]))
def test_clean_link_removes_tracking_parameters_and_keeps_the_rest_verbatim(
    case: tuple[str, list[str], list[str]],
) -> None:
    url, query, kept = case
    cleaned = clean_link(url)
    if kept == query:
        assert cleaned == url
        return
    parts = urlsplit(cleaned)
    remaining = parts.query.split("&") if parts.query else []
    assert remaining == kept, cleaned
    assert not any(is_tracking_param(_name(s)) for s in remaining)
    assert urlsplit(url)._replace(query="") == parts._replace(query="")


@settings(max_examples=scaled(300))
@given(text=st.one_of(url_values, hostile_text, st.text()))
@example(text="http://[::1]:8080/a?utm_source=x")
@example(text="http://[::1]/")
def test_no_link_function_raises_and_canonical_links_are_fixed_points(text: str) -> None:
    cleaned = clean_link(text)
    canonical = canonical_link(text)
    key = link_key(text)
    assert isinstance(cleaned, str)
    assert canonical_link(canonical) == canonical
    assert link_key(canonical) == key
    assert (key == "") == (canonical == "")
    assert canonical == "" or canonical.startswith("https://")


@st.composite
def _spellings(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one link: the second with tracking parameters added, the host's case
    changed, "www." and a trailing dot added, a default port, a fragment and the query
    reordered."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.sampled_from(["example.test", "news.example.test", "xn--bcher-kva.example"]))
    path = draw(st.sampled_from(["/", "/a/b", "/a%20b/", "/%7Euser/page.html"]))
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(["q", "id", "page", "a"]), st.sampled_from(["1", "2", "x"])),
            max_size=4,
            unique_by=lambda pair: pair[0],
        )
    )
    query = [f"{quote(k)}={quote(v)}" for k, v in pairs]
    base = f"{scheme}://{host}{path}" + (f"?{'&'.join(query)}" if query else "")

    other_host = "".join(c.upper() if draw(st.booleans()) else c for c in host)
    if draw(st.booleans()):
        other_host = "www." + other_host
    if draw(st.booleans()):
        other_host += "."
    other_scheme = draw(st.sampled_from(["http", "https", "HTTP", "HttpS"]))
    port = draw(st.sampled_from(["", ":80", ":443"]))
    shuffled = draw(st.permutations(query))
    for tracking in draw(st.lists(tracking_segments, max_size=3)):
        shuffled.insert(draw(st.integers(0, len(shuffled))), tracking)
    fragment = draw(st.sampled_from(["", "#", "#section-2"]))
    other = (
        f"{other_scheme}://{other_host}{port}{path}"
        + (f"?{'&'.join(shuffled)}" if shuffled else "")
        + fragment
    )
    return base, other


@settings(max_examples=scaled(300))
@given(pair=_spellings())
def test_link_key_is_the_same_for_every_spelling_of_a_link(pair: tuple[str, str]) -> None:
    base, other = pair
    assert link_key(base) != ""
    assert link_key(other) == link_key(base), (canonical_link(base), canonical_link(other))


_plain_links = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}{path}{query}",
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    st.one_of(
        st.sampled_from(["example.test", "WWW.Example.Test", "www.x", "www", "a-b.c-d.test"]),
        st.text(alphabet="abcXYZ019-.", min_size=1, max_size=12),
    ),
    st.one_of(
        st.sampled_from(["", "/", "//double", "/a%20b/", "/%7Euser/p.html?", "/a#b", "/é"]),
        st.text(alphabet="/abcZ09%._-~!$&'()*+,;=:@\"<>[]\\^`{|}\t\n ?#", max_size=12).map(
            lambda p: "/" + p
        ),
    ),
    st.one_of(
        st.just(""),
        st.sampled_from(
            ["?v=abc", "?a=1&a=0", "?b=&a=2", "?a.b=1&a=1", "?utm_source=x", "?x=1&fbclid=2"]
        ),
        st.lists(
            st.tuples(
                st.one_of(
                    st.text(alphabet="ab_.~-Z9", min_size=1, max_size=4),
                    st.sampled_from(sorted(TRACKING_PARAMS)),
                ),
                st.text(alphabet="ab_.~-Z9=%+ ", max_size=4),
            ),
            min_size=1,
            max_size=4,
        ).map(lambda pairs: "?" + "&".join(f"{name}={value}" for name, value in pairs)),
    ),
)


@settings(max_examples=scaled(500))
@given(url=st.one_of(_plain_links, url_values))
@example(url="http://WWW.Example.Test/A/b")
@example(url="https://a.test/x?")
@example(url="https://a.test/x\ty")
@example(url="https://www.youtube.com/watch?v=abc&utm_source=x&a.b=1&a=2")
def test_canonical_link_shortcut_gives_what_parsing_gives(url: str) -> None:
    # clean_link and canonical_link answer plain links without urlsplit; the general path must
    # agree.
    shortcut = urls._PLAIN_LINK
    try:
        urls._PLAIN_LINK = re.compile(r"(?!)")  # matches nothing: every link is parsed
        parsed = canonical_link(url), clean_link(url)
    finally:
        urls._PLAIN_LINK = shortcut
    assert (canonical_link(url), clean_link(url)) == parsed
