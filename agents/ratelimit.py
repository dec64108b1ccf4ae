"""A token bucket in Redis shared by every worker and bridge process.

LangChain's `InMemoryRateLimiter` counts per process; with N workers the provider would see N
times the configured rate. Here the bucket's state (tokens, last refill time) lives in one Redis
hash and is updated by a Lua script, atomically, using the Redis server's clock, so processes on
different hosts agree on time.
"""

from __future__ import annotations

import math
import random
import time
from functools import lru_cache

import redis
from django.conf import settings

# Returns "0" when a token was taken, else the seconds until one will be available. Numbers go
# back as strings because Redis truncates Lua floats to integers.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class RateLimitTimeout(Exception):
    """No token became available within the caller's deadline."""


class RedisTokenBucket:
    """`per_minute` requests a minute on average, bursts of up to `burst`."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        per_minute: int,
        burst: int | None = None,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.key = key
        self.rate = per_minute / 60.0
        # Ten seconds' worth by default: smooth enough for providers that enforce per-second
        # windows, loose enough that a batch of retries does not stall.
        self.capacity = burst if burst is not None else max(1, math.ceil(per_minute / 6))
        self._script = client.register_script(_SCRIPT)

    def try_acquire(self) -> float:
        """Take a token if there is one: 0.0, else the seconds to wait before trying again."""
        return float(self._script(keys=[self.key], args=[self.rate, self.capacity]))

    def acquire(self, *, timeout: float) -> float:
        """Block until a token is taken; returns the seconds waited. Raises RateLimitTimeout."""
        started = time.monotonic()
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return time.monotonic() - started
            elapsed = time.monotonic() - started
            if elapsed + wait > timeout:
                raise RateLimitTimeout(f"no LLM request slot within {timeout:.0f}s")
            # Jitter, so waiters that wake together do not all miss together.
            time.sleep(wait * (1 + random.random() * 0.2))


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def bucket_for(model: str) -> RedisTokenBucket | None:
    """The shared bucket for calls to `model`, or None when LLM_RATE_LIMIT_PER_MINUTE is 0."""
    per_minute = settings.LLM_RATE_LIMIT_PER_MINUTE
    if per_minute <= 0:
        return None
    return RedisTokenBucket(
        _client(settings.REDIS_URL), f"infatium:agents:ratelimit:{model}", per_minute=per_minute
    )
