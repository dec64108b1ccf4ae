"""Sentry/GlitchTip: a failing view reaches a real HTTP endpoint on 127.0.0.1 (the envelope
endpoint is a plain POST) with its release and environment, and without any secret."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sentry_sdk

from infatium.sentry import default_release, git_commit

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: settings start Sentry at import when SENTRY_DSN is set.
FAIL_A_REQUEST = """
import sys, types
import django
django.setup()
import sentry_sdk
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings
from django.urls import path

def boom(request):
    password = "local-var-secret-0123"  # a frame variable Sentry would otherwise send
    raise RuntimeError(
        "cannot reach redis://:dsn-pass-0123@cache.internal:6379/0 with ticket=tkt-msg-0123 "
        + settings.SECRET_KEY
    )

urls = types.ModuleType("boom_urls")
urls.urlpatterns = [path("boom/", boom)]
sys.modules["boom_urls"] = urls
assert sentry_sdk.get_client().is_active()
with override_settings(ROOT_URLCONF="boom_urls"):
    response = Client(raise_request_exception=False).get(
        "/boom/?ticket=tkt-query-0123&page=2",
        headers={
            "Authorization": "Bearer auth-secret-0123",
            "Cookie": "sessionid=cookie-secret-0123",
            "X-Request-ID": "req-sentry-0001",
        },
    )
print("status", response.status_code)
sentry_sdk.flush(10)
"""
SECRETS = (
    "local-var-secret-0123",
    "dsn-pass-0123",
    "tkt-msg-0123",
    "tkt-query-0123",
    "auth-secret-0123",
    "cookie-secret-0123",
    "secret-key-for-the-sentry-test-0123456789",
)


class Collector:
    """An HTTP server that stores every POST body (decompressed) it receives."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.close()


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "infatium.settings",
        "INFATIUM_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "secret-key-for-the-sentry-test-0123456789",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "testserver",
        "REDIS_URL": os.environ["REDIS_URL"],
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_reports_a_failing_view_with_release_and_environment_and_no_secrets(collector, tmp_path):
    result = _python(
        FAIL_A_REQUEST,
        tmp_path,
        SENTRY_DSN=f"http://publickey0123@127.0.0.1:{collector.port}/1",
        SENTRY_RELEASE="test-release-1",
        SENTRY_ENVIRONMENT="ci-env",
    )

    assert result.returncode == 0, result.stderr
    assert "status 500" in result.stdout
    sent = b"\n".join(collector.bodies).decode()
    assert '"release":"test-release-1"' in sent.replace(" ", "")
    assert '"environment":"ci-env"' in sent.replace(" ", "")
    assert "RuntimeError" in sent and "cache.internal:6379/0" in sent
    assert "req-sentry-0001" in sent  # the request id, as a tag
    for secret in SECRETS:
        assert secret not in sent, secret
    # The log lines of the same failure are redacted too.
    for secret in SECRETS:
        assert secret not in result.stderr, secret
    assert "Internal Server Error: /boom/" in result.stderr


def test_it_runs_without_sentry_when_no_dsn_is_set(collector, tmp_path):
    result = _python(
        FAIL_A_REQUEST.replace(
            "assert sentry_sdk.get_client().is_active()",
            "assert not sentry_sdk.get_client().is_active()",
        ),
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert "status 500" in result.stdout
    assert collector.bodies == []
    assert not sentry_sdk.get_client().is_active()  # nor in the test process


def test_it_refuses_a_traces_sample_rate_above_one(tmp_path):
    result = _python("import django; django.setup()", tmp_path, SENTRY_TRACES_SAMPLE_RATE="2")

    assert result.returncode != 0
    assert "SENTRY_TRACES_SAMPLE_RATE=2.0 is above 1" in result.stderr


def test_it_names_the_release_after_the_checkouts_commit():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")

    assert default_release() == f"infatium@{head.stdout.strip()[:12]}"


def test_it_reads_the_commit_from_packed_refs_and_a_detached_head(tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    git = tmp_path / ".git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    packed = git_commit(git)
    (git / "HEAD").write_text(sha[::-1] + "\n")
    detached = git_commit(git)
    (git / "HEAD").write_text("ref: refs/heads/gone\n")
    missing = git_commit(git)

    assert (packed, detached, missing) == (sha, sha[::-1], "")
    assert git_commit(tmp_path / "nothing-here") == ""
