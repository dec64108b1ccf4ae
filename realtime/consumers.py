"""The /ws/ endpoint: signed-in users subscribe to their own feeds and receive posts.created.

Protocol (docs/websocket.md): client → server `subscribe` {feed, since?}, `unsubscribe` {feed},
`ping`; server → client `subscribed` {feed, cursor}, `unsubscribed` {feed},
`posts.created` {feed, cursor, post}, `pong`, `error` {code, message}.

The cursor is the post id. Posts of one feed are inserted under a lock on the feed's row
(processing.services), so within a feed ids are committed in increasing order: "everything after
cursor N" is well defined. `subscribe` starts listening first (live posts are held back), then
reads the database (the newest cursor, or the replay after `since`); held-back posts at or below
the cursor the read reached are dropped, so the seam has neither a gap nor a duplicate.

Posts reach a connection through the process's hub (realtime.hub); everything a connection sends
goes through its `Subscriber`'s queue, in order, written by one task.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.sessions import InstanceSessionWrapper
from django.conf import settings
from django.contrib.auth import get_user_model

from realtime import connections
from realtime.broadcast import post_payload
from realtime.hub import Subscriber, get_hub, post_frame

logger = logging.getLogger(__name__)

UNAUTHENTICATED = 4401
TOO_MANY_CONNECTIONS = 4429
RATE_LIMITED = 4408
MESSAGE_TOO_BIG = 1009
_REPLAY_PAGE = 500


class FeedConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    # Posts come from the process's hub, so a connection needs no channel-layer channel of its
    # own, nor the receive loop and per-message dispatch (a thread hop each) that come with one.
    channel_layer_alias = None

    async def connect(self) -> None:
        self.subscriber: Subscriber | None = None
        self.connection_id = uuid.uuid4().hex
        self.user_id: int | None = await self._authenticate()
        if self.user_id is None:
            # Refused before accept: the handshake fails and nothing is ever sent.
            await self.close(code=UNAUTHENTICATED)
            return
        if not await connections.register(self.user_id, self.connection_id):
            logger.info("user %s refused: too many WebSocket connections", self.user_id)
            self.user_id = None
            await self.close(code=TOO_MANY_CONNECTIONS)
            return
        self._tokens = float(settings.WS_RATE_BURST)
        self._refilled = time.monotonic()
        await self.accept()
        self._send_frame = _unwrap_session(self.base_send)
        self.subscriber = get_hub().open(self._write, capacity=settings.WS_SEND_QUEUE)

    async def _write(self, frame: str) -> None:
        await self._send_frame({"type": "websocket.send", "text": frame})

    async def _close(self, code: int) -> None:
        if self.subscriber is not None:
            await self.subscriber.close()  # nothing may be written after the close frame
        await self.close(code=code)

    async def _reply(self, content: dict[str, Any]) -> None:
        assert self.subscriber is not None
        await self.subscriber.write(await self.encode_json(content))

    async def _authenticate(self) -> int | None:
        """The session user, or the user of a single-use ticket given as ?ticket=..."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            return int(user.id)
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        tickets = query.get("ticket")
        if not tickets:
            return None
        from processing.api.tickets import aredeem_ticket

        user_id = await aredeem_ticket(tickets[0])
        if user_id is None:
            return None
        active = await database_sync_to_async(
            get_user_model().objects.filter(id=user_id, is_active=True).exists
        )()
        return user_id if active else None

    async def disconnect(self, code: int) -> None:
        if self.subscriber is not None:
            await self.subscriber.close()
        if self.user_id is not None:
            await connections.unregister(self.user_id, self.connection_id)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        size = len(text_data.encode()) if text_data else len(bytes_data or b"")
        if size > settings.WS_MAX_MESSAGE_BYTES:
            await self._close(MESSAGE_TOO_BIG)
            return
        if not self._take_token():
            await self._error("rate_limited", "too many messages; slow down")
            await self._close(RATE_LIMITED)
            return
        # The base class raises on a binary frame or invalid JSON, which kills the consumer and
        # drops the socket with a server error; a client's mistake gets an error message instead.
        if not text_data:
            await self._error("bad_message", "messages are JSON text frames")
            return
        try:
            content = await self.decode_json(text_data)
        except (ValueError, RecursionError):
            await self._error("bad_message", "the message is not valid JSON")
            return
        await self.receive_json(content, **kwargs)

    def _take_token(self) -> bool:
        now = time.monotonic()
        rate, burst = settings.WS_RATE_PER_SECOND, settings.WS_RATE_BURST
        self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._error("bad_message", "messages are JSON objects with a type")
            return
        kind = content.get("type")
        if kind == "ping":
            await self._reply({"type": "pong"})
        elif kind in ("subscribe", "unsubscribe"):
            feed_id = content.get("feed")
            since = content.get("since")
            if not _is_id(feed_id):
                await self._error("bad_message", "feed must be a positive integer id")
            elif kind == "unsubscribe":
                await self._unsubscribe(feed_id)
            elif since is not None and not (_is_id(since) or since == 0):
                await self._error("bad_message", "since must be a cursor (a non-negative integer)")
            else:
                await self._subscribe(feed_id, since)
        else:
            await self._error("unknown_type", f"unknown message type {str(kind)[:50]!r}")

    async def _subscribe(self, feed_id: int, since: int | None) -> None:
        assert self.subscriber is not None
        subscriptions = self.subscriber.subscriptions
        if feed_id not in subscriptions and len(subscriptions) >= settings.WS_MAX_FEEDS:
            await self._error("too_many_feeds", f"at most {settings.WS_MAX_FEEDS} feeds at once")
            return
        if not await self._owns(feed_id):
            # Same answer for "not yours" and "does not exist": ids do not leak.
            await self._error("not_found", f"no feed {feed_id}")
            return
        # Listen before reading the database, so nothing committed in between is missed; the
        # live posts the read already covered are dropped in go_live.
        await self.subscriber.listen(feed_id)
        if since is None:
            cursor = await self._latest_cursor(feed_id)
        else:
            replayed = await self._replay(feed_id, since)
            if replayed is None:
                return
            cursor = replayed
        await self._reply({"type": "subscribed", "feed": feed_id, "cursor": cursor})
        self.subscriber.go_live(feed_id, cursor)

    async def _replay(self, feed_id: int, since: int) -> int | None:
        """Send every post after `since`; the cursor reached, or None when too far behind."""
        assert self.subscriber is not None
        sent = 0
        cursor = since
        while True:
            page = await self._posts_after(feed_id, cursor)
            if page:
                await self.subscriber.write(*(frame for _, frame in page))
                cursor = page[-1][0]
            sent += len(page)
            if len(page) < _REPLAY_PAGE:
                return cursor
            if sent >= settings.WS_REPLAY_MAX:
                await self._error(
                    "too_far_behind",
                    f"more than {settings.WS_REPLAY_MAX} posts missed; fetch them with "
                    f"GET /api/feeds/{feed_id}/posts/ and subscribe again with a newer since",
                )
                await self._unsubscribe(feed_id, quiet=True)
                return None

    async def _unsubscribe(self, feed_id: int, *, quiet: bool = False) -> None:
        assert self.subscriber is not None
        await self.subscriber.unsubscribe(feed_id)
        if not quiet:
            await self._reply({"type": "unsubscribed", "feed": feed_id})

    @database_sync_to_async
    def _owns(self, feed_id: int) -> bool:
        from processing.models import Feed

        return Feed.objects.filter(id=feed_id, owner_id=self.user_id).exists()

    @database_sync_to_async
    def _latest_cursor(self, feed_id: int) -> int:
        from processing.models import Post

        latest = Post.objects.filter(feed_id=feed_id).order_by("-id").values_list("id", flat=True)
        return int(latest.first() or 0)

    @database_sync_to_async
    def _posts_after(self, feed_id: int, cursor: int) -> list[tuple[int, str]]:
        """The next page of posts after `cursor` as (cursor, posts.created frame)."""
        from processing.models import Post

        posts = (
            Post.objects.filter(feed_id=feed_id, id__gt=cursor)
            .select_related("raw_post__source")
            .order_by("id")[:_REPLAY_PAGE]
        )
        return [(post.id, post_frame(feed_id, post.id, post_payload(post))) for post in posts]

    async def _error(self, code: str, message: str) -> None:
        await self._reply({"type": "error", "code": code, "message": message})


def _unwrap_session(send: Any) -> Any:
    """The send under Channels' session middleware, which acts on HTTP responses only
    (`save_message_types`); on every WebSocket frame it would still cost two lazy-object
    lookups, about a sixth of the server's time when fanning out."""
    wrapper = getattr(send, "__self__", None)
    if isinstance(wrapper, InstanceSessionWrapper) and "websocket.send" not in (
        wrapper.save_message_types + wrapper.cookie_response_message_types
    ):
        return wrapper.real_send
    return send


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
