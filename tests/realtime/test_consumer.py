"""The /ws/ endpoint through the real ASGI application: session auth, origin check, the
subscribe/unsubscribe protocol and delivery of posts.created over the real Redis channel layer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async

from feeds.models import RawPost, Source
from processing import services
from processing.models import Feed
from realtime.consumers import UNAUTHENTICATED
from realtime.groups import feed_group
from tests.support.ws import Socket, _cookie, _push, _run, _socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Autouse runs before the owner/other_user fixtures: PBKDF2 costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.parametrize("signed_in", [True, False], ids=["accepted", "refused"])
def test_it_stops_the_consumer_as_soon_as_the_client_leaves(signed_in, owner, redis_client):
    # A client that leaves at once (every refused handshake does) must not leave its consumer
    # blocked on the channel layer: that would leak a task and a Redis connection per attempt.
    cookie = _cookie(owner) if signed_in else ""

    async def scenario():
        socket = Socket(cookie=cookie)
        connected, _ = await socket.connect()
        await socket.close()  # asserts the application finished within 2 s
        return connected

    assert _run(scenario) is signed_in


def test_it_refuses_an_anonymous_connection_before_accepting(redis_client):
    async def scenario():
        socket = Socket()
        try:
            return await socket.connect()
        finally:
            await socket.close()

    assert _run(scenario) == (False, UNAUTHENTICATED)


def test_it_refuses_a_forged_session_cookie(redis_client):
    async def scenario():
        socket = Socket(cookie="sessionid=not-a-real-session")
        try:
            return await socket.connect()
        finally:
            await socket.close()

    assert _run(scenario) == (False, UNAUTHENTICATED)


def test_it_refuses_a_signed_in_user_from_a_foreign_origin(owner, redis_client):
    cookie = _cookie(owner)

    async def scenario():
        socket = Socket(cookie=cookie, origin=b"https://evil.example")
        try:
            return await socket.connect()
        finally:
            await socket.close()

    connected, _ = _run(scenario)
    assert connected is False


def test_it_answers_ping_with_pong(owner, redis_client):
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_json({"type": "ping"})
            return await socket.receive_json()

    assert _run(scenario) == {"type": "pong"}


def test_it_subscribes_to_an_own_feed_and_delivers_its_posts(owner, redis_client):
    feed = Feed.objects.create(owner=owner, name="Mine")
    cookie = _cookie(owner)
    post = {"id": 7, "feed_id": feed.id, "title": "Hello"}

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_json({"type": "subscribe", "feed": feed.id})
            subscribed = await socket.receive_json()
            await _push(feed.id, post)
            return subscribed, await socket.receive_json()

    subscribed, delivered = _run(scenario)
    assert subscribed == {"type": "subscribed", "feed": feed.id, "cursor": 0}
    assert delivered == {"type": "posts.created", "feed": feed.id, "cursor": 7, "post": post}


def test_it_refuses_another_users_feed_and_delivers_none_of_its_posts(
    owner, other_user, redis_client
):
    theirs = Feed.objects.create(owner=other_user, name="Theirs")
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_json({"type": "subscribe", "feed": theirs.id})
            answer = await socket.receive_json()
            await _push(theirs.id, {"id": 1, "feed_id": theirs.id})
            await socket.assert_silent()
            return answer

    answer = _run(scenario)
    assert (answer["type"], answer["code"]) == ("error", "not_found")


def test_it_answers_the_same_for_a_missing_feed_and_a_foreign_one(owner, other_user, redis_client):
    theirs = Feed.objects.create(owner=other_user, name="Theirs")
    missing = theirs.id + 1000
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            answers = []
            for feed_id in (theirs.id, missing):
                await socket.send_json({"type": "subscribe", "feed": feed_id})
                answers.append(await socket.receive_json())
            return answers

    foreign, absent = _run(scenario)
    assert foreign == {"type": "error", "code": "not_found", "message": f"no feed {theirs.id}"}
    assert absent == {"type": "error", "code": "not_found", "message": f"no feed {missing}"}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ([1, 2, 3], "bad_message"),
        ("subscribe", "bad_message"),
        ({"type": "subscribe"}, "bad_message"),
        ({"type": "subscribe", "feed": "1"}, "bad_message"),
        ({"type": "subscribe", "feed": True}, "bad_message"),
        ({"type": "unsubscribe", "feed": 1.5}, "bad_message"),
        ({"type": "dance"}, "unknown_type"),
        ({"feed": 1}, "unknown_type"),
    ],
)
def test_it_answers_a_bad_message_with_an_error_and_stays_open(message, code, owner, redis_client):
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_json(message)
            error = await socket.receive_json()
            await socket.send_json({"type": "ping"})
            return error, await socket.receive_json()

    error, pong = _run(scenario)
    assert (error["type"], error["code"]) == ("error", code)
    assert error["message"]
    assert pong == {"type": "pong"}


def test_it_answers_a_frame_that_is_not_json_with_an_error_and_stays_open(owner, redis_client):
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_text("this is not json {")
            error = await socket.receive_json()
            await socket.send_input({"type": "websocket.receive", "bytes": b"\x00\x01"})
            binary_error = await socket.receive_json()
            await socket.send_text("[" * 10_000)  # nesting deep enough to exhaust the stack
            deep_error = await socket.receive_json()
            await socket.send_json({"type": "ping"})
            return error, binary_error, deep_error, await socket.receive_json()

    error, binary_error, deep_error, pong = _run(scenario)
    assert error == {
        "type": "error",
        "code": "bad_message",
        "message": "the message is not valid JSON",
    }
    assert binary_error == {
        "type": "error",
        "code": "bad_message",
        "message": "messages are JSON text frames",
    }
    assert deep_error["code"] == "bad_message"
    assert pong == {"type": "pong"}


def test_it_delivers_nothing_after_unsubscribe(owner, redis_client):
    feed = Feed.objects.create(owner=owner, name="Mine")
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_json({"type": "subscribe", "feed": feed.id})
            await socket.receive_json()
            await socket.send_json({"type": "unsubscribe", "feed": feed.id})
            answer = await socket.receive_json()
            await _push(feed.id, {"id": 1, "feed_id": feed.id})
            await socket.assert_silent()
            return answer

    assert _run(scenario) == {"type": "unsubscribed", "feed": feed.id}


def test_it_keeps_other_subscriptions_after_one_unsubscribe(owner, redis_client):
    first = Feed.objects.create(owner=owner, name="First")
    second = Feed.objects.create(owner=owner, name="Second")
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            for feed in (first, second):
                await socket.send_json({"type": "subscribe", "feed": feed.id})
                await socket.receive_json()
            await socket.send_json({"type": "unsubscribe", "feed": first.id})
            await socket.receive_json()
            await _push(first.id, {"id": 1, "feed_id": first.id})
            await _push(second.id, {"id": 2, "feed_id": second.id})
            delivered = await socket.receive_json()
            await socket.assert_silent()
            return delivered

    assert _run(scenario) == {
        "type": "posts.created",
        "feed": second.id,
        "cursor": 2,
        "post": {"id": 2, "feed_id": second.id},
    }


def test_it_leaves_every_group_on_disconnect(owner, redis_client):
    feeds = [Feed.objects.create(owner=owner, name=f"F{i}") for i in range(2)]
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            for feed in feeds:
                await socket.send_json({"type": "subscribe", "feed": feed.id})
                await socket.receive_json()
            return [redis_client.zcard(f"infatium:asgi:group:{feed_group(f.id)}") for f in feeds]

    members_while_open = _run(scenario)

    assert members_while_open == [1, 1]
    assert [redis_client.zcard(f"infatium:asgi:group:{feed_group(f.id)}") for f in feeds] == [0, 0]


def test_it_pushes_a_processed_post_to_the_subscribed_owner_only(owner, other_user, redis_client):
    source = Source.objects.create(url="http://feeds.invalid/ws.xml", title="Wire")
    raw = RawPost.objects.create(
        source=source,
        external_id="ws-1",
        title="Breaking",
        url="https://example.test/breaking",
        published_at=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
        content_hash="0" * 64,
    )
    mine = Feed.objects.create(owner=owner, name="Mine", summaries=False, tags=False)
    theirs = Feed.objects.create(owner=other_user, name="Theirs", summaries=False, tags=False)
    for feed in (mine, theirs):
        Feed.sources.through.objects.create(feed=feed, source=source)
    cookies = _cookie(owner), _cookie(other_user)

    async def scenario():
        async with _socket(cookies[0]) as own, _socket(cookies[1]) as other:
            await own.send_json({"type": "subscribe", "feed": mine.id})
            await own.receive_json()
            # The other user tries to listen to the owner's feed and is refused.
            await other.send_json({"type": "subscribe", "feed": mine.id})
            await other.receive_json()
            await sync_to_async(services.process_raw_posts)(raw_post_ids=[raw.id])
            delivered = await own.receive_json()
            await own.assert_silent()
            await other.assert_silent()
            return delivered

    delivered = _run(scenario)
    post = delivered["post"]
    assert delivered["type"] == "posts.created"
    assert (post["feed_id"], post["raw_post_id"], post["title"]) == (mine.id, raw.id, "Breaking")
    assert post["source"] == {"id": source.id, "kind": "rss", "title": "Wire", "url": source.url}
    assert post["published_at"] == "2026-11-25T10:00:00+00:00"
