"""A post whose push never reached a web process (its worker died between the commit and the
push) or came after a later one: the subscribers catch up from the database instead of skipping
it. Each push names the feed's post before it (`after`, realtime.broadcast)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from websockets.asyncio.client import connect

from feeds.models import RawPost, Source
from processing import services
from processing.models import Feed
from realtime import broadcast
from realtime import hub as hub_module
from realtime.hub import Subscriber, post_frame
from tests.support.stack import running
from tests.support.ws import _cookie


class _Hub:
    """What a Subscriber needs of its hub."""

    def __init__(self) -> None:
        self.dropped: list[int] = []

    async def join(self, feed_id: int, subscriber: Subscriber) -> None:
        pass

    async def leave(self, feed_id: int, subscriber: Subscriber) -> None:
        pass

    def drop(self, feed_id: int, subscriber: Subscriber) -> None:
        self.dropped.append(feed_id)


def _post(feed_id: int, post_id: int) -> str:
    return post_frame(feed_id, post_id, {"id": post_id, "feed_id": feed_id})


def _run(scenario) -> tuple[list[dict[str, Any]], _Hub]:
    """Run scenario(subscriber) and return every frame it sent, decoded."""
    sent: list[dict[str, Any]] = []
    hub = _Hub()

    async def main() -> None:
        async def send(frame: str) -> None:
            sent.append(json.loads(frame))

        subscriber = Subscriber(hub, send, capacity=100)  # type: ignore[arg-type]
        await scenario(subscriber)
        await subscriber.write('{"type": "pong"}')  # everything queued before it is sent
        await subscriber.close()

    asyncio.run(main())
    return sent[:-1], hub


def _summary(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(frame.get("code", frame["type"]), frame["cursor"]) for frame in frames]


def test_it_delivers_posts_that_follow_each_other():
    async def scenario(subscriber: Subscriber) -> None:
        await subscriber.listen(1)
        subscriber.go_live(1, 5)
        subscriber.deliver(1, 7, _post(1, 7), after=5)
        subscriber.deliver(1, 9, _post(1, 9), after=7)
        subscriber.deliver(1, 12, _post(1, 12))  # no `after`: an older sender, not checked

    frames, _ = _run(scenario)

    assert _summary(frames) == [("posts.created", 7), ("posts.created", 9), ("posts.created", 12)]


@pytest.fixture
def grace(monkeypatch) -> float:
    """A short wait for overtaken posts, and how long to sleep to see it end."""
    monkeypatch.setattr(hub_module, "REORDER_GRACE_SECONDS", 0.05)
    return 0.2


def test_it_waits_briefly_for_a_post_a_later_one_overtook(grace):
    async def scenario(subscriber: Subscriber) -> None:
        await subscriber.listen(1)
        subscriber.go_live(1, 5)
        subscriber.deliver(1, 9, _post(1, 9), after=7)  # overtook 7
        subscriber.deliver(1, 11, _post(1, 11), after=9)
        subscriber.deliver(1, 7, _post(1, 7), after=5)
        subscriber.deliver(1, 12, _post(1, 12), after=11)
        await asyncio.sleep(grace)  # the wait, had it not ended, would end here

    frames, hub = _run(scenario)

    assert _summary(frames) == [("posts.created", n) for n in (7, 9, 11, 12)]
    assert hub.dropped == []


def test_it_sends_the_client_back_to_the_database_when_a_post_before_never_arrived(grace):
    async def scenario(subscriber: Subscriber) -> None:
        await subscriber.listen(1)
        subscriber.go_live(1, 5)
        subscriber.deliver(1, 7, _post(1, 7), after=5)
        subscriber.deliver(1, 12, _post(1, 12), after=9)  # 9 never came
        await asyncio.sleep(grace)
        subscriber.deliver(1, 9, _post(1, 9), after=7)  # too late: the subscription is gone
        subscriber.deliver(1, 13, _post(1, 13), after=12)

    frames, hub = _run(scenario)

    assert _summary(frames) == [("posts.created", 7), ("lagging", 7)]
    assert frames[1]["feed"] == 1
    assert hub.dropped == [1]


def test_a_post_without_predecessor_does_not_skip_posts_that_wait(grace):
    async def scenario(subscriber: Subscriber) -> None:
        await subscriber.listen(1)
        subscriber.go_live(1, 5)
        subscriber.deliver(1, 9, _post(1, 9), after=7)  # waits for 7
        subscriber.deliver(1, 12, _post(1, 12))  # an older sender: no `after`
        subscriber.deliver(1, 7, _post(1, 7), after=5)
        await asyncio.sleep(grace)

    frames, hub = _run(scenario)

    # Back to the database from 5: 7, 9 and 12 are read there, none skipped.
    assert _summary(frames) == [("lagging", 5)]
    assert hub.dropped == [1]


def test_a_post_that_waits_counts_towards_the_capacity(grace):
    async def scenario(subscriber: Subscriber) -> None:
        await subscriber.listen(1)
        subscriber.go_live(1, 5)
        for post_id in range(10, 110):  # 100 posts waiting for 9, capacity 100
            subscriber.deliver(1, post_id, _post(1, post_id), after=post_id - 1)
        subscriber.deliver(1, 200, _post(1, 200), after=199)

    frames, hub = _run(scenario)

    assert _summary(frames) == [("lagging", 5)]
    assert hub.dropped == [1]


def test_it_puts_posts_held_during_a_replay_in_order_and_resyncs_on_a_gap(grace):
    async def scenario(subscriber: Subscriber) -> None:
        await subscriber.listen(1)
        await subscriber.listen(2)
        # While both replay: feed 1's pushes arrive out of order, feed 2 misses one.
        subscriber.deliver(1, 11, _post(1, 11), after=8)
        subscriber.deliver(1, 8, _post(1, 8), after=6)
        subscriber.deliver(2, 10, _post(2, 10), after=4)
        subscriber.go_live(1, 6)
        subscriber.go_live(2, 3)
        await asyncio.sleep(grace)

    frames, _ = _run(scenario)

    assert _summary(frames) == [("posts.created", 8), ("posts.created", 11), ("lagging", 3)]
    assert frames[2]["feed"] == 2


@pytest.mark.django_db(transaction=True)
def test_it_names_each_posts_predecessor_in_its_feed(owner, monkeypatch):
    source = Source.objects.create(url="http://feeds.invalid/order.xml")
    first = Feed.objects.create(owner=owner, name="One", summaries=False, tags=False)
    second = Feed.objects.create(owner=owner, name="Two", summaries=False, tags=False)
    first.sources.add(source)
    second.sources.add(source)
    pushed: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(broadcast, "_send", pushed.extend)

    titles = iter(["Harbour cranes idle", "Glacier retreat measured", "Chess final drawn",
                   "Vaccine trial expands"])  # fmt: skip

    def process(n: int) -> list[int]:
        raws = [
            RawPost.objects.create(
                source=source, external_id=f"o{n}-{i}", title=next(titles), content_hash=f"{n}{i}"
            )
            for i in range(2)
        ]
        with transaction.atomic():
            return services.process_raw_posts(raw_post_ids=[raw.id for raw in raws])

    process(1)
    process(2)

    by_feed: dict[int, list[tuple[int, int]]] = {}
    for _, message in pushed:
        by_feed.setdefault(message["post"]["feed_id"], []).append(
            (message["after"], message["post"]["id"])
        )
    for feed in (first, second):
        chain = by_feed[feed.id]
        ids = list(feed.posts.order_by("id").values_list("id", flat=True))
        assert [post_id for _, post_id in chain] == ids
        assert [after for after, _ in chain] == [0, *ids[:-1]]


def _store_and_process(source: Source, title: str) -> None:
    """What a worker does for a new item, from a thread of our own (closing its connection)."""
    try:
        raw = RawPost.objects.create(
            source=source,
            external_id=title,
            title=title,
            content_hash=hashlib.sha256(title.encode()).hexdigest(),
        )
        services.process_raw_posts(raw_post_ids=[raw.id])
    finally:
        connection.close()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_delivers_a_post_whose_push_was_lost_to_a_connected_client(
    request, tmp_path, redis_client, owner, monkeypatch
):
    source = Source.objects.create(url="http://feeds.invalid/lost.xml")
    feed = Feed.objects.create(owner=owner, name="Lost", summaries=False, tags=False)
    feed.sources.add(source)
    sends: list[int] = []
    send = broadcast._send

    def lose_the_first(messages: list) -> None:
        sends.append(len(messages))
        if len(sends) > 1:  # the first worker "died" between its commit and its push
            send(messages)

    monkeypatch.setattr(broadcast, "_send", lose_the_first)
    cookie = _cookie(owner)

    with running(request, tmp_path) as web:
        port = web.web_port

        async def scenario() -> list[dict]:
            seen: list[dict] = []
            async with connect(
                f"ws://127.0.0.1:{port}/ws/",
                additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
            ) as ws:
                await ws.send(json.dumps({"type": "subscribe", "feed": feed.id}))
                assert json.loads(await ws.recv())["type"] == "subscribed"
                for title in ("Harbour cranes idle", "Glacier retreat measured"):
                    await asyncio.to_thread(_store_and_process, source, title)
                while len([m for m in seen if m["type"] == "posts.created"]) < 2:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    seen.append(message)
                    if message.get("code") == "lagging":
                        since = message["cursor"]
                        await ws.send(
                            json.dumps({"type": "subscribe", "feed": feed.id, "since": since})
                        )
            return seen

        seen = async_to_sync(scenario)()

    ids = list(feed.posts.order_by("id").values_list("id", flat=True))
    assert sends == [1, 1]
    assert [(m["type"], m.get("code")) for m in seen] == [
        ("error", "lagging"),
        ("posts.created", None),
        ("posts.created", None),
    ]
    assert [m["cursor"] for m in seen] == [0, *ids]
