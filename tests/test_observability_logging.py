"""Logs: JSON lines with the request/task/source ids, the same in every process, and no secret in
any of them (the real configured handler, a real web process, a real worker)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets.sync.client
from celery import shared_task
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.urls import path
from websockets.exceptions import InvalidStatus, WebSocketException

from feeds import services
from feeds.models import Source
from infatium import processes
from infatium.logging import REDACTED, JsonFormatter, TextFormatter, log_context
from tests.support.stack import running, wait_for

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("tests.observability")


def noisy_view(request: HttpRequest) -> HttpResponse:
    logger.warning("inside the view")
    return HttpResponse("ok")


async def noisy_async_view(request: HttpRequest) -> HttpResponse:
    logger.warning("inside the async view")
    return HttpResponse("ok")


urlpatterns = [path("noisy", noisy_view), path("noisy-async", noisy_async_view)]


@shared_task(name="tests.observability.log_in_task")
def log_in_task() -> str:
    logger.warning("inside the task")
    return "done"


class _Lines(list):
    """The JSON lines written to `stream` so far (each must parse), read again on every use."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__()
        self.stream = stream

    def __iter__(self):  # type: ignore[no-untyped-def]
        self[:] = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return super().__iter__()

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        list(iter(self))
        return super().__getitem__(index)


