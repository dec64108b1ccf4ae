"""Which items are new: the identity ladder, tracking parameters, tombstones and edits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feeds import services
from feeds.models import PollLog, RawPost, Source, Tombstone
from feeds.urls import canonical_link, clean_link, link_key
from processing.models import Feed, Post

pytestmark = pytest.mark.django_db


def _poll(source: Source) -> list[int]:
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None
    return services.poll_source(source_id=source.id, token=claim.token)


def _feed(*items: tuple[str | None, str | None, str, str]) -> str:
    """RSS with items (guid, link, title, text); None leaves the element out."""
    body = ""
    for guid, link, title, text in items:
        body += "<item>"
        body += f"<title>{title}</title><description>{text}</description>"
        if link is not None:
            body += f"<link>{link}</link>"
        if guid is not None:
            body += f'<guid isPermaLink="false">{guid}</guid>'
        body += "</item>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>Identity</title><link>http://example.test/</link>{body}</channel></rss>"
    )


def test_links_lose_tracking_parameters_but_keep_the_rest():
    link = "https://Example.com/a?id=7&utm_source=x&fbclid=abc&UTM_Medium=y&ref_src=tw#frag"
    assert clean_link(link) == "https://Example.com/a?id=7#frag"
    assert clean_link("https://example.com/a?id=7") == "https://example.com/a?id=7"
    assert canonical_link("http://www.example.com:80/a?b=2&a=1&utm_x=1#top") == (
        "https://example.com/a?a=1&b=2"
    )
    assert link_key("https://example.com/a?x=1&utm_campaign=z") == link_key(
        "http://WWW.example.com/a?x=1"
    )
    assert link_key("https://example.com/a") != link_key("https://example.com/b")
    assert link_key("") == "" and link_key("javascript:alert(1)") == ""


def test_a_stored_link_has_no_tracking_parameters(feed_server):
    url = feed_server.serve(
        "/t.xml", _feed(("g1", "http://example.test/a?utm_source=rss&id=1", "One", "x"))
    )
    source = Source.objects.create(url=url)
    _poll(source)
    assert RawPost.objects.get(source=source).url == "http://example.test/a?id=1"


def test_items_sharing_one_guid_are_told_apart_by_their_links(feed_server):
    # Some feeds give every item the same guid; keeping "the first copy" would lose the rest.
    url = feed_server.serve(
        "/same-guid.xml",
        _feed(
            ("same", "http://example.test/1", "One", "first"),
            ("same", "http://example.test/2", "Two", "second"),
            ("same", "http://example.test/3", "Three", "third"),
        ),
    )
    source = Source.objects.create(url=url)

    assert len(_poll(source)) == 3
    assert len(_poll(source)) == 0  # and the next poll sees the same three, not three new
    assert sorted(RawPost.objects.values_list("title", flat=True)) == ["One", "Three", "Two"]


def test_an_item_whose_guid_changes_on_every_poll_is_not_new_again(feed_server):
    url = feed_server.serve(
        "/changing.xml", _feed(("v1-a", "http://example.test/a?utm_source=1", "A", "same text"))
    )
    source = Source.objects.create(url=url)
    assert len(_poll(source)) == 1

    # New guid, and a different tracking parameter on the same link.
    feed_server.serve(
        "/changing.xml", _feed(("v2-a", "http://example.test/a?utm_source=2", "A", "same text"))
    )
    assert _poll(source) == []
    assert RawPost.objects.filter(source=source).count() == 1


def test_items_without_guid_or_unique_link_fall_back_to_their_content(feed_server):
    # Every item links to the home page: the link tells nothing apart, the content does.
    home = "http://example.test/"
    url = feed_server.serve(
        "/home.xml", _feed((None, home, "Alpha", "one"), (None, home, "Beta", "two"))
    )
    source = Source.objects.create(url=url)
    assert len(_poll(source)) == 2
    feed_server.serve(
        "/home.xml",
        _feed(
            (None, home, "Gamma", "three"),
            (None, home, "Alpha", "one"),
            (None, home, "Beta", "two"),
        ),
    )
    new = _poll(source)
    assert [RawPost.objects.get(id=i).title for i in new] == ["Gamma"]


def test_a_purged_item_never_comes_back_as_new(feed_server):
    url = feed_server.serve(
        "/purge.xml",
        _feed(
            ("g1", "http://example.test/1", "Old", "old"),
            ("g2", "http://example.test/2", "Kept", "k"),
        ),
    )
    source = Source.objects.create(url=url)
    _poll(source)
    old = RawPost.objects.get(source=source, external_id="g1")
    kept = RawPost.objects.get(source=source, external_id="g2")
    long_ago = timezone.now() - timedelta(days=400)
    RawPost.objects.filter(source=source).update(fetched_at=long_ago, processed_at=long_ago)
    # A raw post that some feed kept as a post is not purged.
    _keep_as_post(kept)

    assert services.purge_raw_posts(older_than_days=30) == 1

    assert not RawPost.objects.filter(id=old.id).exists()
    assert RawPost.objects.filter(id=kept.id).exists()
    tomb = Tombstone.objects.get(source=source)
    assert (tomb.external_id, tomb.link_key) == ("g1", link_key("http://example.test/1"))
    # The item is still in the feed; even with a new guid it is not new again.
    feed_server.serve(
        "/purge.xml",
        _feed(
            ("g1-renamed", "http://example.test/1", "Old", "old"),
            ("g2", "http://example.test/2", "Kept", "k"),
        ),
    )
    assert _poll(source) == []
    assert services.known_external_ids(source.id, ["g1", "g2", "g3"]) == {"g1", "g2"}


def _keep_as_post(raw: RawPost) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="keeper", password="pw-keeper-123")
    feed = Feed.objects.create(owner=user, name="Keeper", description="anything")
    Post.objects.create(feed=feed, raw_post=raw, title=raw.title)


def test_an_edited_item_updates_its_raw_post_and_is_processed_again(feed_server):
    url = feed_server.serve("/edit.xml", _feed(("g1", "http://example.test/1", "Title", "before")))
    source = Source.objects.create(url=url)
    [raw_id] = _poll(source)
    RawPost.objects.filter(id=raw_id).update(processed_at=timezone.now())
    raw = RawPost.objects.get(id=raw_id)
    _keep_as_post(raw)

    assert _poll(source) == []  # unchanged: nothing to do
    feed_server.serve("/edit.xml", _feed(("g1", "http://example.test/1", "Title v2", "after")))
    assert _poll(source) == [raw_id]

    raw.refresh_from_db()
    assert (raw.title, raw.text, raw.edited_at is not None) == ("Title v2", "after", True)
    assert raw.processed_at is None  # owed to processing again
    assert Post.objects.get(raw_post=raw).title == "Title v2"  # showed the raw title: follows it
    assert RawPost.objects.filter(source=source).count() == 1
    assert PollLog.objects.filter(source=source).order_by("-id").first().items_updated == 1


def test_ingest_stores_new_and_edited_items_once_and_advances_the_cursor(feed_server):
    from feeds.parsing import make_entry

    source = Source.objects.create(kind="telegram", url="https://t.me/example")

    def entry(msg_id: int, text: str):
        return make_entry(
            guid=str(msg_id),
            url=f"https://t.me/example/{msg_id}",
            title=text,
            text=text,
            html=text,
            author="",
            published_at=None,
        )

    first = services.ingest(source_id=source.id, entries=[entry(5, "a"), entry(6, "b")], cursor=6)
    again = services.ingest(source_id=source.id, entries=[entry(5, "a"), entry(6, "b")], cursor=6)
    edited = services.ingest(source_id=source.id, entries=[entry(6, "b2")], cursor=3)

    assert len(first.new_ids) == 2 and again.to_process == []
    assert edited.new_ids == [] and len(edited.edited_ids) == 1
    source.refresh_from_db()
    assert source.cursor == 6  # never moves back
    assert RawPost.objects.get(source=source, external_id="6").text == "b2"
    assert services.record_deletions(source_id=source.id, external_ids=["5", "99"]) == 1
    assert RawPost.objects.get(source=source, external_id="5").deleted_at is not None
    assert services.record_deletions(source_id=source.id, external_ids=["5"]) == 0


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_stores_of_the_same_items_keep_one_copy_each():
    import threading

    from django.db import connection

    from feeds.parsing import make_entry

    source = Source.objects.create(kind="telegram", url="https://t.me/racing")
    entries = [
        make_entry(
            guid=str(n),
            url=f"https://t.me/racing/{n}",
            title=f"Post {n}",
            text=f"text {n}",
            html="",
            author="",
            published_at=None,
        )
        for n in range(1, 31)
    ]
    start = threading.Barrier(2)
    results: list[services.Stored] = []
    errors: list[BaseException] = []

    def store() -> None:
        try:
            start.wait(timeout=10)
            results.append(services.ingest(source_id=source.id, entries=entries))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert RawPost.objects.filter(source=source).count() == 30
    new = [raw_id for stored in results for raw_id in stored.new_ids]
    assert sorted(new) == sorted(RawPost.objects.values_list("id", flat=True))  # each once
