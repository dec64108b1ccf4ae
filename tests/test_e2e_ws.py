"""The WebSocket protocol against the real ASGI server (uvicorn) with real clients."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from feeds.models import RawPost, Source
from processing import services
from processing.api.tickets import issue_ticket
from processing.models import Feed
from realtime.groups import feed_group
from tests.support.stack import running
from tests.support.ws import RawClient, _cookie

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(request, tmp_path, redis_client):
    # Room for a whole burst, in the process's channel and on the reading client: this is about
    # others not being delayed; tests/realtime/test_fanout.py covers a stuck client cut loose.
    with running(request, tmp_path, WS_CHANNEL_CAPACITY="5000", WS_SEND_QUEUE="5000") as stack:
        yield stack


def _burst(source: Source, count: int, started: threading.Event) -> threading.Thread:
    def run() -> None:
        started.wait()
        for n in range(count):
            raw = RawPost.objects.create(
                source=source, external_id=f"b{n}", title=f"burst {n}", content_hash=f"{n:064d}"
            )
            services.process_raw_posts(raw_post_ids=[raw.id])
        connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_it_resumes_with_since_after_a_disconnect_during_a_burst(web, owner):
    source = Source.objects.create(url="http://feeds.invalid/burst.xml")
    feed = Feed.objects.create(owner=owner, name="Burst", summaries=False, tags=False)
    feed.sources.add(source)
    url = f"ws://127.0.0.1:{web.web_port}/ws/"
    headers = {"Cookie": _cookie(owner), "Origin": f"http://127.0.0.1:{web.web_port}"}
    total = 120
    go = threading.Event()
    burst = _burst(source, total, go)

    async def scenario() -> list[int]:
        seen: list[int] = []
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "subscribe", "feed": feed.id}))
            cursor = json.loads(await ws.recv())["cursor"]
            go.set()
            while len(seen) < 20:  # leave mid-burst
                message = json.loads(await ws.recv())
                seen.append(message["cursor"])
        await asyncio.sleep(0.3)  # posts keep arriving while nobody listens
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "subscribe", "feed": feed.id, "since": seen[-1]}))
            while len(seen) < total:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "posts.created":
                    seen.append(message["cursor"])
        assert cursor == 0
        return seen

    seen = async_to_sync(scenario)()
    burst.join()

    expected = list(feed.posts.order_by("id").values_list("id", flat=True))
    assert len(expected) == total
    assert seen == expected  # every post once, in order: no gap, no duplicate at the seam


def test_it_refuses_foreign_feeds_reused_tickets_and_oversized_messages(web, owner, other_user):
    theirs = Feed.objects.create(owner=other_user, name="Theirs")
    base = f"ws://127.0.0.1:{web.web_port}/ws/"
    ticket = issue_ticket(owner)

    async def scenario() -> tuple[dict, int | None]:
        async with connect(f"{base}?ticket={ticket}") as ws:
            await ws.send(json.dumps({"type": "subscribe", "feed": theirs.id}))
            refused = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping", "pad": "x" * 20_000}))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            close_code = ws.close_code
        with pytest.raises(InvalidStatus):  # the ticket was single-use
            async with connect(f"{base}?ticket={ticket}"):
                pass
        with pytest.raises(InvalidStatus):  # a foreign origin, even with a fresh ticket
            async with connect(
                f"{base}?ticket={await asyncio.to_thread(issue_ticket, owner)}",
                additional_headers={"Origin": "https://evil.example"},
            ):
                pass
        return refused, close_code

    refused, close_code = async_to_sync(scenario)()
    assert refused["code"] == "not_found"
    assert close_code == 1009


def test_it_keeps_delivering_to_others_while_one_client_is_stuck(web, owner):
    feed = Feed.objects.create(owner=owner, name="Busy")
    port = web.web_port
    cookie = _cookie(owner)
    stuck = RawClient(port, cookie)
    stuck.send_json({"type": "subscribe", "feed": feed.id})
    assert stuck.receive_json()["type"] == "subscribed"  # from here on it reads nothing
    total = 1500
    padding = "p" * 4000  # ~6 MB in all: more than the stuck socket's buffers hold

    async def scenario() -> int:
        layer = get_channel_layer()
        got = 0
        async with connect(
            f"ws://127.0.0.1:{port}/ws/",
            additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
            max_queue=None,
        ) as ws:
            await ws.send(json.dumps({"type": "subscribe", "feed": feed.id}))
            await ws.recv()
            for n in range(1, total + 1):
                post = {"id": n, "feed_id": feed.id, "title": padding}
                await layer.group_send(feed_group(feed.id), {"type": "posts.created", "post": post})
            while got < total:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                got += message["type"] == "posts.created"
        return got

    try:
        assert async_to_sync(scenario)() == total
    finally:
        stuck.close()
