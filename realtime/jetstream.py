"""NATS connections and the JetStream streams of the event contract."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import nats
from django.conf import settings
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from realtime.events import STREAMS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    max_age_seconds: float
    max_bytes: int
    max_msgs: int
    replicas: int
    duplicate_window_seconds: float

    @classmethod
    def from_settings(cls) -> StreamLimits:
        return cls(
            max_age_seconds=settings.NATS_STREAM_MAX_AGE_SECONDS,
            max_bytes=settings.NATS_STREAM_MAX_BYTES,
            max_msgs=settings.NATS_STREAM_MAX_MSGS,
            replicas=settings.NATS_STREAM_REPLICAS,
            duplicate_window_seconds=settings.NATS_DUPLICATE_WINDOW_SECONDS,
        )


def stream_config(name: str, subjects: str, limits: StreamLimits) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=[subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        # Old events make room for new ones: a full stream must never refuse the relay, which
        # would hold back every later event of the refused event's source.
        discard=DiscardPolicy.OLD,
        max_age=limits.max_age_seconds,
        max_bytes=limits.max_bytes,
        max_msgs=limits.max_msgs,
        num_replicas=limits.replicas,
        duplicate_window=limits.duplicate_window_seconds,
        max_msg_size=-1,
    )


async def ensure_streams(js: JetStreamContext, limits: StreamLimits | None = None) -> None:
    """Create RAW_POSTS and POSTS, or update their limits to the configured ones. Idempotent."""
    limits = limits or StreamLimits.from_settings()
    for name, subjects in STREAMS.items():
        config = stream_config(name, subjects, limits)
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(config)
            logger.info("created stream %s (%s)", name, subjects)
        else:
            await js.update_stream(config)


async def connect(
    url: str | None = None, *, name: str, reconnect: bool = True, **options: Any
) -> NatsClient:
    """A NATS connection that logs its state changes instead of printing tracebacks.

    `reconnect=True`: the first connect waits until a server answers (cancel it to give up),
    and the connection then reconnects for ever. `reconnect=False` fails within a second when
    no server answers and closes for good when the server goes away; the relay uses it because
    nats-py replays, on the new connection, publishes buffered while the old one was failing,
    after some that were lost with the old socket: an event could overtake an earlier one.
    """
    last_warning = 0.0

    async def error_cb(exc: Exception) -> None:
        nonlocal last_warning
        # A server that is down makes nats-py report every attempt; once in a while is enough.
        now = time.monotonic()
        level = logging.WARNING if now - last_warning > 30 else logging.DEBUG
        if level == logging.WARNING:
            last_warning = now
        logger.log(level, "nats %s: %s: %s", name, type(exc).__name__, exc)

    async def disconnected_cb() -> None:
        logger.info("nats %s: disconnected", name)

    async def reconnected_cb() -> None:
        logger.info("nats %s: reconnected", name)

    return await nats.connect(
        url or settings.NATS_URL,
        name=name,
        allow_reconnect=reconnect,
        # nats-py counts the first connect's attempts against this too: -1 keeps trying, 1 makes
        # two attempts, `reconnect_time_wait` apart (0 would retry for ever as well).
        max_reconnect_attempts=-1 if reconnect else 1,
        reconnect_time_wait=1.0 if reconnect else 0.1,
        connect_timeout=2,
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        **options,
    )
