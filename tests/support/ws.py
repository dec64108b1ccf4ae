"""A WebSocket client for the real ASGI application, in-process.

channels.testing cannot be imported without daphne (its __init__ pulls in the live-server test
case), so this is the same thin layer over asgiref's ApplicationCommunicator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer
from django.test import Client

from infatium.asgi import application
from realtime.groups import feed_group

ORIGIN = b"http://testserver"
QUIET = 0.3  # seconds of silence that count as "nothing arrived"


class Socket(ApplicationCommunicator):
    def __init__(self, *, cookie: str = "", origin: bytes = ORIGIN, query: bytes = b"") -> None:
        headers = [(b"origin", origin)] if origin else []
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        scope = {
            "type": "websocket",
            "path": "/ws/",
            "query_string": query,
            "headers": headers,
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def connect(self) -> tuple[bool, int | None]:
        await self.send_input({"type": "websocket.connect"})
        answer = await self.receive_output(2)
        if answer["type"] == "websocket.close":
            return False, answer.get("code", 1000)
        assert answer["type"] == "websocket.accept"
        return True, None

    async def send_text(self, text: str) -> None:
        await self.send_input({"type": "websocket.receive", "text": text})

    async def send_json(self, data: Any) -> None:
        await self.send_text(json.dumps(data))

    async def receive_json(self, timeout: float = 2) -> Any:
        answer = await self.receive_output(timeout)
        assert answer["type"] == "websocket.send", answer
        return json.loads(answer["text"])

    async def assert_silent(self) -> None:
        assert await self.receive_nothing(timeout=QUIET, interval=0.02)

    async def close(self) -> None:
        """Leave, and check the consumer stops by itself (asgiref's wait() would cancel it)."""
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        done, _ = await asyncio.wait({self.future}, timeout=2)
        if not done:
            await self.wait(0)  # cancels it
            raise AssertionError("the consumer was still running 2 s after the client left")
        self.future.result()  # an exception inside the application fails the test


@asynccontextmanager
async def _socket(cookie: str) -> AsyncIterator[Socket]:
    socket = Socket(cookie=cookie)
    connected, code = await socket.connect()
    assert connected, code
    try:
        yield socket
    finally:
        await socket.close()


def _cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _run(scenario) -> Any:
    return async_to_sync(scenario)()


async def _push(feed_id: int, post: dict[str, Any]) -> None:
    await get_channel_layer().group_send(
        feed_group(feed_id), {"type": "posts.created", "post": post}
    )
