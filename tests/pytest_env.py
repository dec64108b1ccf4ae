"""A pytest plugin loaded (-p) before pytest-django reads settings: test service defaults."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

# Before Django reads settings.
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/infatium")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
os.environ.setdefault("DEBUG", "0")
# The test feed servers listen on 127.0.0.1 ("localhost" may also resolve to ::1).
os.environ.setdefault("FETCH_ALLOWED_NETWORKS", "127.0.0.0/8,::1")
# Tests own a Redis database of their own (they flush it); keep the host the caller chose.
_redis = urlsplit(os.environ["REDIS_URL"])
# TEST_REDIS_DB lets two test runs on one machine keep out of each other's way.
os.environ["REDIS_URL"] = urlunsplit(
    _redis._replace(path="/" + os.environ.get("TEST_REDIS_DB", "9"))
)
