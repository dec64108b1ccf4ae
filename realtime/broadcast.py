"""Push events to WebSocket subscribers. The only module that calls the channel layer from sync
code; sends happen after the surrounding transaction commits, never for rolled-back rows."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime import events
from realtime.groups import feed_group

if TYPE_CHECKING:
    from processing.models import Post

logger = logging.getLogger(__name__)

POSTS_CREATED = events.POSTS_CREATED
# A push that takes longer gives up (and is logged): the caller is a worker with other work.
SEND_TIMEOUT_SECONDS = 10.0
# Tries per message when Redis drops the connection (one per stale pooled connection).
_SEND_ATTEMPTS = 3

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def post_payload(post: Post) -> dict[str, Any]:
    """The `post` object of a posts.created message: the same JSON as the NATS event's
    (`realtime.events.PostPayload`), so WebSocket and NATS consumers see one shape."""
    return events.post_payload(post).model_dump(mode="json")


def posts_created_on_commit(
    posts: Sequence[Post], *, previous: Mapping[int, int] | None = None
) -> None:
    """Send one posts.created message per post to its feed's group once the transaction commits.

    `previous` (feed id -> the feed's post before these, 0 for none; `posts` in id order) makes
    each message carry `after`, the feed's post before it: a hub that never received that one
    tells its subscribers to catch up from the database (realtime.hub). A push can be lost (the
    worker dies between the commit and the push) or overtaken by a later post's push.
    """
    if not posts:
        return
    last = dict(previous or {})
    messages: list[tuple[str, dict[str, Any]]] = []
    for post in posts:
        message: dict[str, Any] = {"type": POSTS_CREATED, "post": post_payload(post)}
        if previous is not None:
            message["after"] = last.get(post.feed_id, 0)
            last[post.feed_id] = post.id
        messages.append((feed_group(post.feed_id), message))
    transaction.on_commit(lambda: _send(messages))


def _send(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    future = asyncio.run_coroutine_threadsafe(_send_all(layer, messages), _sender_loop())
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS)
    except Exception:
        future.cancel()
        # Delivery is best effort here; the post is committed and clients can re-read it.
        logger.exception("could not push %s posts to WebSocket subscribers", len(messages))


def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for channel-layer sends, run by a daemon thread.

    async_to_sync would start and close a loop per call, and channels_redis a Redis connection
    with it: most of a push's time. Made on first use in each process, so a Celery child forked
    from a parent that had one makes its own (threads do not survive fork)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop, _loop_pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(
                target=_loop.run_forever, name="channel-layer-send", daemon=True
            ).start()
        return _loop


async def _send_all(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in messages:
        # One message per web process with subscribers; each process's hub (realtime.hub)
        # encodes it once into the frame all its subscribers receive.
        for attempt in range(1, _SEND_ATTEMPTS + 1):
            try:
                await layer.group_send(group, message)
                break
            except RedisConnectionError:
                # A pooled connection made before a Redis restart fails on its first use, and
                # redis-py drops it: try again on a new one. Otherwise a client whose web
                # process reconnected meanwhile would silently miss this post (tests/chaos).
                # A copy that got through the first time is dropped by the hub (cursor).
                if attempt == _SEND_ATTEMPTS:
                    raise
