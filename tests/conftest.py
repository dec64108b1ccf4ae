"""Test configuration: real PostgreSQL and Redis (from the environment, else loopback defaults).

`make test` starts whatever is missing and sets DATABASE_URL/REDIS_URL/NATS_URL; running pytest
directly uses the servers on their default loopback ports.
"""

from __future__ import annotations

import os

import pytest

from tests.support.feedserver import FeedServer


@pytest.fixture
def feed_server():
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", password="owner-pass-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="other", password="other-pass-123")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether the test failed (e.g. to print child process logs).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
