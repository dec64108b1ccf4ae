"""Flower (the real process, as `make run` and docker-compose start it): basic auth from
FLOWER_BASIC_AUTH, required without DEBUG, and its own Prometheus metrics."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest

from infatium import processes
from tests.support.stack import Stack, free_port, wait_for

pytestmark = pytest.mark.e2e

LOGIN = "ops:flower-pass, with a comma"


def _get(url: str, *, login: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path)
    yield stack
    stack.stop()


def test_it_asks_for_the_login_and_serves_its_metrics(stack):
    port = free_port()
    stack.env["FLOWER_BASIC_AUTH"] = LOGIN
    stack.start("flower", processes.flower(port=port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{base}/")[0] == 401, timeout=60, what="Flower to ask for a login")
        wrong = _get(f"{base}/", login="ops:nope")[0]
        right = _get(f"{base}/", login=LOGIN)[0]
        metrics = _get(f"{base}/metrics")
    except BaseException:
        print(stack.dump_logs())
        raise

    assert (wrong, right) == (401, 200)
    assert metrics[0] == 200
    assert "# TYPE flower_events_total counter" in metrics[1]


def test_it_refuses_to_start_without_a_login_unless_debug(stack):
    stack.env.pop("FLOWER_BASIC_AUTH", None)
    stack.start("flower", processes.flower(port=free_port()))

    code = stack.procs["flower"].wait(timeout=60)

    assert code != 0
    assert b"FLOWER_BASIC_AUTH is required when DEBUG is off" in stack.logs["flower"].read_bytes()
