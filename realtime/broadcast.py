"""Push events to WebSocket subscribers. The only module that calls the channel layer from sync
code; sends happen after the surrounding transaction commits, never for rolled-back rows."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from realtime import events
from realtime.groups import feed_group

if TYPE_CHECKING:
    from processing.models import Post

logger = logging.getLogger(__name__)

POSTS_CREATED = events.POSTS_CREATED


def post_payload(post: Post) -> dict[str, Any]:
    """The `post` object of a posts.created message: the same JSON as the NATS event's
    (`realtime.events.PostPayload`), so WebSocket and NATS consumers see one shape."""
    return events.post_payload(post).model_dump(mode="json")


def posts_created_on_commit(posts: Sequence[Post]) -> None:
    """Send one posts.created message per post to its feed's group once the transaction commits."""
    if not posts:
        return
    messages = [(feed_group(post.feed_id), post_payload(post)) for post in posts]
    transaction.on_commit(lambda: _send(messages))


def _send(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_send_all)(layer, messages)
    except Exception:
        # Delivery is best effort here; the post is committed and clients can re-read it.
        logger.exception("could not push %s posts to WebSocket subscribers", len(messages))


async def _send_all(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for group, post in messages:
        # Serialized once here rather than once per subscriber in every consumer.
        event = {"type": POSTS_CREATED, "post": post, "post_json": json.dumps(post)}
        await layer.group_send(group, event)
