"""Telegram channels without credentials: saved t.me/s pages served from 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from feeds import services
from feeds.models import PollLog, PollStatus, RawPost, Source, SourceKind
from feeds.parsing import NotAFeed
from feeds.telegram.preview import ACCEPT, read_preview

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telegram"
HTML = "text/html; charset=utf-8"
CHANNEL = "/s/infatium_news"


def _page(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def tme(feed_server, settings):
    """The preview base pointed at a local server that serves the saved channel pages."""
    settings.TELEGRAM_PREVIEW_BASE_URL = feed_server.url("/s/")
    feed_server.serve(CHANNEL, _page("channel.html"), content_type=HTML)
    feed_server.serve(f"{CHANNEL}?before=101", _page("channel_before_101.html"), content_type=HTML)
    return feed_server


def _source(name: str = "infatium_news", **fields: object) -> Source:
    return Source.objects.create(kind=SourceKind.TELEGRAM, url=f"https://t.me/{name}", **fields)


def _poll(source: Source) -> list[int]:
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    return services.poll_source(source_id=source.id, token=claim.token)


def _no_known(ids: object) -> set[str]:
    return set()


def test_it_maps_each_post_of_the_page_with_the_gateways_identity(tme):
    read = read_preview(_source(), _no_known)

    posts = {e.external_id: e for e in read.entries}
    # 102 is a service message (a pin); 103-105 is one album, kept under its smallest id.
    assert list(posts) == ["101", "103", "106", "107", "108"]
    assert read.cursor == 108  # the highest id on the page, album parts included
    assert (read.title, read.site_url, read.http_status) == (
        "Infatium News",
        "https://t.me/infatium_news",
        200,
    )
    first = posts["101"]
    assert first.url == "https://t.me/infatium_news/101"
    assert first.title == "Markets rally after rate cut"
    assert first.text == (
        "Markets rally after rate cut\nThe central bank cut rates by 0.5 points. Read more: "
        "https://example.org/markets?a=1&b=2 #economy"
    )
    assert first.published_at == datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert "<b>Markets rally after rate cut</b>" in first.html
    assert "<i>0.5 points</i>" in first.html
    # t.me escapes & twice in hrefs; hashtags link to the channel's search.
    assert 'href="https://example.org/markets?a=1&amp;b=2"' in first.html
    assert 'href="https://t.me/s/infatium_news?q=%23economy"' in first.html
    assert "onclick" not in first.html
    album = posts["103"]
    assert album.url == "https://t.me/infatium_news/103"
    assert album.title == "Photos from the climate summit in Lisbon"
    assert album.html.count("<img") == 3
    # A first line over 120 characters: the title is its first sentence.
    assert posts["106"].title == (
        "The city council approved the new transit plan today after a six-hour debate."
    )
    assert posts["106"].text.endswith("across all districts.\n\nDetails in the thread.")
    assert posts["107"].title == "Interview with the mayor 🎥"
    assert "mayor-interview-thumb.jpg" in posts["107"].html
    assert posts["108"].author == "Anna K."
    assert "Annual report 2024" in posts["108"].html  # the link preview, in the HTML only
    assert "Annual report 2024" not in posts["108"].text
    assert [r.headers.get("Accept") for r in tme.requests] == [ACCEPT]


@pytest.mark.parametrize(
    ("cursor", "max_pages", "paths"),
    [
        (0, 5, [CHANNEL]),  # a new source starts with the newest page only
        (100, 5, [CHANNEL]),  # the page reaches back to the cursor
        (96, 5, [CHANNEL, f"{CHANNEL}?before=101"]),  # one page behind: read it
        (96, 1, [CHANNEL]),  # ... unless TELEGRAM_PREVIEW_MAX_PAGES says no
        # Further behind than the older page reaches: the next one (?before=95) is not served,
        # so the limit is what keeps the reader from asking for it.
        (10, 2, [CHANNEL, f"{CHANNEL}?before=101"]),
    ],
)
def test_it_reads_older_pages_back_to_the_cursor(tme, settings, cursor, max_pages, paths):
    settings.TELEGRAM_PREVIEW_MAX_PAGES = max_pages

    read = read_preview(_source(cursor=cursor), _no_known)

    assert [r.path for r in tme.requests] == paths
    ids = [int(e.external_id) for e in read.entries]
    assert ids == sorted(ids)
    assert read.cursor == 108
    if len(paths) == 2:
        older = {e.external_id: e for e in read.entries}
        assert {"95", "96", "97", "99", "100"} <= set(older)
        assert "98" not in older  # service message
        # A reply's quote is not the post's text.
        assert older["100"].text == "Update: the storm has passed, no damage reported"


def test_an_album_is_kept_under_its_smallest_id_whichever_part_the_bubble_names(tme):
    # The bubble may be keyed on another part than the first (the one with the caption).
    page = _page("channel.html").replace(
        b'data-post="infatium_news/103"', b'data-post="infatium_news/105"'
    )
    tme.serve(CHANNEL, page, content_type=HTML)

    read = read_preview(_source(), _no_known)

    album = [e for e in read.entries if e.title.startswith("Photos from the climate summit")]
    assert [(e.external_id, e.url) for e in album] == [("103", "https://t.me/infatium_news/103")]


def test_a_channel_without_posts_is_read_as_zero_entries(feed_server, settings):
    settings.TELEGRAM_PREVIEW_BASE_URL = feed_server.url("/s/")
    feed_server.serve("/s/quiet_channel", _page("empty_channel.html"), content_type=HTML)
    source = _source("quiet_channel", cursor=40)

    read = read_preview(source, _no_known)
    _poll(source)

    assert (read.entries, read.cursor, read.title) == ([], None, "Quiet Channel")
    source.refresh_from_db()
    assert (source.last_status, source.last_error, source.cursor) == (PollStatus.OK, "", 40)


def test_it_polls_a_telegram_source_through_the_preview(tme):
    source = _source()

    new_ids = _poll(source)
    again = _poll(source)

    assert len(new_ids) == 5
    assert again == []
    stored = {r.external_id: r for r in RawPost.objects.filter(source=source)}
    assert sorted(stored, key=int) == ["101", "103", "106", "107", "108"]
    assert stored["103"].url == "https://t.me/infatium_news/103"
    source.refresh_from_db()
    assert (source.cursor, source.title, source.last_status) == (108, "Infatium News", "ok")
    assert source.site_url == "https://t.me/infatium_news"


def test_an_edited_post_updates_the_raw_post_on_the_next_poll(tme):
    source = _source()
    _poll(source)
    edited = _page("channel.html").replace(
        b"Photos from the climate summit in Lisbon", b"Photos from the climate summit in Porto"
    )
    tme.serve(CHANNEL, edited, content_type=HTML)

    to_process = _poll(source)

    raw = RawPost.objects.get(source=source, external_id="103")
    assert to_process == [raw.id]
    assert raw.title == "Photos from the climate summit in Porto"
    assert raw.edited_at is not None
    assert RawPost.objects.filter(source=source).count() == 5


def _renamed_data_post(server) -> None:
    page = _page("channel.html").replace(b"data-post=", b"data-post-ref=")
    server.serve(CHANNEL, page, content_type=HTML)


def _layout_changed(server) -> None:
    server.serve(CHANNEL, _page("layout_changed.html"), content_type=HTML)


def _redirected_to_landing_page(server) -> None:
    # What t.me does for a private channel or a name nobody has: off the preview.
    server.serve(CHANNEL, b"", status=302, headers={"Location": "/infatium_news"}, etag=False)
    server.serve("/infatium_news", _page("not_found.html"), content_type=HTML)


def _landing_page_in_place(server) -> None:
    server.serve(CHANNEL, _page("not_found.html"), content_type=HTML)


@pytest.mark.parametrize(
    ("serve", "words"),
    [
        (_layout_changed, "t.me preview layout not recognised: no message list"),
        (_renamed_data_post, "t.me preview layout not recognised: a message has no data-post"),
        (
            _redirected_to_landing_page,
            "channel is private or does not exist: t.me/s/infatium_news redirected to",
        ),
        (_landing_page_in_place, "channel is private or does not exist"),
    ],
)
def test_a_page_we_cannot_read_ends_as_a_clear_error_on_the_source(tme, serve, words):
    source = _source()
    serve(tme)

    with pytest.raises(NotAFeed, match=words):
        read_preview(source, _no_known)
    assert _poll(source) == []

    source.refresh_from_db()
    assert source.last_status == PollStatus.NOT_A_FEED
    assert words in source.last_error
    assert source.error_count == 1
    log = PollLog.objects.get(source=source)
    assert (log.status, log.error_class) == (PollStatus.NOT_A_FEED, "NotAFeed")
    assert not RawPost.objects.filter(source=source).exists()


@pytest.mark.parametrize("url", ["https://t.me/+AbCdEfGhIjK", "https://t.me/c/1234567890/5"])
def test_a_link_that_names_no_public_channel_is_refused_without_a_request(tme, url):
    source = Source.objects.create(kind=SourceKind.TELEGRAM, url=url)

    with pytest.raises(NotAFeed, match="is not a public channel name"):
        read_preview(source, _no_known)
    assert tme.requests == []
