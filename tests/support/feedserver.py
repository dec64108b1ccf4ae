"""A real HTTP server on 127.0.0.1 that serves fixture feeds, with knobs for hostile answers."""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the response starts
    etag: bool = True  # answer If-None-Match with 304 when the body did not change
    lie_length: bool = False  # stream without Content-Length
    # Sent as Last-Modified; If-Modified-Since at or after it is answered with 304.
    last_modified: str = ""
    # Write the body in `drip_size`-byte pieces with this pause between them (a slow server).
    drip_delay: float = 0.0
    drip_size: int = 64


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    status: int


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections when a poller opens more at once,
    # and each dropped SYN costs the client a 1 s retransmit.
    request_queue_size = 128


class FeedServer:
    """Serve `routes[path]`; record every request (path, headers, status sent). With `tls`, serve
    HTTPS with that server-side context (the handshake happens as a connection is accepted)."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls is not None else "http"
        self.routes: dict[str, Route] = {}
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(outer.routes.get(self.path))

            def _answer(self, route: Route | None) -> int:
                if route is None:
                    self._send(404, b"not found", "text/plain", {})
                    return 404
                if route.delay:
                    time.sleep(route.delay)
                headers = dict(route.headers)
                if route.etag and route.status == 200:
                    tag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
                    headers["ETag"] = tag
                    if self.headers.get("If-None-Match") == tag:
                        self._send(304, b"", None, headers)
                        return 304
                if route.last_modified and route.status == 200:
                    headers["Last-Modified"] = route.last_modified
                    # RFC 9110: If-Modified-Since is ignored when If-None-Match is sent.
                    if "If-None-Match" not in self.headers and _not_modified_since(
                        route.last_modified, self.headers.get("If-Modified-Since")
                    ):
                        self._send(304, b"", None, headers)
                        return 304
                self._send(
                    route.status,
                    route.body,
                    route.content_type,
                    headers,
                    route.lie_length,
                    drip=(route.drip_delay, route.drip_size),
                )
                return route.status

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str | None,
                headers: dict[str, str],
                no_length: bool = False,
                drip: tuple[float, int] = (0.0, 0),
            ) -> None:
                # Logged before the answer goes out: once a client has its response, a test
                # reading `requests` sees the request.
                with outer._lock:
                    outer.requests.append(SeenRequest(self.path, dict(self.headers), status))
                self.send_response_only(status)
                self.send_header("Server", self.version_string())
                if "Date" not in headers:  # a route may send its own (freshness tests)
                    self.send_header("Date", self.date_time_string())
                if content_type:
                    self.send_header("Content-Type", content_type)
                for name, value in headers.items():
                    self.send_header(name, value)
                if no_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and status != 304:
                    # The client may hang up first (byte-cap and timeout tests do).
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        delay, size = drip
                        pieces = [body]
                        if delay and size:
                            pieces = [body[i : i + size] for i in range(0, len(body), size)]
                        for piece in pieces:
                            self.wfile.write(piece)
                            if delay:
                                time.sleep(delay)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        # A short poll interval keeps close() (shutdown) fast: it runs after every test.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def serve(self, path: str, body: bytes | str = b"", **kwargs: object) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(body=data, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def hits(self, path: str) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _not_modified_since(last_modified: str, since: str | None) -> bool:
    if not since:
        return False
    try:
        return parsedate_to_datetime(since) >= parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return False


def rss(*items: tuple[str, str], title: str = "Fixture feed") -> str:
    """A small RSS 2.0 document; each item is (guid, title)."""
    body = "".join(
        f"<item><title>{t}</title><link>http://example.test/{g}</link>"
        f'<guid isPermaLink="false">{g}</guid>'
        f"<pubDate>Wed, 25 Nov 2026 10:00:00 GMT</pubDate>"
        f"<description>&lt;p&gt;About {t}.&lt;/p&gt;</description></item>"
        for g, t in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://example.test/</link>{body}</channel></rss>"
    )
