"""Benchmark: posts committed at a steady rate → N WebSocket clients, through the real server.

Starts uvicorn on the project's ASGI app (PostgreSQL + Redis channel layer) and, for each N, a
second process holding N WebSocket clients (all signed in as the feed's owner, each subscribed to
the feed). This process then commits posts through processing.services at a steady rate (as a
worker would) and measures, per delivered message, the time from the commit (the on-commit push
to the channel layer) to the client's receipt. Prints deliveries/s, p50/p99 latency, whether it
kept up (every client got every post once, in cursor order, with p99 under a second), and the
CPU each side used. Everything shares this machine's cores.

The clients are websockets' own protocol (sans-I/O) on asyncio transports, so they cost about as
much as the server's side of each delivery. They are run twice: offering permessage-deflate, as
browsers do (uvicorn then compresses every message once per connection), and not.

    .venv/bin/python bench/ws_fanout.py [--clients 1,100,1000] [--rate 20] [--seconds 10]
        [--compression on,off]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEPT_UP_P99_MS = 1000.0
SETTLE_SECONDS = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--rate", type=float, default=20.0, help="posts committed per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--compression",
        default="on,off",
        help="permessage-deflate offered by the clients (on, as browsers do) or not (off)",
    )
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    parser.add_argument("--feed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        asyncio.run(_receive(args, int(args.clients)))
        return

    from _common import setup_django

    database_url = setup_django("infatium_bench_ws")

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from feeds.models import Source
    from infatium import processes
    from processing.models import Feed

    user = get_user_model().objects.create_user(username="bench")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    source = Source.objects.create(url="http://feeds.invalid/bench.xml", title="Bench")
    feed = Feed.objects.create(owner=user, name="bench", summaries=False, tags=False)
    feed.sources.add(source)

    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": settings.SECRET_KEY,
        "WS_MAX_CONNECTIONS_PER_USER": "100000",
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        processes.web(port=port, access_log=False),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        print(
            f"rate {args.rate:g} posts/s for {args.seconds:g} s, PostgreSQL + Redis, uvicorn, "
            f"{os.cpu_count()} cores"
        )
        for compression in args.compression.split(","):
            print(f"permessage-deflate {compression}:")
            for clients in [int(c) for c in args.clients.split(",")]:
                where = (port, server.pid, session.session_key)
                print(_measure(args, clients, compression, where, feed, source), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)


def _measure(args, clients, compression, where, feed, source) -> str:
    """One run: N clients connect and subscribe, posts are committed for --seconds."""
    from django.db import connection

    from feeds.models import RawPost
    from processing import services
    from realtime import broadcast

    port, server_pid, session_key = where
    command = [sys.executable, __file__, "--receive", "--port", str(port)]
    command += ["--session", session_key, "--feed", str(feed.id), "--clients", str(clients)]
    command += ["--compression", compression]
    receiver = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert receiver.stdin is not None and receiver.stdout is not None
    if receiver.stdout.readline().strip() != "ready":
        raise SystemExit("the clients did not connect")

    # The moment of commit: broadcast pushes to the channel layer from an on-commit callback.
    committed: dict[int, float] = {}
    push_ms: list[float] = []
    send = broadcast._send

    def timed_send(messages):
        at = time.time()
        for _, post in messages:
            committed[int(post["id"])] = at
        send(messages)
        push_ms.append((time.time() - at) * 1000)

    broadcast._send = timed_send
    cpu_before = _cpu_seconds(server_pid)
    producer_cpu = time.process_time()
    started = time.monotonic()
    interval = 1 / args.rate
    next_at = started
    n = 0
    try:
        while time.monotonic() < started + args.seconds:
            n += 1
            raw = RawPost.objects.create(
                source=source,
                external_id=f"{clients}-{n}-{time.time_ns()}",
                title=f"post {n} {secrets.token_hex(8)}",
                # Distinct words: near-duplicates would be folded into one story, not posted.
                text=" ".join(secrets.token_hex(3) for _ in range(50)),
                url=f"https://example.test/posts/{n}",
                content_hash=f"{n:064d}",
            )
            services.process_raw_posts(raw_post_ids=[raw.id])
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        broadcast._send = send
        connection.close()
    producer_cpu = (time.process_time() - producer_cpu) / (time.monotonic() - started)
    receiver.stdin.write(f"{len(committed)}\n")
    receiver.stdin.flush()
    report = json.loads(receiver.stdout.readline())
    received = report["received"]
    elapsed = time.monotonic() - started
    cpu = (_cpu_seconds(server_pid) - cpu_before) / elapsed
    receiver.wait(timeout=30)

    expected = len(committed) * clients
    latencies = sorted((at - committed[c]) * 1000 for _, c, at in received if c in committed)
    if not latencies:
        return f"clients={clients}: nothing received"
    by_client: dict[int, list[int]] = {}
    for client, cursor, _ in received:
        by_client.setdefault(client, []).append(cursor)
    # Every client had every post once, in cursor order.
    exact = len(by_client) == clients and all(
        cursors == sorted(committed) for cursors in by_client.values()
    )
    span = max(at for _, _, at in received) - min(committed.values())
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    kept_up = exact and p99 < KEPT_UP_P99_MS
    return (
        f"clients={clients:5d}  posts={len(committed):4d}  deliveries={len(latencies):6d}/"
        f"{expected:6d}  {len(latencies) / span:7.0f} deliveries/s  "
        f"latency p50 {p50:6.1f} ms  p99 {p99:7.1f} ms  "
        f"{'kept up' if kept_up else 'FELL BEHIND'}  "
        f"(CPU: server {cpu:4.0%}, clients {report['cpu'] / elapsed:4.0%}, "
        f"producer {producer_cpu:4.0%}; "
        f"push p50 {statistics.median(push_ms):.1f} ms)"
        + (f"  errors {report['errors']}" if report["errors"] else "")
    )


async def _receive(args, count: int) -> None:
    """The clients' process: connect, subscribe, report "ready"; record (client, cursor, receipt
    time) until the expected count (read from stdin) has arrived or SETTLE_SECONDS have passed."""
    from websockets.client import ClientProtocol
    from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri

    loop = asyncio.get_running_loop()
    uri = parse_uri(f"ws://127.0.0.1:{args.port}/ws/")
    headers = {"Cookie": f"sessionid={args.session}", "Origin": f"http://127.0.0.1:{args.port}"}
    received: list[tuple[int, int, float]] = []
    errors: dict[str, int] = {}
    extensions = enable_client_permessage_deflate(None) if args.compression == "on" else None

    class Client(asyncio.Protocol):
        def __init__(self, index: int) -> None:
            self.index = index
            self.ws = ClientProtocol(uri, extensions=extensions)
            self.subscribed = loop.create_future()

        def connection_made(self, transport) -> None:
            self.transport = transport
            request = self.ws.connect()
            request.headers.update(headers)
            self.ws.send_request(request)
            self._flush()

        def data_received(self, data: bytes) -> None:
            at = time.time()
            self.ws.receive_data(data)
            for event in self.ws.events_received():
                if isinstance(event, Response):
                    self.ws.send_text(json.dumps({"type": "subscribe", "feed": args.feed}).encode())
                elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    message = json.loads(event.data)
                    if message["type"] == "posts.created":
                        received.append((self.index, message["cursor"], at))
                    elif message["type"] == "error":
                        errors[message["code"]] = errors.get(message["code"], 0) + 1
                    elif message["type"] == "subscribed" and not self.subscribed.done():
                        self.subscribed.set_result(None)
            self._flush()  # the subscribe message, pongs

        def _flush(self) -> None:
            data = self.ws.data_to_send()
            if data:
                self.transport.write(b"".join(data))

    clients = []
    for start in range(0, count, 50):
        batch = [
            (await loop.create_connection(lambda n=n: Client(n), "127.0.0.1", args.port))[1]
            for n in range(start, min(start + 50, count))
        ]
        await asyncio.wait_for(asyncio.gather(*(c.subscribed for c in batch)), 30)
        clients.extend(batch)
    print("ready", flush=True)
    cpu_before = time.process_time()

    posts = int(await loop.run_in_executor(None, sys.stdin.readline))
    deadline = time.monotonic() + SETTLE_SECONDS
    while len(received) < posts * count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for client in clients:
        client.transport.close()
    cpu = time.process_time() - cpu_before
    print(json.dumps({"received": received, "cpu": cpu, "errors": errors}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
