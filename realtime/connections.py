"""Open WebSocket connections per user, counted in Redis so every web process sees them all.

Each connection is a member of a sorted set scored by its expiry; a crashed process's entries
fall out once they expire instead of blocking the user forever. Every open connection is also in
one set for all users (realtime.counters.OPEN_KEY), which /metrics counts.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from django.conf import settings

from realtime import counters

_LEASE_SECONDS = 3600
_clients: dict[int, aioredis.Redis] = {}


def _client() -> aioredis.Redis:
    # One client per event loop: redis.asyncio connections belong to the loop that made them.
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)
        _clients[loop_id] = client
    return client


def _key(user_id: int) -> str:
    return f"infatium:ws:connections:{int(user_id)}"


async def register(user_id: int, connection_id: str) -> bool:
    """Record a new connection; False (and nothing recorded) when the user is at the limit."""
    now = time.time()
    key = _key(user_id)
    client = _client()
    async with client.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {connection_id: now + _LEASE_SECONDS})
        pipe.zcard(key)
        pipe.expire(key, _LEASE_SECONDS)
        pipe.zadd(
            counters.OPEN_KEY, {counters.open_member(user_id, connection_id): now + _LEASE_SECONDS}
        )
        _, _, count, _, _ = await pipe.execute()
    if count > settings.WS_MAX_CONNECTIONS_PER_USER:
        await unregister(user_id, connection_id)
        return False
    return True


async def unregister(user_id: int, connection_id: str) -> None:
    async with _client().pipeline(transaction=False) as pipe:
        pipe.zrem(_key(user_id), connection_id)
        pipe.zrem(counters.OPEN_KEY, counters.open_member(user_id, connection_id))
        await pipe.execute()
