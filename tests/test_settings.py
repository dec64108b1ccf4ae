"""Settings come from the environment, are validated at import, and every bad value is reported
at once with its name. Each case imports the settings in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "k" * 50
SHOW = """
import json
import django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "DEBUG": s.DEBUG,
    "SECRET_KEY": s.SECRET_KEY,
    "ENGINE": db["ENGINE"],
    "NAME": db["NAME"],
    "POOL": db["OPTIONS"].get("pool"),
    "CONN_MAX_AGE": db["CONN_MAX_AGE"],
    "REDIS_URL": s.REDIS_URL,
    "BROKER": s.CELERY_BROKER_URL,
    "LAYER_HOST": s.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"],
    "FETCH_TIMEOUT_SECONDS": s.FETCH_TIMEOUT_SECONDS,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
}))
"""


def _settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings with exactly `env` (plus what Python needs) in a new process."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "infatium.settings",
        "INFATIUM_VAR_DIR": str(tmp_path / "var"),
    }
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _loaded(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


GOOD = {
    "SECRET_KEY": GOOD_KEY,
    "DEBUG": "off",
    "DATABASE_URL": "postgresql://app:pw@db.internal:5432/infatium",
    "REDIS_URL": "redis://cache.internal:6379/2",
    "DB_POOL_MAX_SIZE": "3",
    "FETCH_TIMEOUT_SECONDS": "7.5",
    "ALLOWED_HOSTS": "news.example, api.news.example",
}


def test_it_loads_good_values(tmp_path):
    loaded = _loaded(_settings(tmp_path, **GOOD))

    assert loaded["DEBUG"] is False
    assert loaded["SECRET_KEY"] == GOOD_KEY
    assert (loaded["ENGINE"], loaded["NAME"]) == ("django.db.backends.postgresql", "infatium")
    assert loaded["POOL"]["max_size"] == 3
    assert loaded["CONN_MAX_AGE"] == 0  # the pool replaces persistent connections
    assert loaded["REDIS_URL"] == loaded["BROKER"] == loaded["LAYER_HOST"] == GOOD["REDIS_URL"]
    assert loaded["FETCH_TIMEOUT_SECONDS"] == 7.5
    assert loaded["ALLOWED_HOSTS"] == ["news.example", "api.news.example"]
    assert loaded["SESSION_COOKIE_SECURE"] is True  # production default


def test_it_reports_every_bad_value_at_once_by_name(tmp_path):
    result = _settings(
        tmp_path,
        SECRET_KEY=GOOD_KEY,
        DEBUG="maybe",
        REDIS_URL="http://x",
        DB_POOL_MAX_SIZE="0",
        DATABASE_URL="mysql://app@db.internal/infatium",
        FETCH_TIMEOUT_SECONDS="soon",
        LOG_LEVEL="LOUD",
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    message = result.stderr[result.stderr.index("Invalid configuration") :]
    for expected in [
        "DEBUG='maybe' is not a boolean",
        "REDIS_URL='http://x' has scheme 'http'",
        "DB_POOL_MAX_SIZE=0 is below the minimum of 1",
        "DATABASE_URL='mysql://app@db.internal/infatium' has scheme 'mysql'",
        "FETCH_TIMEOUT_SECONDS='soon' is not a number",
        "LOG_LEVEL='LOUD' is not a logging level",
    ]:
        assert expected in message


def test_it_requires_a_secret_key_when_debug_is_off(tmp_path):
    result = _settings(tmp_path, DEBUG="0")

    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_it_refuses_a_short_secret_key_when_debug_is_off(tmp_path):
    result = _settings(tmp_path, DEBUG="0", SECRET_KEY="short")

    assert result.returncode != 0
    assert "SECRET_KEY is too short" in result.stderr


def test_it_uses_a_development_key_only_with_debug_on(tmp_path):
    loaded = _loaded(_settings(tmp_path, DEBUG="true"))

    assert loaded["DEBUG"] is True
    assert loaded["SECRET_KEY"].startswith("insecure-development-key")
    assert loaded["ENGINE"] == "django.db.backends.sqlite3"  # the embedded default
    assert loaded["SESSION_COOKIE_SECURE"] is False


def test_it_reads_a_secret_from_a_file(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text(GOOD_KEY[::-1] + "\n")

    loaded = _loaded(_settings(tmp_path, DEBUG="0", SECRET_KEY_FILE=str(secret)))

    assert loaded["SECRET_KEY"] == GOOD_KEY[::-1]


def test_it_names_an_unreadable_secret_file(tmp_path):
    result = _settings(tmp_path, DEBUG="0", SECRET_KEY_FILE=str(tmp_path / "missing"))

    assert result.returncode != 0
    assert "SECRET_KEY_FILE: cannot read" in result.stderr


def test_it_does_not_print_a_password_from_a_bad_url(tmp_path):
    result = _settings(tmp_path, SECRET_KEY=GOOD_KEY, DATABASE_URL="mysql://app:hunter2@db/x")

    assert result.returncode != 0
    assert "DATABASE_URL='mysql://app:***@db/x'" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("value", ["redis://", "postgresql:///infatium"])
def test_it_refuses_a_url_without_a_host(tmp_path, value):
    name = "REDIS_URL" if value.startswith("redis") else "DATABASE_URL"

    result = _settings(tmp_path, SECRET_KEY=GOOD_KEY, **{name: value})

    assert result.returncode != 0
    assert f"{name}={value!r} names no host" in result.stderr


def test_it_uses_persistent_connections_when_the_pool_is_off(tmp_path):
    loaded = _loaded(_settings(tmp_path, **GOOD, DB_POOL="no"))

    assert loaded["POOL"] is None
    assert loaded["CONN_MAX_AGE"] == 60


def test_it_refuses_a_poll_lease_no_longer_than_the_task_time_limit(tmp_path):
    # A shorter lease would let the dispatcher start a second poll of a source still polled.
    result = _settings(
        tmp_path, SECRET_KEY=GOOD_KEY, CELERY_TASK_TIME_LIMIT="60", POLL_LEASE_SECONDS="60"
    )

    assert result.returncode != 0
    assert "POLL_LEASE_SECONDS must be longer than CELERY_TASK_TIME_LIMIT" in result.stderr