@pytest.fixture
def log_lines() -> Iterator[list[dict]]:
    """What the configured console handler (settings.LOGGING) writes, parsed line by line."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield _Lines(stream)
    finally:
        handler.setStream(previous)


def _one(lines: list[dict], message: str) -> dict:
    found = [line for line in lines if line["message"] == message]
    assert len(found) == 1, (message, list(lines))
    return found[0]


def test_it_configures_every_process_with_json_lines_and_the_redaction(settings):
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")

    assert settings.LOG_FORMAT == "json"  # DEBUG is off in the tests
    assert isinstance(handler.formatter, JsonFormatter)
    assert [type(f).__name__ for f in handler.filters] == ["ContextFilter", "RedactFilter"]
    for name in ("uvicorn", "uvicorn.access"):
        # (pytest adds capturing handlers of its own next to it)
        assert handler in logging.getLogger(name).handlers, name
        assert not logging.getLogger(name).propagate, name


@pytest.mark.urls("tests.test_observability_logging")
def test_it_gives_each_request_an_id_in_its_log_lines_and_its_response(log_lines):
    chosen = Client().get("/noisy", HTTP_X_REQUEST_ID="edge-proxy-1234abcd")
    chosen_line = _one(log_lines, "inside the view")
    invented = Client().get("/noisy", HTTP_X_REQUEST_ID='evil "id"\nwith lines')
    lines = [line for line in log_lines if line["message"] == "inside the view"]

    assert chosen["X-Request-ID"] == "edge-proxy-1234abcd"
    assert chosen_line["request_id"] == "edge-proxy-1234abcd"
    assert chosen_line["level"] == "WARNING"
    assert chosen_line["logger"] == "tests.observability"
    assert chosen_line["time"].endswith("+00:00")
    generated = invented["X-Request-ID"]
    assert len(generated) == 32 and generated != "edge-proxy-1234abcd"
    assert lines[1]["request_id"] == generated


@pytest.mark.urls("tests.test_observability_logging")
def test_it_keeps_the_request_id_through_the_async_request_path(log_lines):
    client = AsyncClient()
    response = asyncio.run(client.get("/noisy-async", headers={"X-Request-ID": "async-req-0001"}))

    assert response["X-Request-ID"] == "async-req-0001"
    assert _one(log_lines, "inside the async view")["request_id"] == "async-req-0001"


def test_it_carries_the_task_id_and_name(log_lines):
    result = log_in_task.apply()

    line = _one(log_lines, "inside the task")
    assert line["task_id"] == result.id
    assert line["task_name"] == "tests.observability.log_in_task"
    logger.warning("after the task")
    assert "task_id" not in _one(log_lines, "after the task")


@pytest.mark.django_db
def test_it_carries_the_source_id_of_a_poll(log_lines, feed_server):
    url = feed_server.serve("/gone.xml", b"gone", status=404, content_type="text/plain")
    source = Source.objects.create(url=url, title="Gone feed")
    claim = services.claim_source_now(source_id=source.id)
    assert claim is not None

    services.poll_source(source_id=source.id, token=claim.token)

    polled = [line for line in log_lines if line["message"].startswith("polled source")]
    assert len(polled) == 1
    assert polled[0]["source_id"] == source.id


def test_it_prefers_a_records_own_ids_and_nests_contexts(log_lines):
    with log_context(source_id=1, feed_id=2), log_context(source_id=3):
        logger.warning("nested")
        logger.warning("explicit", extra={"source_id": 4})
    logger.warning("outside")

    nested = _one(log_lines, "nested")
    assert (nested["source_id"], nested["feed_id"]) == (3, 2)
    assert _one(log_lines, "explicit")["source_id"] == 4
    assert "source_id" not in _one(log_lines, "outside")


def test_it_never_writes_credentials(log_lines, settings):
    settings.METRICS_TOKEN = "metrics-token-abcdef0123456789"
    logger.warning(
        "calling %s with %s then %s",
        "redis://:hunter2-redis@cache.internal:6379/0",
        {"Authorization": "Bearer bearer-secret-0123", "Accept": "*/*"},
        "/ws/?ticket=ticket-secret-0123&feed=2",
    )
    logger.warning("Cookie: sessionid=session-secret-0123; csrftoken=csrf-secret-0123")
    logger.warning("login with password=hunter2-form and Authorization: Token token-secret-0123")
    logger.warning("the scraper sent %s", settings.METRICS_TOKEN)
    try:
        raise ConnectionError("cannot reach postgresql://app:pg-secret-0123@db.internal/x")
    except ConnectionError:
        logger.exception("database down")

    text = json.dumps(list(log_lines))
    for secret in (
        "hunter2-redis",
        "bearer-secret-0123",
        "ticket-secret-0123",
        "session-secret-0123",
        "csrf-secret-0123",
        "hunter2-form",
        "token-secret-0123",
        "metrics-token-abcdef0123456789",
        "pg-secret-0123",
    ):
        assert secret not in text, secret
    assert text.count(REDACTED) >= 9
    # What is not a secret stays readable.
    first = log_lines[0]["message"]
    assert "cache.internal:6379/0" in first and "feed=2" in first and "Accept" in first
    assert "ConnectionError" in _one(log_lines, "database down")["exc_info"]


def test_it_writes_readable_text_lines_with_the_ids():
    record = logging.LogRecord("feeds.services", logging.INFO, __file__, 1, "polled %s", (3,), None)
    record.source_id = 3
    record.task_id = "abc"

    line = TextFormatter().format(record)

    assert line.endswith(" INFO feeds.services: polled 3 [task_id=abc source_id=3]")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_redacts_the_ticket_from_the_web_servers_websocket_and_access_lines(request, tmp_path):
    ticket = "tkt-" + uuid.uuid4().hex
    token = "tok-" + uuid.uuid4().hex
    with running(request, tmp_path, processes=(), LOG_FORMAT="json") as stack:
        # The access log on, as in `make run` and docker-compose.yml.
        stack.start("web", processes.web(port=stack.web_port))
        wait_for(stack._web_up, timeout=30, what="the ASGI server")
        base = f"127.0.0.1:{stack.web_port}"
        try:
            with websockets.sync.client.connect(f"ws://{base}/ws/?ticket={ticket}"):
                pass
        except (InvalidStatus, WebSocketException, OSError):
            pass  # a made-up ticket is refused; the line is written either way
        http = urllib.request.Request(
            f"http://{base}/healthz?ticket={ticket}", headers={"Authorization": f"Bearer {token}"}
        )
        assert urllib.request.urlopen(http, timeout=10).status == 200
        wait_for(
            lambda: b"/healthz?ticket=" in stack.log("web") and b"/ws/?ticket=" in stack.log("web"),
            timeout=15,
            what="the access and WebSocket lines",
        )
        text = stack.log("web").decode()

    assert ticket not in text
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    websocket = [line for line in lines if "WebSocket /ws/?ticket=" in line["message"]]
    access = [line for line in lines if "/healthz?ticket=" in line["message"]]
    assert websocket and access
    assert f"ticket={REDACTED}" in websocket[0]["message"]
    assert access[0]["logger"] == "uvicorn.access"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_logs_json_lines_with_the_task_id_from_a_real_worker(request, tmp_path):
    from feeds.tasks import purge_raw_posts

    with running(request, tmp_path, processes=("worker",), LOG_FORMAT="json") as stack:
        result = purge_raw_posts.delay()
        done = f"[{result.id}] succeeded".encode()
        wait_for(lambda: done in stack.log("worker"), timeout=60, what="the task to finish")
        text = stack.log("worker").decode()

    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    succeeded = [line for line in lines if f"[{result.id}] succeeded" in line["message"]]
    assert len(succeeded) == 1
    # Celery's own line, written in the prefork child while the task's context was bound.
    assert succeeded[0]["task_id"] == result.id
    assert succeeded[0]["task_name"] == "feeds.tasks.purge_raw_posts"
    assert any(line["message"].endswith(" ready.") for line in lines)


SHOW_LOGGING = """
import django
django.setup()
import logging
from django.conf import settings
handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
print(settings.LOG_FORMAT, type(handler.formatter).__name__)
"""


def _settings(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "infatium.settings",
        "INFATIUM_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "k" * 50,
    }
    return subprocess.run(
        [sys.executable, "-c", SHOW_LOGGING],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "0"}, "json JsonFormatter"),
        ({"DEBUG": "1"}, "text TextFormatter"),
        ({"DEBUG": "0", "LOG_FORMAT": "text"}, "text TextFormatter"),
        ({"DEBUG": "1", "LOG_FORMAT": "JSON"}, "json JsonFormatter"),
    ],
)
def test_it_chooses_the_format_from_log_format_else_debug(tmp_path, env, expected):
    result = _settings(tmp_path, **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_it_refuses_an_unknown_log_format_and_a_flower_login_without_password(tmp_path):
    result = _settings(tmp_path, DEBUG="0", LOG_FORMAT="xml", FLOWER_BASIC_AUTH="ops")

    assert result.returncode != 0
    assert "LOG_FORMAT='xml' is not json or text" in result.stderr
    assert "FLOWER_BASIC_AUTH must be user:password" in result.stderr
