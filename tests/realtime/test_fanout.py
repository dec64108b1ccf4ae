"""Fan-out inside one web process (realtime.hub), against the real server (uvicorn) with real
WebSocket clients: one channel-layer membership per process and feed, every post once and in
order to every client, slow clients cut loose with `lagging`, groups joined and left per feed."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from websockets.asyncio.client import ClientConnection, connect

from feeds.models import RawPost, Source
from processing import services
from processing.models import Feed, Post
from realtime import counters
from realtime.broadcast import post_payload
from realtime.groups import feed_group
from tests.support.stack import running, wait_for
from tests.support.ws import RawClient, _cookie

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUEUE = 20  # WS_SEND_QUEUE of the server under test


@pytest.fixture
def web(request, tmp_path, redis_client):
    with running(
        request, tmp_path, WS_SEND_QUEUE=str(QUEUE), WS_MAX_CONNECTIONS_PER_USER="100"
    ) as stack:
        yield stack


def _members(redis_client, feed: Feed) -> list[bytes]:
    """The channel-layer channels in the feed's group."""
    return redis_client.zrange(f"infatium:asgi:group:{feed_group(feed.id)}", 0, -1)


def _largest_send_buffer() -> int:
    """The most a TCP socket's send buffer grows to on this machine (Linux)."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


def _feed(owner, name: str) -> Feed:
    return Feed.objects.create(owner=owner, name=name, summaries=False, tags=False)


class _Clients:
    def __init__(self, port: int, cookie: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/"
        self.headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}

    async def open(self, *feeds: int) -> ClientConnection:
        ws = await connect(self.url, additional_headers=self.headers, max_queue=None)
        for feed_id in feeds:
            await ws.send(json.dumps({"type": "subscribe", "feed": feed_id}))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "subscribed", answer
        return ws


async def _next(ws: ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def _push(feed_id: int, post: dict) -> None:
    await get_channel_layer().group_send(
        feed_group(feed_id), {"type": "posts.created", "post": post}
    )


async def _until_pong(ws: ClientConnection) -> list[dict]:
    """Everything the server sends before the answer to a ping sent now."""
    await ws.send(json.dumps({"type": "ping"}))
    before = []
    while (message := await _next(ws))["type"] != "pong":
        before.append(message)
    return before


def test_it_gives_many_clients_of_one_process_every_post_once_in_cursor_order(
    web, owner, redis_client
):
    source = Source.objects.create(url="http://feeds.invalid/many.xml")
    feed = _feed(owner, "Many")
    feed.sources.add(source)
    clients = _Clients(web.web_port, _cookie(owner))
    total = 40

    def commit_posts() -> None:
        for n in range(total):
            raw = RawPost.objects.create(
                source=source, external_id=f"m{n}", title=f"many {n}", content_hash=f"{n:064d}"
            )
            services.process_raw_posts(raw_post_ids=[raw.id])
        connection.close()

    async def scenario() -> tuple[list[list[int]], int, int]:
        sockets = [await clients.open(feed.id) for _ in range(60)]
        members = len(await asyncio.to_thread(_members, redis_client, feed))
        open_now = await asyncio.to_thread(redis_client.zcard, counters.OPEN_KEY)
        producer = asyncio.create_task(asyncio.to_thread(commit_posts))

        async def read(ws: ClientConnection) -> list[int]:
            cursors = []
            while len(cursors) < total:
                message = await _next(ws)
                assert message["type"] == "posts.created", message
                cursors.append(message["cursor"])
            assert await _until_pong(ws) == []  # and nothing more
            return cursors

        seen = await asyncio.gather(*(read(ws) for ws in sockets))
        await producer
        for ws in sockets:
            await ws.close()
        return seen, members, open_now

    seen, members, open_now = async_to_sync(scenario)()

    expected = list(feed.posts.order_by("id").values_list("id", flat=True))
    assert len(expected) == total
    assert all(cursors == expected for cursors in seen)
    assert members == 1  # the process subscribes once for its 60 connections
    assert open_now == 60  # as /metrics counts them


def test_it_tells_a_stuck_client_it_is_lagging_and_keeps_serving_the_others(
    web, owner, redis_client
):
    source = Source.objects.create(url="http://feeds.invalid/stuck.xml")
    feed = _feed(owner, "Busy")
    cookie = _cookie(owner)
    clients = _Clients(web.web_port, cookie)
    stuck = RawClient(web.web_port, cookie)
    stuck.send_json({"type": "subscribe", "feed": feed.id})
    assert stuck.receive_json() == {"type": "subscribed", "feed": feed.id, "cursor": 0}
    total = 250
    padding = "p" * 32_000  # 8 MB in all: more than the stuck socket's buffers can hold

    def create_posts() -> list[dict]:
        raws = RawPost.objects.bulk_create(
            RawPost(source=source, external_id=f"s{n}", content_hash=f"{n:064d}")
            for n in range(total)
        )
        posts = Post.objects.bulk_create(
            Post(feed=feed, raw_post=raw, title=f"{n} {padding}") for n, raw in enumerate(raws)
        )
        posts = Post.objects.filter(id__in=[p.id for p in posts]).select_related("raw_post__source")
        payloads = [post_payload(post) for post in posts.order_by("id")]
        connection.close()
        return payloads

    async def scenario() -> list[int]:
        reader = await clients.open(feed.id)
        payloads = await asyncio.to_thread(create_posts)
        got = []
        # Each post waits for the reading client to have the one before: it never lags, while
        # the stuck client's share piles up.
        for payload in payloads:
            await _push(feed.id, payload)
            message = await _next(reader)
            got.append(message["cursor"])
        assert await _until_pong(reader) == []
        await reader.close()
        return got

    try:
        got = async_to_sync(scenario)()
        expected = list(feed.posts.order_by("id").values_list("id", flat=True))
        assert got == expected  # the reading client had every post, in order

        # The stuck client now reads: what was queued for it, then the lagging error.
        received = []
        while (message := stuck.receive_json())["type"] == "posts.created":
            received.append(message["cursor"])
        lagging = message
        stuck.send_json({"type": "ping"})
        after = stuck.receive_json()

        assert lagging["type"] == "error"
        assert (lagging["code"], lagging["feed"]) == ("lagging", feed.id)
        assert received == expected[: len(received)]  # a prefix: no gap, no duplicate
        assert lagging["cursor"] == (received[-1] if received else 0)
        # Held for it: at most QUEUE posts and the one being written, plus what the socket
        # buffers took (the transport's 64 KiB high-water mark, the kernel's send buffer and
        # the client's small receive buffer); then it was cut loose.
        assert len(received) < total
        buffers = 64 * 1024 + _largest_send_buffer() + 64 * 1024
        assert (len(received) - QUEUE - 1) * len(padding) <= buffers
        assert after == {"type": "pong"}  # no more posts after the lagging error
        # Counted once for /metrics (the reading client never lagged).
        wait_for(
            lambda: redis_client.get(counters.LAGGED_KEY), timeout=10, what="the lag to be counted"
        )
        assert redis_client.get(counters.LAGGED_KEY) == b"1"

        # It recovers with `since`: the rest is replayed, then it is live again.
        stuck.send_json({"type": "subscribe", "feed": feed.id, "since": lagging["cursor"]})
        replayed = []
        while (message := stuck.receive_json())["type"] == "posts.created":
            replayed.append(message["cursor"])
        assert received + replayed == expected
        assert message == {"type": "subscribed", "feed": feed.id, "cursor": expected[-1]}
    finally:
        stuck.close()


def test_it_keeps_each_feeds_group_to_its_own_subscribers(web, owner, redis_client):
    first, second = _feed(owner, "First"), _feed(owner, "Second")
    clients = _Clients(web.web_port, _cookie(owner))

    async def scenario():
        only_first = await clients.open(first.id)
        only_second = await clients.open(second.id)
        both = await clients.open(first.id, second.id)
        channels = [await asyncio.to_thread(_members, redis_client, f) for f in (first, second)]
        for n in range(1, 6):
            await _push(first.id, {"id": n, "feed_id": first.id})
            await _push(second.id, {"id": 100 + n, "feed_id": second.id})
        seen = {}
        for name, ws, count in (("first", only_first, 5), ("second", only_second, 5)):
            seen[name] = [(m["feed"], m["cursor"]) for m in [await _next(ws) for _ in range(count)]]
            assert await _until_pong(ws) == []
        seen["both"] = [(m["feed"], m["cursor"]) for m in [await _next(both) for _ in range(10)]]
        assert await _until_pong(both) == []
        for ws in (only_first, only_second, both):
            await ws.close()
        return channels, seen

    channels, seen = async_to_sync(scenario)()

    assert len(channels[0]) == len(channels[1]) == 1
    assert channels[0] == channels[1]  # one channel for the process, in both groups
    assert seen["first"] == [(first.id, n) for n in range(1, 6)]
    assert seen["second"] == [(second.id, 100 + n) for n in range(1, 6)]
    assert [c for f, c in seen["both"] if f == first.id] == [1, 2, 3, 4, 5]
    assert [c for f, c in seen["both"] if f == second.id] == [101, 102, 103, 104, 105]


def test_it_leaves_a_feeds_group_when_its_last_local_subscriber_unsubscribes(
    web, owner, redis_client
):
    feed, other = _feed(owner, "Feed"), _feed(owner, "Other")
    clients = _Clients(web.web_port, _cookie(owner))

    async def scenario():
        leaving = await clients.open(feed.id)
        staying = await clients.open(feed.id, other.id)
        await leaving.send(json.dumps({"type": "unsubscribe", "feed": feed.id}))
        assert await _next(leaving) == {"type": "unsubscribed", "feed": feed.id}
        after_first = len(await asyncio.to_thread(_members, redis_client, feed))
        await _push(feed.id, {"id": 1, "feed_id": feed.id})
        still = await _next(staying)
        assert await _until_pong(leaving) == []

        await staying.send(json.dumps({"type": "unsubscribe", "feed": feed.id}))
        assert await _next(staying) == {"type": "unsubscribed", "feed": feed.id}
        after_last = len(await asyncio.to_thread(_members, redis_client, feed))
        # Both pushes travel through Redis to the process in order: had the first one still
        # been delivered, it would come before the second.
        await _push(feed.id, {"id": 2, "feed_id": feed.id})
        await _push(other.id, {"id": 3, "feed_id": other.id})
        next_message = await _next(staying)
        other_members = len(await asyncio.to_thread(_members, redis_client, other))
        for ws in (leaving, staying):
            await ws.close()
        return after_first, still, after_last, next_message, other_members

    after_first, still, after_last, next_message, other_members = async_to_sync(scenario)()

    assert after_first == 1  # another local connection still wants the feed
    assert (still["feed"], still["cursor"]) == (feed.id, 1)
    assert after_last == 0  # the process left the group with its last subscriber
    assert (next_message["feed"], next_message["cursor"]) == (other.id, 3)
    assert other_members == 1  # the other feed's group is untouched


def test_it_delivers_a_burst_to_clients_that_subscribe_during_it(web, owner):
    """Subscriptions that start while posts stream in (the replay/live seam, many at once)."""
    source = Source.objects.create(url="http://feeds.invalid/seam.xml")
    feed = _feed(owner, "Seam")
    feed.sources.add(source)
    clients = _Clients(web.web_port, _cookie(owner))
    total = 60
    go = threading.Event()

    def commit_posts() -> None:
        go.wait(10)
        for n in range(total):
            raw = RawPost.objects.create(
                source=source, external_id=f"b{n}", title=f"seam {n}", content_hash=f"{n:064d}"
            )
            services.process_raw_posts(raw_post_ids=[raw.id])
        connection.close()

    async def scenario() -> list[list[int]]:
        producer = asyncio.create_task(asyncio.to_thread(commit_posts))
        go.set()
        late = []
        for _ in range(20):  # one joins every few posts, each resuming from the start
            ws = await connect(clients.url, additional_headers=clients.headers, max_queue=None)
            await ws.send(json.dumps({"type": "subscribe", "feed": feed.id, "since": 0}))
            late.append(ws)
            await asyncio.sleep(0.02)
        await producer

        async def read(ws: ClientConnection) -> list[int]:
            cursors = []
            while len(cursors) < total:
                message = await _next(ws)
                if message["type"] == "posts.created":
                    cursors.append(message["cursor"])
            assert [m["type"] for m in await _until_pong(ws)] in ([], ["subscribed"])
            await ws.close()
            return cursors

        return await asyncio.gather(*(read(ws) for ws in late))

    seen = async_to_sync(scenario)()

    expected = list(feed.posts.order_by("id").values_list("id", flat=True))
    assert len(expected) == total
    assert all(cursors == expected for cursors in seen)
