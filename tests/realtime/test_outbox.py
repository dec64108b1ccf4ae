"""The outbox is written in the transaction of the rows it announces, and only then."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds import services as feed_services
from feeds.models import RawPost, Source
from processing import services as processing_services
from processing.models import Feed, Post
from realtime import outbox
from realtime.broadcast import post_payload
from realtime.events import PostCreated, RawPostCreated
from realtime.models import DeadLetter, OutboxEvent
from tests.support.feedserver import rss

pytestmark = pytest.mark.django_db


def _poll(source: Source) -> list[int]:
    claim = feed_services.claim_source_now(source_id=source.id)
    assert claim is not None
    return feed_services.poll_source(source_id=source.id, token=claim.token)


def _raw(source: Source, external_id: str, **fields) -> RawPost:
    fields.setdefault("title", f"Title {external_id}")
    return RawPost.objects.create(
        source=source, external_id=external_id, content_hash="h", **fields
    )


def test_it_writes_one_raw_posts_created_event_per_raw_post_a_poll_creates(feed_server):
    url = feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two")))
    source = Source.objects.create(url=url)

    first = _poll(source)
    feed_server.serve("/a.xml", rss(("g1", "One"), ("g2", "Two"), ("g3", "Three")))
    second = _poll(source)

    events = list(OutboxEvent.objects.order_by("id"))
    assert [e.subject for e in events] == ["raw_posts.created"] * 3
    parsed = [RawPostCreated.model_validate(e.payload) for e in events]
    assert [p.raw_post.id for p in parsed] == first + second
    assert [str(p.event_id) for p in parsed] == [str(e.id) for e in events]
    assert {e.ordering_key for e in events} == {str(source.id)}
    assert parsed[2].raw_post.title == "Three"
    assert parsed[2].raw_post.source.url == url
    assert all(e.published_at is None for e in events)


def test_it_writes_posts_created_events_with_the_websocket_post_object(owner):
    source = Source.objects.create(url="http://example.test/feed.xml", title="Example")
    feed = Feed.objects.create(owner=owner, name="All", summaries=False, tags=False)
    feed.sources.add(source)
    raws = [_raw(source, "a"), _raw(source, "b")]

    created = processing_services.process_raw_posts(raw_post_ids=[r.id for r in raws])

    events = OutboxEvent.objects.filter(subject="posts.created").order_by("id")
    assert [PostCreated.model_validate(e.payload).post.id for e in events] == created
    for event in events:
        post = Post.objects.select_related("raw_post__source").get(id=event.payload["post"]["id"])
        assert event.payload["post"] == post_payload(post)  # one builder for NATS and WebSocket
        assert event.ordering_key == str(source.id)
    # A second run creates nothing and announces nothing.
    processing_services.backfill_feed(feed_id=feed.id)
    assert OutboxEvent.objects.filter(subject="posts.created").count() == 2


def test_it_writes_no_event_when_the_transaction_rolls_back():
    source = Source.objects.create(url="http://example.test/feed.xml")

    with pytest.raises(RuntimeError), transaction.atomic():
        outbox.record_raw_posts_created([_raw(source, "x")])
        assert OutboxEvent.objects.count() == 1
        raise RuntimeError("the poll failed after storing")

    assert not RawPost.objects.exists()
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_record_an_event_outside_a_transaction():
    raw = _raw(Source.objects.create(url="http://example.test/feed.xml"), "x")

    with pytest.raises(outbox.OutsideTransaction):
        outbox.record_raw_posts_created([raw])
    assert not OutboxEvent.objects.exists()


def test_it_cuts_an_oversized_raw_post_to_the_event_limit(settings):
    settings.NATS_MAX_EVENT_BYTES = 8192
    source = Source.objects.create(url="http://example.test/feed.xml")
    raw = _raw(source, "big", html="<p>" + "é" * 20000 + "</p>", text="ü" * 20000)
    small = _raw(source, "small", html="<p>hi</p>", text="hi")

    with transaction.atomic():
        outbox.record_raw_posts_created([raw, small])

    big_event, small_event = OutboxEvent.objects.order_by("id")
    size = len(outbox.encode(big_event.payload))
    assert 6000 < size <= 8192
    parsed = RawPostCreated.model_validate(big_event.payload)
    assert parsed.raw_post.truncated and parsed.raw_post.html == ""
    assert parsed.raw_post.text == "ü" * len(parsed.raw_post.text)
    assert RawPostCreated.model_validate(small_event.payload).raw_post.truncated is False


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=_json_values)
@example(value={"t": '\x00\x1f\\"', "n": -(2**63), "f": -1.2345678901234567e-308})
def test_the_size_bound_is_never_below_the_encoded_size(value):
    # Events under the bound are not encoded to be measured: it must be an upper bound.
    assert len(outbox.encode(value)) <= outbox._size_bound(value)


def test_it_reports_outbox_size_and_lag():
    source = Source.objects.create(url="http://example.test/feed.xml")
    with transaction.atomic():
        ids = outbox.record_raw_posts_created([_raw(source, "a"), _raw(source, "b")])
    OutboxEvent.objects.filter(id=ids[0]).update(
        created_at=timezone.now() - timezone.timedelta(seconds=90), attempts=2
    )
    outbox.mark_published([ids[1]])

    stats = outbox.outbox_stats()

    assert (stats.pending, stats.failing, stats.dead_letters) == (1, 1, 0)
    assert 89 < stats.lag_seconds < 120


def test_it_shows_the_outbox_read_only_with_its_lag_in_the_admin(admin_client):
    source = Source.objects.create(url="http://example.test/feed.xml")
    with transaction.atomic():
        (event_id,) = outbox.record_raw_posts_created([_raw(source, "a")])
    DeadLetter.objects.create(
        stream="RAW_POSTS", stream_seq=1, subject="raw_posts.created", consumer="c",
        num_delivered=5, error="boom",
    )  # fmt: skip

    page = admin_client.get("/admin/realtime/outboxevent/")
    detail = admin_client.get(f"/admin/realtime/outboxevent/{event_id}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "Pending: <strong>1</strong>" in text
    assert "ingest dead letters: <strong>1</strong>" in text
    assert "(pending)" in text
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content  # read-only
    assert admin_client.get("/admin/realtime/deadletter/").status_code == 200
    assert json.dumps(str(event_id))[1:-1] in text
