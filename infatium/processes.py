"""The command line of each long-running process, defined once for `make run`, the end-to-end
tests and the benchmarks (docker-compose.yml spells the same commands for containers)."""

from __future__ import annotations

import sys
from pathlib import Path

QUEUES = "poll,process,agents"
FLOWER_CONFIG = Path(__file__).resolve().parent / "flowerconfig.py"


def web(*, port: int, host: str = "127.0.0.1", access_log: bool = True) -> list[str]:
    command = [
        sys.executable, "-m", "uvicorn", "infatium.asgi:application",
        "--host", host, "--port", str(port), "--lifespan", "off", "--ws", "websockets-sansio",
        # The protocol's own limit (WS_MAX_MESSAGE_BYTES) is far lower; this stops a huge frame
        # before it is buffered at all.
        "--ws-max-size", "65536",
        # Compression costs a third of the server's CPU per delivery and cannot be shared
        # between connections: one encoded post is written as is to every subscriber.
        "--ws-per-message-deflate", "false",
    ]  # fmt: skip
    return command if access_log else [*command, "--no-access-log"]


def worker(*, concurrency: int = 2, queues: str = QUEUES, name: str = "worker") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "infatium", "worker",
        "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def beat(*, schedule_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "infatium", "beat",
        "--loglevel", "INFO", "--schedule", str(schedule_file),
    ]  # fmt: skip


def flower(*, port: int, host: str = "127.0.0.1") -> list[str]:
    # Basic auth from FLOWER_BASIC_AUTH, through the config file (not the command line, which
    # any local user can read); Prometheus metrics at /metrics.
    return [
        sys.executable, "-m", "celery", "-A", "infatium", "flower",
        f"--address={host}", f"--port={port}", f"--conf={FLOWER_CONFIG}",
    ]  # fmt: skip


def demo_feeds(*, port: int, every: float) -> list[str]:
    return [
        sys.executable, "manage.py", "serve_demo_feeds", "--port", str(port), "--every", str(every),
    ]  # fmt: skip


def nats_bridge() -> list[str]:
    return [sys.executable, "manage.py", "nats_bridge"]


def telegram_gateway() -> list[str]:
    # One per session: run it only when settings.TELEGRAM_GATEWAY_ENABLED.
    return [sys.executable, "manage.py", "telegram_gateway"]
