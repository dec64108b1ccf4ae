"""WebSocket protocol details: resume with `since`, tickets, limits."""

from __future__ import annotations

import time

import pytest

from feeds.models import RawPost, Source
from processing.api.tickets import issue_ticket
from processing.models import Feed, Post
from realtime.consumers import MESSAGE_TOO_BIG, TOO_MANY_CONNECTIONS, UNAUTHENTICATED
from tests.support.ws import Socket, _cookie, _push, _run, _socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _posts(feed: Feed, count: int) -> list[Post]:
    source, _ = Source.objects.get_or_create(url="http://feeds.invalid/p.xml")
    posts = []
    for n in range(count):
        raw = RawPost.objects.create(
            source=source, external_id=f"{feed.id}-{n}-{time.time_ns()}", content_hash="0" * 64
        )
        posts.append(Post.objects.create(feed=feed, raw_post=raw, title=f"post {n}"))
    return posts


def _cursors(messages: list[dict]) -> list[int]:
    return [m["cursor"] for m in messages if m["type"] == "posts.created"]


def test_it_replays_what_a_client_missed_then_streams_without_a_duplicate(owner, redis_client):
    feed = Feed.objects.create(owner=owner, name="Mine")
    posts = _posts(feed, 4)
    cookie = _cookie(owner)

    async def scenario():
        async with _socket(cookie) as socket:
            await socket.send_json({"type": "subscribe", "feed": feed.id, "since": posts[0].id})
            replayed = [await socket.receive_json() for _ in range(4)]
            # A live copy of a replayed post (the seam) is dropped; a newer one goes through.
            await _push(feed.id, {"id": posts[3].id, "feed_id": feed.id})
            await _push(feed.id, {"id": posts[3].id + 100, "feed_id": feed.id})
            live = await socket.receive_json()
            await socket.assert_silent()
            return replayed, live

    replayed, live = _run(scenario)

    assert _cursors(replayed) == [p.id for p in posts[1:]]
    assert replayed[0]["post"]["title"] == "post 1"
    assert replayed[-1] == {"type": "subscribed", "feed": feed.id, "cursor": posts[3].id}
    assert live["cursor"] == posts[3].id + 100


def test_it_tells_a_client_too_far_behind_to_catch_up_over_rest(owner, redis_client, settings):
    settings.WS_REPLAY_MAX = 2
    feed = Feed.objects.create(owner=owner, name="Mine")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("realtime.consumers._REPLAY_PAGE", 2)
        _posts(feed, 5)
        cookie = _cookie(owner)

        async def scenario():
            async with _socket(cookie) as socket:
                await socket.send_json({"type": "subscribe", "feed": feed.id, "since": 0})
                messages = [await socket.receive_json() for _ in range(3)]
                await _push(feed.id, {"id": 10**9, "feed_id": feed.id})
                await socket.assert_silent()  # no longer subscribed
                return messages

        messages = _run(scenario)

    assert [m["type"] for m in messages] == ["posts.created", "posts.created", "error"]
    assert messages[2]["code"] == "too_far_behind"


def test_it_accepts_a_ticket_once_and_refuses_it_again(owner, redis_client):
    ticket = issue_ticket(owner)

    async def scenario():
        results = []
        for _ in range(2):
            socket = Socket(origin=b"", query=f"ticket={ticket}".encode())
            connected, code = await socket.connect()
            results.append((connected, code))
            if connected:
                await socket.close()
        return results

    assert _run(scenario) == [(True, None), (False, UNAUTHENTICATED)]


def test_it_refuses_an_expired_ticket(owner, redis_client, settings):
    settings.WS_TICKET_TTL_SECONDS = 1
    ticket = issue_ticket(owner)
    time.sleep(1.5)

    async def scenario():
        return await Socket(query=f"ticket={ticket}".encode()).connect()

    assert _run(scenario) == (False, UNAUTHENTICATED)


def test_it_refuses_a_ticket_of_a_deactivated_user(owner, redis_client):
    ticket = issue_ticket(owner)
    owner.is_active = False
    owner.save()

    async def scenario():
        return await Socket(query=f"ticket={ticket}".encode()).connect()

    assert _run(scenario) == (False, UNAUTHENTICATED)


def test_it_closes_the_socket_on_an_oversized_message(owner, redis_client, settings):
    settings.WS_MAX_MESSAGE_BYTES = 1024
    cookie = _cookie(owner)

    async def scenario():
        socket = Socket(cookie=cookie)
        assert (await socket.connect())[0]
        await socket.send_json({"type": "ping", "pad": "x" * 2000})
        answer = await socket.receive_output(2)
        await socket.wait(2)
        return answer

    assert _run(scenario) == {"type": "websocket.close", "code": MESSAGE_TOO_BIG}


def test_it_closes_a_socket_that_floods_messages(owner, redis_client, settings):
    settings.WS_RATE_BURST = 5
    settings.WS_RATE_PER_SECOND = 1
    cookie = _cookie(owner)

    async def scenario():
        socket = Socket(cookie=cookie)
        assert (await socket.connect())[0]
        answers = []
        for _ in range(8):
            await socket.send_json({"type": "ping"})
        while True:
            answer = await socket.receive_output(2)
            answers.append(answer)
            if answer["type"] == "websocket.close":
                break
        await socket.wait(2)
        return answers

    answers = _run(scenario)
    texts = [a.get("text", "") for a in answers]
    assert sum('"pong"' in t for t in texts) == 5
    assert '"rate_limited"' in texts[-2]
    assert answers[-1]["type"] == "websocket.close"


def test_it_limits_connections_per_user(owner, other_user, redis_client, settings):
    settings.WS_MAX_CONNECTIONS_PER_USER = 2
    mine, theirs = _cookie(owner), _cookie(other_user)

    async def scenario():
        first, second = Socket(cookie=mine), Socket(cookie=mine)
        assert (await first.connect())[0] and (await second.connect())[0]
        third = await Socket(cookie=mine).connect()
        other = Socket(cookie=theirs)
        other_result = await other.connect()
        await first.close()
        fourth = Socket(cookie=mine)
        after_close = await fourth.connect()
        for socket in (second, other, fourth):
            await socket.close()
        return third, other_result, after_close

    third, other_result, after_close = _run(scenario)
    assert third == (False, TOO_MANY_CONNECTIONS)
    assert other_result == (True, None)
    assert after_close == (True, None)
