"""The /ws/ endpoint: signed-in users subscribe to their own feeds and receive posts.created."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from processing.models import Feed
from realtime.groups import feed_group

UNAUTHENTICATED = 4401


class FeedConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Client → server: subscribe {feed}, unsubscribe {feed}, ping.
    Server → client: subscribed {feed}, unsubscribed {feed}, posts.created {post}, pong,
    error {code, message}."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Refused before accept: the handshake fails and nothing is ever sent.
            await self.close(code=UNAUTHENTICATED)
            return
        self.feed_ids: set[int] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for feed_id in getattr(self, "feed_ids", set()):
            await self.channel_layer.group_discard(feed_group(feed_id), self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
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

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._error("bad_message", "messages are JSON objects with a type")
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind in ("subscribe", "unsubscribe"):
            feed_id = content.get("feed")
            if not isinstance(feed_id, int) or isinstance(feed_id, bool):
                await self._error("bad_message", "feed must be an integer id")
            elif kind == "subscribe":
                await self._subscribe(feed_id)
            else:
                await self._unsubscribe(feed_id)
        else:
            await self._error("unknown_type", f"unknown message type {str(kind)[:50]!r}")

    async def _subscribe(self, feed_id: int) -> None:
        if not await self._owns(feed_id):
            # Same answer for "not yours" and "does not exist": ids do not leak.
            await self._error("not_found", f"no feed {feed_id}")
            return
        await self.channel_layer.group_add(feed_group(feed_id), self.channel_name)
        self.feed_ids.add(feed_id)
        await self.send_json({"type": "subscribed", "feed": feed_id})

    async def _unsubscribe(self, feed_id: int) -> None:
        if feed_id in self.feed_ids:
            await self.channel_layer.group_discard(feed_group(feed_id), self.channel_name)
            self.feed_ids.discard(feed_id)
        await self.send_json({"type": "unsubscribed", "feed": feed_id})

    @database_sync_to_async
    def _owns(self, feed_id: int) -> bool:
        return Feed.objects.filter(id=feed_id, owner_id=self.scope["user"].id).exists()

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def posts_created(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "posts.created", "post": event["post"]})
