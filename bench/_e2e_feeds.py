"""The feed server of bench/e2e.py, run in a process of its own.

Serves N RSS feeds on 127.0.0.1 (`/<n>.xml`; `/batch/<n>.xml` is the same feed under another URL)
with ETag/If-None-Match, each starting with one warm-up item. On `start` it adds items at a
steady rate, each to a random feed (newest first, at most --max-items per feed), and records for
every item when it was added and when it FIRST went out in a response body: the moment the item
"appears in a served feed" for whoever polls it.

Line protocol: start-up prints {"port": P}; then each command on stdin gets one JSON line back.
    start RATE SECONDS  -> {"ok": true}           add RATE items/s for SECONDS, from now
    status              -> {"added": n, "served": m, "adding": bool}
    dump                -> {"items": [[guid, feed, added_at, first_served_at or null], ...]}
    quit                -> (exits)
Times are time.time(): the wall clock every process on this machine shares.

    python bench/_e2e_feeds.py --sources 50 [--max-items 200]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from poll_pipeline import _sentence


@dataclass(frozen=True)
class _Snapshot:
    body: bytes
    etag: str
    guids: tuple[str, ...]


class Feeds:
    def __init__(self, sources: int, max_items: int, seed: int = 1) -> None:
        self.max_items = max_items
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.items: list[list[tuple[str, str]]] = [[] for _ in range(sources)]  # newest first
        self.snapshots: list[_Snapshot] = []
        self.added: dict[str, tuple[int, float]] = {}  # guid -> (feed, added_at)
        self.first_served: dict[str, float] = {}
        self.adding = False
        for n in range(sources):
            self.items[n].append(self._item(f"warm-{n}", time.time()))
            self.snapshots.append(self._snapshot(n))

    def _item(self, guid: str, at: float) -> tuple[str, str]:
        rng = self.rng
        # Distinct text per item (seeded), with sanitizer work in it, as in poll_pipeline._feed;
        # the guid is in the link so a post maps back to its item.
        xml = (
            f"<item><title>{_sentence(rng, 7)}</title>"
            f"<link>http://example.test/item/{guid}</link>"
            f'<guid isPermaLink="false">{guid}</guid>'
            f"<pubDate>{formatdate(at, usegmt=True)}</pubDate>"
            f"<description>&lt;p&gt;{_sentence(rng, 25)} &lt;b&gt;{_sentence(rng, 12)}&lt;/b&gt; "
            "&lt;a href='http://example.test/x' onclick='evil()'&gt;link&lt;/a&gt; "
            f"&lt;script&gt;alert(1)&lt;/script&gt; {_sentence(rng, 30)}&lt;/p&gt;"
            "</description></item>"
        )
        return guid, xml

    def _snapshot(self, n: int) -> _Snapshot:
        items = self.items[n]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>E2E {n}</title><link>http://example.test/{n}</link>"
            + "".join(xml for _, xml in items)
            + "</channel></rss>"
        ).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        return _Snapshot(body, etag, tuple(guid for guid, _ in items))

    def add(self, seq: int) -> None:
        guid = f"e2e-{seq}"
        with self.lock:
            n = self.rng.randrange(len(self.items))
            at = time.time()
            self.items[n].insert(0, self._item(guid, at))
            del self.items[n][self.max_items :]
            self.added[guid] = (n, at)
            self.snapshots[n] = self._snapshot(n)

    def served(self, snapshot: _Snapshot) -> None:
        at = time.time()
        with self.lock:
            for guid in snapshot.guids:
                self.first_served.setdefault(guid, at)

    def run(self, rate: float, seconds: float) -> None:
        self.adding = True
        try:
            started = time.monotonic()
            for seq in range(int(rate * seconds)):
                delay = started + seq / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.add(seq)
        finally:
            self.adding = False


def _handler(feeds: Feeds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.removeprefix("/batch")
            name = path.removeprefix("/").removesuffix(".xml")
            if not (path.endswith(".xml") and name.isdigit() and int(name) < len(feeds.items)):
                self._head(404, 0)
                return
            snapshot = feeds.snapshots[int(name)]
            if self.headers.get("If-None-Match") == snapshot.etag:
                self._head(304, None, snapshot.etag)
                return
            self._head(200, len(snapshot.body), snapshot.etag)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(snapshot.body)
                self.wfile.flush()
                # The whole body is with the client: its items are now served.
                feeds.served(snapshot)

        def _head(self, status: int, length: int | None, etag: str = "") -> None:
            self.send_response_only(status)
            self.send_header("Date", self.date_time_string())
            if status == 200:
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(length or 0))
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default 5 drops SYNs when many polls connect at once


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--max-items", type=int, default=200)
    args = parser.parse_args()
    feeds = Feeds(args.sources, args.max_items)
    server = _Server(("127.0.0.1", 0), _handler(feeds))
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()

    def answer(data: object) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    answer({"port": server.server_address[1]})
    for line in sys.stdin:
        command, *rest = line.split() or [""]
        if command == "start":
            rate, seconds = float(rest[0]), float(rest[1])
            feeds.adding = True  # before the thread runs: a `status` right after sees it
            threading.Thread(target=feeds.run, args=(rate, seconds), daemon=True).start()
            answer({"ok": True})
        elif command == "status":
            with feeds.lock:
                served = sum(1 for guid in feeds.added if guid in feeds.first_served)
                answer({"added": len(feeds.added), "served": served, "adding": feeds.adding})
        elif command == "dump":
            with feeds.lock:
                items = [
                    [guid, n, at, feeds.first_served.get(guid)]
                    for guid, (n, at) in feeds.added.items()
                ]
            answer({"items": items})
        elif command == "quit":
            break
    server.shutdown()


if __name__ == "__main__":
    main()
