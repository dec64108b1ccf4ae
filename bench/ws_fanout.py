"""Benchmark: posts committed at a steady rate → N WebSocket clients, through the real server.

Starts uvicorn on the project's ASGI app (PostgreSQL + Redis channel layer), connects N clients
(all signed in as the feed's owner, each subscribed to the feed), then commits posts through
processing.services at a steady rate from a thread (as a worker would) and measures, per
delivered message, the time from the commit to the client's receipt.
Prints deliveries/s and p50/p99 latency for each N. Everything shares this machine's 2 cores.

    .venv/bin/python bench/ws_fanout.py [--clients 1,100,1000] [--rate 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from _common import REPO, setup_django


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--rate", type=float, default=20.0, help="posts committed per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    database_url = setup_django("infatium_bench_ws")

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    from feeds.models import RawPost, Source
    from infatium import processes
    from processing import services
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
        committed: dict[int, float] = {}
        counter = [0]

        def produce(stop_at: float) -> None:
            interval = 1 / args.rate
            next_at = time.monotonic()
            while time.monotonic() < stop_at:
                counter[0] += 1
                raw = RawPost.objects.create(
                    source=source,
                    external_id=f"p{counter[0]}-{time.time_ns()}",
                    title=f"post {counter[0]}",
                    content_hash="0" * 64,
                )
                # Taken before processing, so the figure includes saving the post too.
                before = time.time()
                (post_id,) = services.process_raw_posts(raw_post_ids=[raw.id])
                committed[int(post_id)] = before
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            connection.close()

        print(f"rate {args.rate:g} posts/s for {args.seconds:g} s, PostgreSQL + Redis, uvicorn")
        for clients in [int(c) for c in args.clients.split(",")]:
            result = asyncio.run(
                _measure(port, session.session_key, feed.id, clients, args, produce, committed)
            )
            print(result)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)


async def _measure(port, session_key, feed_id, clients, args, produce, committed) -> str:
    from websockets.asyncio.client import connect

    headers = {"Cookie": f"sessionid={session_key}", "Origin": f"http://127.0.0.1:{port}"}
    received: list[tuple[int, float]] = []
    sockets = []
    for _ in range(clients):
        ws = await connect(f"ws://127.0.0.1:{port}/ws/", additional_headers=headers)
        await ws.send(json.dumps({"type": "subscribe", "feed": feed_id}))
        await ws.recv()
        sockets.append(ws)

    async def listen(ws) -> None:
        try:
            async for frame in ws:
                message = json.loads(frame)
                if message["type"] == "posts.created":
                    received.append((message["cursor"], time.time()))
        except Exception:
            return

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    committed.clear()
    started = time.time()
    producer = threading.Thread(target=produce, args=(time.monotonic() + args.seconds,))
    producer.start()
    await asyncio.to_thread(producer.join)
    expected = len(committed) * clients
    settle = time.monotonic() + 15
    while len(received) < expected and time.monotonic() < settle:
        await asyncio.sleep(0.05)
    elapsed = max(t for _, t in received) - started if received else 0.0
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*listeners, return_exceptions=True)
    latencies = sorted((t - committed[c]) * 1000 for c, t in received if c in committed)
    if not latencies:
        return f"clients={clients}: nothing received"
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return (
        f"clients={clients:5d}  posts={len(committed):4d}  deliveries={len(received):6d}/"
        f"{expected:6d}  {len(received) / elapsed:8.0f} deliveries/s  "
        f"latency p50 {p50:6.1f} ms  p99 {p99:7.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
