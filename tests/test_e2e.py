"""End to end, on real processes: an item appended to a served RSS feed reaches a signed-in
WebSocket client as exactly one posts.created message."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import async_to_sync
from websockets.asyncio.client import connect

from feeds.models import RawPost, Source
from processing.models import Feed, Post
from tests.support.feedserver import rss
from tests.support.stack import running, wait_for
from tests.support.ws import _cookie

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(request, tmp_path, redis_client):
    with running(
        request, tmp_path, processes=("web", "worker", "beat"), POLL_DISPATCH_SECONDS="0.5"
    ) as stack:
        yield stack


async def _receive_for(ws, seconds: float) -> list[dict]:
    """Every message that arrives within `seconds`."""
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                messages.append(json.loads(await ws.recv()))
        except TimeoutError:
            break
    return messages


def test_it_pushes_a_new_feed_item_to_the_websocket_client_exactly_once(stack, feed_server, owner):
    url = feed_server.serve("/news.xml", rss(("item-1", "First story")))
    source = Source.objects.create(url=url, poll_interval=1, adaptive=False)
    feed = Feed.objects.create(owner=owner, name="Everything")
    feed.sources.add(source)
    # The first poll stores the existing item; it reaches the feed before anyone listens.
    wait_for(
        lambda: Post.objects.filter(feed=feed).exists(),
        timeout=30,
        what="the first poll to produce a post",
    )

    cookie = _cookie(owner)

    async def scenario() -> list[dict]:
        async with connect(
            f"ws://127.0.0.1:{stack.web_port}/ws/",
            additional_headers={
                "Cookie": cookie,
                "Origin": f"http://127.0.0.1:{stack.web_port}",
            },
        ) as ws:
            await ws.send(json.dumps({"type": "subscribe", "feed": feed.id}))
            subscribed = json.loads(await ws.recv())
            assert (subscribed["type"], subscribed["feed"]) == ("subscribed", feed.id)
            feed_server.serve(
                "/news.xml", rss(("item-2", "Second story"), ("item-1", "First story"))
            )
            # Several more poll cycles pass: the item must arrive once, and only once.
            return await _receive_for(ws, 8.0)

    messages = async_to_sync(scenario)()

    created = [m for m in messages if m["type"] == "posts.created"]
    assert [m["post"]["title"] for m in created] == ["Second story"]
    post = created[0]["post"]
    assert post["feed_id"] == feed.id
    assert post["source"]["id"] == source.id
    assert post["url"] == "http://example.test/item-2"
    assert RawPost.objects.filter(source=source).count() == 2
    assert Post.objects.filter(feed=feed).count() == 2
    # Conditional GET was used once the feed stopped changing.
    assert any(hit.status == 304 for hit in feed_server.hits("/news.xml"))


def test_it_refuses_an_anonymous_websocket(stack):
    async def scenario() -> None:
        with pytest.raises(Exception) as refused:
            async with connect(
                f"ws://127.0.0.1:{stack.web_port}/ws/",
                additional_headers={"Origin": f"http://127.0.0.1:{stack.web_port}"},
            ):
                pass
        assert "403" in str(refused.value)

    async_to_sync(scenario)()
