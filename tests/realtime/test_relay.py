"""The outbox relay against a real nats-server: order, dedup, outages, refusals, leadership."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from feeds.models import RawPost, Source
from infatium import processes
from realtime import outbox
from realtime.events import MSG_ID_HEADER
from realtime.models import OutboxEvent
from realtime.relay import Relay, RelayConfig, RelayLock, RelayUnavailable
from tests.realtime.conftest import read_stream
from tests.support.nats import NatsServer
from tests.support.stack import Stack, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _record(source: Source, count: int, *, start: int = 0, text: str = "Body") -> list[RawPost]:
    now = timezone.now()
    with transaction.atomic():
        raws = RawPost.objects.bulk_create(
            [
                RawPost(
                    source=source,
                    external_id=f"{source.id}-{start + i}",
                    url=f"http://example.test/{source.id}/{start + i}",
                    title=f"Story {start + i}",
                    text=text,
                    fetched_at=now,
                    content_hash="h",
                )
                for i in range(count)
            ]
        )
        outbox.record_raw_posts_created(raws)
    return raws


def _relay(**overrides) -> Relay:
    config = RelayConfig.from_settings()
    for key, value in overrides.items():
        setattr(config, key, value)
    return Relay(config)


async def _drain(relay: Relay, *, timeout: float = 20.0) -> None:
    """Run the relay until the outbox is empty (or fail after `timeout`)."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while await asyncio.to_thread(_pending) > 0:
            assert time.monotonic() < deadline, f"outbox not drained: {relay.stats}"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


def _pending() -> int:
    try:
        return OutboxEvent.objects.filter(published_at__isnull=True).count()
    finally:
        connection.close()


def _by_key(messages) -> dict[int, list[int]]:
    order: dict[int, list[int]] = {}
    for _, body in messages:
        raw = body["raw_post"]
        order.setdefault(raw["source"]["id"], []).append(raw["id"])
    return order


def test_it_publishes_pending_events_in_order_with_the_event_id_as_msg_id(nats_settings):
    first, second = (
        Source.objects.create(url="http://a.test/"),
        Source.objects.create(url="http://b.test/"),
    )
    raws = []
    for round_ in range(3):  # interleave the two sources
        raws += _record(first, 4, start=round_ * 4) + _record(second, 3, start=round_ * 3)

    asyncio.run(_drain(_relay()))

    messages = read_stream(nats_settings.NATS_URL, "RAW_POSTS")
    events = list(OutboxEvent.objects.order_by("id"))
    assert [headers[MSG_ID_HEADER] for headers, _ in messages] == [str(e.id) for e in events]
    assert [body["event_id"] for _, body in messages] == [str(e.id) for e in events]
    assert _by_key(messages) == {
        first.id: [r.id for r in raws if r.source_id == first.id],
        second.id: [r.id for r in raws if r.source_id == second.id],
    }
    assert all(e.published_at is not None and e.attempts == 1 for e in events)


def test_it_sends_an_event_again_after_a_crash_between_publish_and_mark_and_the_stream_keeps_one(
    nats_settings, monkeypatch
):
    source = Source.objects.create(url="http://a.test/")
    _record(source, 5)

    def crash(*args, **kwargs):
        raise RuntimeError("killed between the ack and the UPDATE")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "mark_published", crash)
        with pytest.raises(RuntimeError):
            asyncio.run(_relay().step())
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 5
    assert len(read_stream(nats_settings.NATS_URL, "RAW_POSTS")) == 5

    relay = _relay()
    asyncio.run(_drain(relay))

    messages = read_stream(nats_settings.NATS_URL, "RAW_POSTS")
    assert len(messages) == 5
    assert len({headers[MSG_ID_HEADER] for headers, _ in messages}) == 5
    assert relay.stats.duplicates == 5  # JetStream recognised every second copy
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()


