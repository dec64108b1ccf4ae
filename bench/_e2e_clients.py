"""The clients of bench/e2e.py, in a process of their own: WebSocket clients and NATS consumers.

Each WebSocket client gets its own single-use ticket (`POST /api/ws-ticket/` with the API token
in $BENCH_TOKEN), connects to `/ws/?ticket=...` with the `websockets` library (permessage-deflate
offered, as browsers do) and subscribes to every feed given; on a `lagging` error it subscribes
again with `since` = the cursor given, as docs/websocket.md says a client must. Two JetStream
ordered consumers (new messages only) read `posts.created` and `raw_posts.created`. Every
message is stamped with time.time() as it arrives.

Line protocol: prints {"ready": true} once every client is subscribed and both consumers run.
Then reads one line `expect {"<feed id>": <posts>, ...}`: waits until every client and the
posts consumer hold that many distinct posts of each feed (or --settle seconds pass), prints
everything it recorded as one JSON line and exits.

    BENCH_TOKEN=... python bench/_e2e_clients.py --web-port P --nats-url U --feeds 1,2
        [--clients 10] [--settle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import httpx
import nats
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from websockets.asyncio.client import ClientConnection, connect


class Recorder:
    def __init__(self, feeds: list[int], clients: int) -> None:
        self.feeds = feeds
        # Per client: [feed, post id, url, received at]
        self.ws: list[list[list[Any]]] = [[] for _ in range(clients)]
        self.ws_seen: list[dict[int, set[int]]] = [
            {f: set() for f in feeds} for _ in range(clients)
        ]
        # [event id, feed, post id, url, post created_at, stored in the stream at, received at]
        self.posts: list[list[Any]] = []
        self.posts_seen: dict[int, set[int]] = {}
        # [event id, external id, fetched_at, stored in the stream at, received at]
        self.raw: list[list[Any]] = []
        self.errors: list[str] = []
        # [client, feed, cursor, at]: `lagging` errors, each answered by a subscribe with since
        self.resyncs: list[list[Any]] = []

    def complete(self, expected: dict[int, int]) -> bool:
        for feed, count in expected.items():
            if len(self.posts_seen.get(feed, ())) < count:
                return False
            if any(len(seen.get(feed, ())) < count for seen in self.ws_seen):
                return False
        return True


async def _client(index: int, args: argparse.Namespace, rec: Recorder, ready: asyncio.Event):
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        answer = await http.post(
            f"http://127.0.0.1:{args.web_port}/api/ws-ticket/",
            headers={"Authorization": f"Token {os.environ['BENCH_TOKEN']}"},
        )
        answer.raise_for_status()
        ticket = answer.json()["ticket"]
    uri = f"ws://127.0.0.1:{args.web_port}/ws/?ticket={ticket}"
    pending = set(rec.feeds)
    ws: ClientConnection
    async with connect(uri, proxy=None, open_timeout=30, close_timeout=1, max_queue=None) as ws:
        for feed in rec.feeds:
            await ws.send(json.dumps({"type": "subscribe", "feed": feed}))
        async for frame in ws:
            at = time.time()
            message = json.loads(frame)
            kind = message.get("type")
            if kind == "posts.created":
                post = message["post"]
                rec.ws[index].append([message["feed"], post["id"], post["url"], at])
                rec.ws_seen[index].setdefault(message["feed"], set()).add(post["id"])
            elif kind == "subscribed":
                pending.discard(message["feed"])
                if not pending:
                    ready.set()
            elif kind == "error" and message.get("code") == "lagging":
                # The documented recovery (docs/websocket.md): subscribe again from the cursor
                # the server names; the replay has no gap and no duplicate.
                rec.resyncs.append([index, message["feed"], message["cursor"], at])
                again = {"type": "subscribe", "feed": message["feed"], "since": message["cursor"]}
                await ws.send(json.dumps(again))
            elif kind == "error":
                rec.errors.append(f"client {index}: {message}")


async def _consume(args: argparse.Namespace, rec: Recorder) -> Any:
    nc = await nats.connect(args.nats_url, name="bench-e2e-clients")
    js = nc.jetstream()

    def stamps(msg: Any) -> tuple[float, float]:
        at = time.time()
        stored = msg.metadata.timestamp.timestamp()
        return at, stored

    async def on_post(msg: Any) -> None:
        at, stored = stamps(msg)
        event = json.loads(msg.data)
        post = event["post"]
        rec.posts.append(
            [event["event_id"], post["feed_id"], post["id"], post["url"], post["created_at"],
             stored, at]
        )  # fmt: skip
        rec.posts_seen.setdefault(post["feed_id"], set()).add(post["id"])

    async def on_raw(msg: Any) -> None:
        at, stored = stamps(msg)
        event = json.loads(msg.data)
        raw = event["raw_post"]
        rec.raw.append([event["event_id"], raw["external_id"], raw["fetched_at"], stored, at])

    deadline = time.monotonic() + 60
    while True:  # the bridge creates the streams when it starts
        try:
            for subject, callback in (("posts.created", on_post), ("raw_posts.created", on_raw)):
                await js.subscribe(
                    subject, cb=callback, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
                )
            return nc
        except NotFoundError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> None:
    feeds = [int(f) for f in args.feeds.split(",")]
    rec = Recorder(feeds, args.clients)
    loop = asyncio.get_running_loop()
    nc = await _consume(args, rec)
    readies = [asyncio.Event() for _ in range(args.clients)]
    tasks = [asyncio.create_task(_client(i, args, rec, readies[i])) for i in range(args.clients)]
    waiting = asyncio.gather(*(r.wait() for r in readies))
    done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        for task in done:
            task.result()  # a client that failed before subscribing: its error ends the run
        raise SystemExit("a client ended before subscribing")
    print(json.dumps({"ready": True}), flush=True)
    cpu_before = time.process_time()

    line = await loop.run_in_executor(None, sys.stdin.readline)
    expected = {int(k): v for k, v in json.loads(line.removeprefix("expect")).items()}
    deadline = time.monotonic() + args.settle
    while not rec.complete(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu_before
    for task in tasks:
        if task.done() and task.exception() is not None:
            rec.errors.append(f"client ended: {task.exception()!r}")
        task.cancel()
    with contextlib.suppress(Exception):
        await nc.close()
    report = {
        "ws": rec.ws,
        "posts": rec.posts,
        "raw": rec.raw,
        "errors": rec.errors,
        "resyncs": rec.resyncs,
        "cpu": cpu,
    }
    print(json.dumps(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--feeds", required=True)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--settle", type=float, default=20.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
