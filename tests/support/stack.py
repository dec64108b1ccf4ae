"""Start the real processes (ASGI server, Celery worker, beat) for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from infatium import processes

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], object], *, timeout: float, what: str, every: float = 0.05
) -> object:
    """Poll `predicate` every `every` seconds until it returns a truthy value; fail with `what`
    after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def child_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgresql://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


class Stack:
    """Child processes sharing the test database and the test Redis database."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": child_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "0",
            "INFATIUM_VAR_DIR": str(tmp / "var"),
            "PYTHONUNBUFFERED": "1",
            **env,
        }

    def start(self, name: str, command: list[str]) -> None:
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            self.procs[name] = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_web(self) -> None:
        self.start("web", processes.web(port=self.web_port, access_log=False))
        wait_for(self._web_up, timeout=30, what="the ASGI server to listen")

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> None:
        self.start(name, processes.worker(concurrency=concurrency, name=name))
        wait_for(lambda: b"ready." in self.log(name), timeout=60, what=f"{name} to be ready")

    def start_beat(self) -> None:
        self.start("beat", processes.beat(schedule_file=self.tmp / "celerybeat-schedule"))

    def log(self, name: str) -> bytes:
        self._check_alive(name)
        return self.logs[name].read_bytes()

    def _check_alive(self, name: str) -> None:
        code = self.procs[name].poll()
        if code is not None:
            raise AssertionError(f"{name} exited with {code}:\n{self.logs[name].read_text()}")

    def _web_up(self) -> bool:
        self._check_alive("web")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.web_port)) == 0

    def dump_logs(self) -> str:
        return "\n".join(
            f"===== {name} =====\n{path.read_text(errors='replace')[-6000:]}"
            for name, path in self.logs.items()
        )

    def stop_one(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def running(
    request: Any, tmp: Path, *, processes: tuple[str, ...] = ("web",), **env: str
) -> Iterator[Stack]:
    """A started Stack for a test; its processes' logs are printed when the test fails."""
    stack = Stack(tmp, **env)
    starters = {"web": stack.start_web, "worker": stack.start_worker, "beat": stack.start_beat}
    try:
        for name in processes:
            starters[name]()
        yield stack
    except BaseException:
        print(stack.dump_logs())
        raise
    finally:
        stack.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(stack.dump_logs())