def test_it_keeps_events_while_nats_is_down_and_delivers_them_once_it_is_back(
    nats_settings, nats_server
):
    source = Source.objects.create(url="http://a.test/")
    nats_server.stop()
    _record(source, 20)

    async def scenario() -> Relay:
        relay = _relay(max_backoff=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(_pending) == 20  # nothing lost, nothing marked
        assert "NATS or its streams not ready" in relay.stats.last_error
        await asyncio.to_thread(nats_server.start)
        deadline = time.monotonic() + 15
        while await asyncio.to_thread(_pending):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return relay

    asyncio.run(scenario())

    messages = read_stream(nats_settings.NATS_URL, "RAW_POSTS")
    assert len(messages) == 20
    assert [body["raw_post"]["external_id"] for _, body in messages] == [
        f"{source.id}-{i}" for i in range(20)
    ]


def test_it_holds_back_a_source_whose_event_nats_refuses_and_lets_the_others_through(
    settings, tmp_path
):
    # A server whose max_payload is below one event's size: that event can never be sent.
    server = NatsServer(tmp_path / "small", max_payload=2048)
    server.start()
    try:
        settings.NATS_URL = server.url
        blocked, free = (
            Source.objects.create(url="http://a.test/"),
            Source.objects.create(url="http://b.test/"),
        )
        big = _record(blocked, 1, text="x" * 3000)[0]
        after_big = _record(blocked, 1, start=1)[0]
        others = _record(free, 3)

        relay = _relay()
        asyncio.run(relay.step())

        messages = read_stream(server.url, "RAW_POSTS")
        assert _by_key(messages) == {free.id: [r.id for r in others]}
        refused = OutboxEvent.objects.get(payload__raw_post__id=big.id)
        assert refused.published_at is None and refused.attempts == 1
        assert "MaxPayload" in refused.last_error
        assert refused.next_attempt_at > timezone.now()
        waiting = OutboxEvent.objects.get(payload__raw_post__id=after_big.id)
        assert (waiting.published_at, waiting.attempts) == (None, 0)
        # While the refused event waits, its source's later events are not even read.
        assert outbox.pending_batch(limit=10) == []
    finally:
        server.stop()


def test_it_lets_only_one_relay_hold_the_lock():
    first, second = RelayLock(), RelayLock()
    try:
        assert first.acquire()
        assert first.acquire()  # still held
        assert not second.acquire()
        first.release()
        assert second.acquire()
    finally:
        first.release()
        second.release()


def test_it_raises_relay_unavailable_when_nats_cannot_be_reached(settings):
    settings.NATS_URL = "nats://127.0.0.1:1"
    _record(Source.objects.create(url="http://a.test/"), 1)

    with pytest.raises(RelayUnavailable):
        asyncio.run(_relay().step())
    assert OutboxEvent.objects.get().published_at is None


@pytest.mark.e2e
def test_it_loses_and_doubles_nothing_when_nats_is_killed_during_a_burst(nats_server, tmp_path):
    """The real `manage.py nats_bridge` relays a steady burst; nats-server is killed (-9) in the
    middle and restarted on the same port and store."""
    sources = [Source.objects.create(url=f"http://s{i}.test/") for i in range(4)]
    stack = Stack(
        tmp_path,
        NATS_URL=nats_server.url,
        NATS_RELAY_BATCH="100",
        NATS_RELAY_IDLE_SECONDS="0.01",
        NATS_RELAY_MAX_BACKOFF_SECONDS="0.3",
        NATS_RELAY_ACK_TIMEOUT_SECONDS="1",
    )
    produced: list[int] = []
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for round_ in range(60):  # ~3 s at 20 rounds/s, 4 sources x 10 events per round
                for source in sources:
                    produced.extend(r.id for r in _record(source, 10, start=round_ * 10))
                time.sleep(0.05)
        except BaseException as exc:
            failure.append(exc)
        finally:
            connection.close()

    stack.start("bridge", processes.nats_bridge())
    try:
        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(
            lambda: OutboxEvent.objects.filter(published_at__isnull=False).count() > 200,
            timeout=20,
            what="the bridge to relay the first events",
        )
        nats_server.kill()
        time.sleep(1.0)  # events keep coming while NATS is gone
        nats_server.start()
        producer.join(timeout=30)
        assert not failure, failure
        wait_for(
            lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(),
            timeout=30,
            what="the outbox to drain after the restart",
        )
        assert b"retrying in" in stack.log("bridge")  # the relay did see NATS go away
    except BaseException:
        print(stack.dump_logs())
        raise
    finally:
        os.killpg(stack.procs["bridge"].pid, signal.SIGTERM)
        assert stack.procs["bridge"].wait(timeout=15) == 0
        stack.stop()

    messages = read_stream(nats_server.url, "RAW_POSTS")
    ids = [headers[MSG_ID_HEADER] for headers, _ in messages]
    assert len(ids) == len(set(ids)) == len(produced) == 2400
    assert set(ids) == {str(i) for i in OutboxEvent.objects.values_list("id", flat=True)}
    by_key = _by_key(messages)
    for source in sources:
        assert by_key[source.id] == sorted(by_key[source.id])  # never reordered per source
