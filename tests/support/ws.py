"""A WebSocket client for the real ASGI application, in-process.

channels.testing cannot be imported without daphne (its __init__ pulls in the live-server test
case), so this is the same thin layer over asgiref's ApplicationCommunicator.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
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


# --- A raw client for the real server: it reads only when told to -------------------------


class RawClient:
    """A WebSocket client on a plain socket with a small receive buffer, signed in with a
    session cookie. It reads nothing unless asked, so it can play a stuck client, then read
    what the server still sends it. No extensions are offered: frames arrive uncompressed."""

    def __init__(self, port: int, cookie: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
                f"Cookie: {cookie}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        self._buffer = b""

    def send_json(self, data: Any, opcode: int = 0x1) -> None:
        payload = json.dumps(data).encode() if opcode == 0x1 else data
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        size = len(payload)
        head = bytes([0x80 | opcode]) + (
            bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
        )
        self.sock.sendall(head + mask + masked)

    def receive_json(self) -> Any:
        """The next text message (answering the server's keepalive pings on the way)."""
        while True:
            opcode, payload = self._frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x9:
                self.send_json(payload, opcode=0xA)
            elif opcode == 0x8:
                raise ConnectionError(f"closed by the server: {payload!r}")

    def _frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._read(2), "big")
        elif size == 127:
            size = int.from_bytes(self._read(8), "big")
        assert first & 0x80, "fragmented frames are not expected from this server"
        return first & 0x0F, self._read(size)

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        self.sock.close()
