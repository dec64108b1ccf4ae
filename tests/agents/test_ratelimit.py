"""The LLM rate limit is one token bucket in Redis, shared by every process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents import ratelimit, services
from agents.ratelimit import RedisTokenBucket
from agents.schemas import ErrorCode, FeedContext, PostItem
from tests.agents.fakes import ToolCallingFakeChatModel, relevance_responder

REPO = Path(__file__).resolve().parents[2]

_WORKER = """
import sys, time
import redis
sys.path.insert(0, sys.argv[1])
from agents.ratelimit import RedisTokenBucket
bucket = RedisTokenBucket(
    redis.Redis.from_url(sys.argv[2]), "test:bucket", per_minute=600, burst=5
)
start = float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
taken = 0
while time.time() < start + 1.0:
    if bucket.try_acquire() == 0.0:
        taken += 1
    else:
        time.sleep(0.005)
print(taken)
"""


def test_two_processes_share_one_bucket(redis_client):
    start = time.time() + 1.5  # both interpreters are up before the window opens
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(REPO), os.environ["REDIS_URL"], str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    counts = [int(w.communicate(timeout=30)[0]) for w in workers]

    # 10 per second plus a burst of 5 for both together: about 15 in the one-second window.
    # Per-process buckets would let about 30 through.
    assert 12 <= sum(counts) <= 17, counts
    assert all(c > 0 for c in counts), counts


def test_acquire_waits_for_the_next_token(redis_client):
    bucket = RedisTokenBucket(redis_client, "test:wait", per_minute=600, burst=1)

    assert bucket.acquire(timeout=1) < 0.05
    waited = bucket.acquire(timeout=1)

    assert 0.05 <= waited < 0.5


def test_acquire_gives_up_at_its_deadline(redis_client):
    bucket = RedisTokenBucket(redis_client, "test:deadline", per_minute=1, burst=1)
    bucket.acquire(timeout=1)

    with pytest.raises(ratelimit.RateLimitTimeout):
        bucket.acquire(timeout=0.2)


@pytest.mark.django_db
def test_model_calls_wait_on_the_shared_limiter(use_models, settings, redis_client):
    settings.LLM_TIMEOUT_SECONDS = 1.0
    settings.AGENT_BATCH_SIZE = 1
    fake = ToolCallingFakeChatModel(responder=relevance_responder(lambda text: True))
    use_models(fake)
    settings.LLM_RATE_LIMIT_PER_MINUTE = 6  # a burst of one, then one every ten seconds
    items = [PostItem(id="a", title="one"), PostItem(id="b", title="two")]

    results = services.run_agent(agent="relevance", items=items, context=FeedContext())

    assert len(fake.calls) == 1
    assert results["a"].ok
    assert results["b"].error.code == ErrorCode.RATE_LIMITED
