"""WebSocket figures for /metrics, kept in Redis so every web process's connections count.

- Open connections: `realtime.connections` keeps every open connection in one sorted set
  (`OPEN_KEY`, member "<user>:<connection>", scored by its lease's expiry) beside the per-user
  sets; a crashed process's entries fall out when their lease ends.
- Lagging clients: the hub counts each time it drops a connection's live posts because the client
  read too slowly (it is told `lagging` and subscribes again with `since`), in `LAGGED_KEY`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger(__name__)

OPEN_KEY = "infatium:ws:open"
LAGGED_KEY = "infatium:metrics:ws_lagged"

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)
_sync_clients: dict[str, redis.Redis] = {}
_unflushed = 0
_flushing: set[asyncio.Task[None]] = set()


def open_member(user_id: int, connection_id: str) -> str:
    return f"{int(user_id)}:{connection_id}"


def note_lagged() -> None:
    """Count one lagging client. Called by the hub inside the event loop; never waits: the
    counts are added to Redis by one background INCRBY per burst (best effort, like any metric:
    lost if Redis is down)."""
    global _unflushed
    _unflushed += 1
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if not _flushing:
        task = loop.create_task(_flush())
        _flushing.add(task)
        task.add_done_callback(_flushing.discard)


async def _flush() -> None:
    global _unflushed
    await asyncio.sleep(0)  # let the rest of the burst be counted first
    count, _unflushed = _unflushed, 0
    if not count:
        return
    try:
        await _async_client().incrby(LAGGED_KEY, count)
    except Exception:
        logger.debug("could not count %s lagging WebSocket clients", count, exc_info=True)


def _async_client() -> aioredis.Redis:
    # One client per event loop: redis.asyncio connections belong to the loop that made them
    # (keyed by the loop itself: a closed loop's id may be reused by the next one).
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)
        _async_clients[loop] = client
    return client


def _sync_client() -> redis.Redis:
    url = settings.REDIS_URL
    client = _sync_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        _sync_clients[url] = client
    return client


def open_connections() -> int:
    """WebSocket connections open now, in all web processes (expired leases dropped first)."""
    client = _sync_client()
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(OPEN_KEY, "-inf", now)
    pipe.zcard(OPEN_KEY)
    _, count = pipe.execute()
    return int(count)


def lagged_total() -> int:
    """Lagging clients counted since Redis last lost its data (a Prometheus counter)."""
    value = _sync_client().get(LAGGED_KEY)
    return int(value or 0)
