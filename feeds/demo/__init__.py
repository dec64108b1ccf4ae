"""Sample feeds served on 127.0.0.1 by `manage.py serve_demo_feeds` for the `make run` demo."""

from __future__ import annotations

import email.utils
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

DEMO_DIR = Path(__file__).resolve().parent
STATIC_FEEDS = {
    "/world.xml": ("world.xml", "application/rss+xml; charset=utf-8"),
    "/science.atom": ("science.atom", "application/atom+xml; charset=utf-8"),
    "/tech.json": ("tech.json", "application/feed+json; charset=utf-8"),
}
LIVE_PATH = "/live.xml"

_HEADLINES = [
    ("Regulators publish a draft code of practice for AI chatbots", "AI"),
    ("Heatwave records fall across three continents", "climate"),
    ("Space agency confirms the date of the next crewed launch", "space"),
    ("City council votes to pedestrianise the old town", "cities"),
    ("Researchers train a small AI model on recycled data centre heat", "AI"),
    ("Glacier melt doubles in the last decade, survey says", "climate"),
    ("Satellite constellation starts beaming weather data", "space"),
    ("Local bakery wins the national bread prize", "food"),
]


class LiveFeed:
    """An RSS feed that gains one item every `every` seconds, keeping the newest `keep`."""

    def __init__(self, *, every: float, keep: int = 20) -> None:
        self.every = every
        self.keep = keep
        self.started = time.time()

    def count(self) -> int:
        return 1 + int((time.time() - self.started) // self.every)

    def render(self) -> tuple[bytes, str]:
        count = self.count()
        items = []
        for n in range(count, max(0, count - self.keep), -1):
            headline, topic = _HEADLINES[(n - 1) % len(_HEADLINES)]
            published = datetime.fromtimestamp(self.started + (n - 1) * self.every, UTC)
            items.append(
                "<item>"
                f"<title>{escape(headline)} (#{n})</title>"
                f"<link>http://127.0.0.1/demo/live/{n}</link>"
                f'<guid isPermaLink="false">demo-live-{n}</guid>'
                f"<pubDate>{email.utils.format_datetime(published)}</pubDate>"
                f"<description>{escape(f'<p>Live demo item {n} about {topic}.</p>')}"
                "</description></item>"
            )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            "<title>Demo Live Desk</title><link>http://127.0.0.1/demo/live</link>"
            f"<description>A new item every {self.every:g} seconds.</description>"
            + "".join(items)
            + "</channel></rss>"
        )
        return body.encode(), f'"live-{count}"'


def make_server(host: str, port: int, *, every: float) -> ThreadingHTTPServer:
    live = LiveFeed(every=every)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == LIVE_PATH:
                body, etag = live.render()
                content_type = "application/rss+xml; charset=utf-8"
            elif self.path in STATIC_FEEDS:
                name, content_type = STATIC_FEEDS[self.path]
                body = (DEMO_DIR / name).read_bytes()
                etag = f'"{name}-{len(body)}"'
            else:
                self.send_error(404, "no such demo feed")
                return
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(host: str, port: int, *, every: float) -> ThreadingHTTPServer:
    server = make_server(host, port, every=every)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
