"""Ingest of raw_posts.created from other publishers, on a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import nats
import pytest
from django.db import transaction

from feeds.models import RawPost, Source
from infatium.celery import app as celery_app
from processing.models import Feed, Post
from realtime import ingest, outbox
from realtime.events import MSG_ID_HEADER, RawPostCreated, RawPostPayload, SourceRef
from realtime.ingest import IngestConsumer
from realtime.jetstream import ensure_streams
from realtime.models import DeadLetter, IngestedEvent
from realtime.relay import Relay, RelayConfig

pytestmark = pytest.mark.django_db(transaction=True)


def _event(external_id: str, *, url: str = "https://other.test/feed.xml", **fields) -> bytes:
    payload = RawPostPayload(
        id=10_000,  # the other publisher's own id: not ours
        source=SourceRef(id=77, kind="rss", url=url, title="Other"),
        external_id=external_id,
        url=f"https://other.test/{external_id}",
        title=fields.pop("title", f"Story {external_id}"),
        text="Text",
        html=fields.pop("html", "<p>Text</p>"),
        fetched_at=datetime(2026, 11, 25, 10, tzinfo=UTC),
        content_hash="c" * 64,
    )
    event_id = fields.pop("event_id", None) or uuid.uuid4()
    return (
        RawPostCreated(event_id=event_id, occurred_at=datetime.now(UTC), raw_post=payload)
        .model_dump_json()
        .encode()
    )


async def _publish(url: str, *bodies: bytes) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        for body in bodies:
            try:
                headers = {MSG_ID_HEADER: str(RawPostCreated.model_validate_json(body).event_id)}
            except ValueError:
                headers = None
            await js.publish("raw_posts.created", body, headers=headers)
    finally:
        await nc.close()


async def _consume(url: str, until, *, timeout: float = 15.0, **options) -> IngestConsumer:
    nc = await nats.connect(url)
    consumer = IngestConsumer(nc, poll_timeout=0.2, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not await asyncio.to_thread(until, consumer):
            assert time.monotonic() < deadline, f"ingest did not finish: {consumer.counts}"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await nc.close()
    return consumer


@pytest.fixture
def eager_celery():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_it_feeds_a_foreign_raw_post_into_the_processing_pipeline(
    nats_settings, eager_celery, owner
):
    source = Source.objects.create(url="https://other.test/feed.xml", title="Known")
    feed = Feed.objects.create(owner=owner, name="All", summaries=False, tags=False)
    feed.sources.add(source)
    asyncio.run(_publish(nats_settings.NATS_URL, _event("a1", html="<p onclick=x()>Hi</p>")))

    consumer = asyncio.run(_consume(nats_settings.NATS_URL, lambda c: c.counts.get("created") == 1))

    raw = RawPost.objects.get(source=source, external_id="a1")
    assert raw.html == "<p>Hi</p>"  # foreign HTML is sanitized like a feed's
    assert raw.title == "Story a1"
    post = Post.objects.get(feed=feed, raw_post=raw)  # processed like a polled raw post
    assert post.title == "Story a1"
    assert consumer.counts == {"created": 1}


def test_it_creates_an_inactive_source_for_an_unknown_one(nats_settings):
    created: list[int] = []
    asyncio.run(_publish(nats_settings.NATS_URL, _event("n1", url="https://new.test/rss")))

    asyncio.run(
        _consume(
            nats_settings.NATS_URL, lambda c: c.counts.get("created"), on_created=created.append
        )
    )

    source = Source.objects.get(url="https://new.test/rss")
    assert (source.kind, source.title, source.active) == ("rss", "Other", False)  # never polled
    assert created == [RawPost.objects.get(source=source).id]


def test_it_handles_each_event_once_and_each_raw_post_once(nats_settings):
    created: list[int] = []
    same_id = uuid.uuid4()
    first = _event("d1", event_id=same_id)
    asyncio.run(_publish(nats_settings.NATS_URL, first))
    asyncio.run(
        _consume(
            nats_settings.NATS_URL, lambda c: c.counts.get("created"), on_created=created.append
        )
    )
    # Redelivered past JetStream's dedup (another message id), and a second event for the same
    # item (another event_id, same source and external_id).

    async def republish() -> None:
        nc = await nats.connect(nats_settings.NATS_URL)
        js = nc.jetstream()
        await js.publish("raw_posts.created", first, headers={MSG_ID_HEADER: "retry-1"})
        await js.publish("raw_posts.created", _event("d1"))
        await nc.close()

    asyncio.run(republish())
    consumer = asyncio.run(
        _consume(
            nats_settings.NATS_URL,
            lambda c: c.counts.get("duplicate") and c.counts.get("known_post"),
            on_created=created.append,
        )
    )

    assert consumer.counts == {"duplicate": 1, "known_post": 1}
    assert RawPost.objects.filter(external_id="d1").count() == 1
    assert len(created) == 1
    assert IngestedEvent.objects.count() == 2


def test_it_skips_the_events_infatium_published_itself(nats_settings):
    source = Source.objects.create(url="http://mine.test/feed.xml")
    with transaction.atomic():
        raw = RawPost.objects.create(source=source, external_id="m1", content_hash="h")
        outbox.record_raw_posts_created([raw])
    asyncio.run(Relay(RelayConfig.from_settings()).step())
    created: list[int] = []

    consumer = asyncio.run(
        _consume(nats_settings.NATS_URL, lambda c: c.counts.get("own"), on_created=created.append)
    )

    assert consumer.counts == {"own": 1}
    assert created == []
    assert not IngestedEvent.objects.exists()
    assert RawPost.objects.count() == 1


def test_it_dead_letters_an_invalid_event_at_once(nats_settings):
    asyncio.run(_publish(nats_settings.NATS_URL, b'{"event_type": "raw_posts.created"}'))

    consumer = asyncio.run(_consume(nats_settings.NATS_URL, lambda c: c.counts.get("invalid")))

    letter = DeadLetter.objects.get()
    assert (letter.stream, letter.stream_seq, letter.num_delivered) == ("RAW_POSTS", 1, 1)
    assert "invalid event" in letter.error
    assert letter.data == '{"event_type": "raw_posts.created"}'
    assert consumer.counts == {"invalid": 1}


def test_it_dead_letters_a_poison_message_after_n_tries_while_others_flow(
    nats_settings, monkeypatch
):
    real = ingest.ingest_raw_post_created

    def poisoned(event, **kwargs):
        if event.raw_post.external_id == "poison":
            raise RuntimeError("cannot store this one")
        return real(event, **kwargs)

    monkeypatch.setattr(ingest, "ingest_raw_post_created", poisoned)
    bodies = [_event("ok-1"), _event("poison"), _event("ok-2"), _event("ok-3")]
    asyncio.run(_publish(nats_settings.NATS_URL, *bodies))
    created: list[int] = []

    consumer = asyncio.run(
        _consume(
            nats_settings.NATS_URL,
            lambda c: c.counts.get("dead_lettered"),
            max_deliver=3,
            on_created=created.append,
        )
    )

    assert consumer.counts == {"created": 3, "retried": 2, "dead_lettered": 1}
    letter = DeadLetter.objects.get()
    assert (letter.num_delivered, letter.stream_seq) == (3, 2)
    assert "cannot store this one" in letter.error
    assert letter.event_id == str(RawPostCreated.model_validate_json(bodies[1]).event_id)
    assert sorted(RawPost.objects.values_list("external_id", flat=True)) == [
        "ok-1",
        "ok-2",
        "ok-3",
    ]
