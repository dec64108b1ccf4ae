"""`make run`'s supervisor (scripts/run.py), started as a user would, on the embedded default
(SQLite): the admin answers, Flower answers, demo posts arrive, Ctrl-C stops everything."""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.support.stack import REPO, free_port, wait_for

pytestmark = pytest.mark.e2e


def _get(url: str, *, login: str = "") -> int:
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _posts(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("select count(*) from processing_post").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_it_runs_the_whole_system_and_stops_on_ctrl_c(tmp_path, redis_client):
    web, flower, feeds = free_port(), free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "NATS_URL")
    }
    env.update(
        INFATIUM_VAR_DIR=str(tmp_path / "var"),
        REDIS_URL=settings.REDIS_URL,
        WEB_PORT=str(web),
        FLOWER_PORT=str(flower),
        DEMO_FEEDS_PORT=str(feeds),
        DEMO_FEED_EVERY="1",
        ADMIN_PASSWORD="a-test-password-1",
        # NATS_URL unset and the system server skipped: make run starts its own from the wheel.
        INFATIUM_SERVICES_SKIP_SYSTEM="nats",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: _get(f"http://127.0.0.1:{web}/admin/login/") == 200,
            timeout=90,
            what="the admin login page",
        )
        # Flower asks for the admin's login.
        wait_for(lambda: _get(f"http://127.0.0.1:{flower}/") == 401, timeout=60, what="Flower")
        assert _get(f"http://127.0.0.1:{flower}/", login="admin:a-test-password-1") == 200
        first = wait_for(
            lambda: _posts(tmp_path / "var" / "infatium.sqlite3"), timeout=60, what="demo posts"
        )
        # The live demo feed keeps adding items; more posts follow without anyone acting.
        wait_for(
            lambda: _posts(tmp_path / "var" / "infatium.sqlite3") > first,
            timeout=60,
            what="a live demo post",
        )
        assert _get(f"http://127.0.0.1:{web}/static/admin/css/base.css") == 200
        os.killpg(runner.pid, signal.SIGINT)
        assert runner.wait(timeout=30) == 0
    except BaseException:
        # SIGTERM lets the supervisor stop its children (they run in sessions of their own and
        # would outlive a killed supervisor, stealing later tests' tasks).
        runner.terminate()
        try:
            runner.wait(timeout=40)
        except subprocess.TimeoutExpired:
            runner.kill()
        print(log.read_text(errors="replace")[-8000:])
        raise
    output = log.read_text(errors="replace")
    assert "admin login: admin / a-test-password-1" in output
    assert "nats at nats://127.0.0.1:" in output and "(embedded, started)" in output
    assert "nats bridge running" in output
    assert "did not stop in time" not in output
    for port in (web, flower, feeds):
        assert _get(f"http://127.0.0.1:{port}/") == 0, f"port {port} still answers"
