"""/healthz and /readyz against the real services (PostgreSQL, Redis, a private nats-server),
and the containers' healthchecks that call them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.test import Client

from tests.support.nats import NatsServer
from tests.support.stack import free_port, running

REPO = Path(__file__).resolve().parent.parent
CLOSED = f"127.0.0.1:{free_port()}"  # nothing listens there
PROBES = ("/healthz", "/readyz")


def _readyz(**headers: str) -> tuple[int, dict]:
    response = Client().get("/readyz", headers=headers)
    return response.status_code, json.loads(response.content)


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.mark.django_db
def test_it_is_ready_when_the_database_and_redis_answer(settings):
    settings.NATS_URL = ""

    status, body = _readyz()

    assert status == 200
    assert body == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.django_db
def test_it_checks_nats_only_when_it_is_configured(settings, nats_server):
    settings.NATS_URL = nats_server.url

    status, body = _readyz()

    assert status == 200
    assert body["checks"] == {"database": "ok", "redis": "ok", "nats": "ok"}


@pytest.mark.django_db
def test_it_is_unavailable_when_redis_does_not_answer(settings):
    settings.NATS_URL = ""
    settings.REDIS_URL = f"redis://{CLOSED}/0"

    status, body = _readyz()

    assert status == 503
    assert body == {"status": "unavailable", "checks": {"database": "ok", "redis": "failed"}}


@pytest.mark.django_db
def test_it_is_unavailable_when_nats_does_not_answer(settings, nats_server):
    settings.NATS_URL = nats_server.url
    nats_server.stop()

    status, body = _readyz()

    assert status == 503
    assert body["checks"] == {"database": "ok", "redis": "ok", "nats": "failed"}


@pytest.mark.django_db
def test_it_answers_probes_whatever_the_host(settings):
    settings.ALLOWED_HOSTS = ["news.example.org"]  # a container's healthcheck uses its own IP

    probes = [
        Client().get(url, HTTP_HOST="10.1.2.3:8000").status_code for url in ("/healthz", "/readyz")
    ]
    other = Client().get("/api/", HTTP_HOST="10.1.2.3:8000").status_code

    assert probes == [200, 200]
    assert other == 400  # everything else still checks the host


@pytest.mark.django_db
def test_it_tells_no_anonymous_caller_why_a_check_failed(settings):
    settings.NATS_URL = f"nats://{CLOSED}"
    settings.REDIS_URL = f"redis://:redis-secret@{CLOSED}/0"

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert CLOSED not in response.content.decode()
    assert "redis-secret" not in response.content.decode()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_reports_the_database_from_a_real_web_process(request, tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    with running(request, tmp_path / "good", NATS_URL="") as stack:
        good = _get(f"http://127.0.0.1:{stack.web_port}/readyz")
    with running(
        request, tmp_path / "bad", NATS_URL="", DATABASE_URL=f"postgresql://postgres@{CLOSED}/x"
    ) as stack:
        alive = _get(f"http://127.0.0.1:{stack.web_port}/healthz")
        bad = _get(f"http://127.0.0.1:{stack.web_port}/readyz")

    assert good == (200, {"status": "ok", "checks": {"database": "ok", "redis": "ok"}})
    assert alive == (200, {"status": "ok"})
    assert bad == (503, {"status": "unavailable", "checks": {"database": "failed", "redis": "ok"}})


def test_it_wires_the_probes_into_the_containers_healthchecks():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]

    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    worker = " ".join(services["worker"]["healthcheck"]["test"])
    assert "inspect ping" in worker and "celery@$$HOSTNAME" in worker
    flower = services["flower"]
    assert "--conf=infatium/flowerconfig.py" in flower["command"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # its /metrics has no login
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
