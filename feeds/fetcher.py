"""The one HTTP client for outbound requests to sources.

Guarantees: a whole fetch (connect, redirects, body) ends within `timeout` seconds; a body larger
than `max_bytes` is refused before it is parsed (by Content-Length when announced, else while
streaming); conditional GET validators are sent when known. Every failure is a `FetchError`
subclass whose message a curator can act on.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass

import httpx
from django.conf import settings


class FetchError(Exception):
    """A fetch failed for a reason the source owner (not us) can fix."""

    status = "network_error"
    http_status: int | None = None


class FetchTimeout(FetchError):
    status = "timeout"


class ResponseTooLarge(FetchError):
    status = "too_large"


class HTTPStatusError(FetchError):
    status = "http_error"

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class FetchResult:
    url: str
    status_code: int
    body: bytes
    content_type: str
    etag: str
    last_modified: str

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


_shared_client: httpx.Client | None = None
_client_pid = 0


def _client() -> httpx.Client:
    """One client per process: building one (TLS context, CA bundle) costs ~20 ms, more than a
    whole 304 round trip. Re-created after a fork so prefork children never share sockets."""
    global _shared_client, _client_pid
    if _shared_client is None or _client_pid != os.getpid():
        _shared_client = httpx.Client(
            follow_redirects=True,
            max_redirects=5,
            trust_env=False,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        _client_pid = os.getpid()
    return _shared_client


def fetch(
    url: str,
    *,
    etag: str = "",
    last_modified: str = "",
    timeout: float | None = None,
    max_bytes: int | None = None,
) -> FetchResult:
    """GET `url` with conditional headers, a total deadline and a byte cap."""
    timeout = settings.FETCH_TIMEOUT_SECONDS if timeout is None else timeout
    max_bytes = settings.FETCH_MAX_BYTES if max_bytes is None else max_bytes
    headers = {
        "User-Agent": settings.FETCH_USER_AGENT,
        "Accept": (
            "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
        ),
        # Only what _decode handles, so the byte cap also bounds the decoded body.
        "Accept-Encoding": "gzip, deflate",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified

    deadline = time.monotonic() + timeout
    answered: int | None = None  # the status code, once the server has sent one
    try:
        with _client().stream(
            "GET", url, headers=headers, timeout=httpx.Timeout(timeout)
        ) as response:
            answered = response.status_code
            if response.status_code == 304:
                return FetchResult(
                    url=str(response.url),
                    status_code=304,
                    body=b"",
                    content_type="",
                    etag=response.headers.get("ETag", etag),
                    last_modified=response.headers.get("Last-Modified", last_modified),
                )
            if response.status_code >= 400:
                reason = response.reason_phrase or "error"
                raise HTTPStatusError(
                    f"HTTP {response.status_code} {reason} from {response.url}",
                    http_status=response.status_code,
                )
            announced = response.headers.get("Content-Length")
            if announced and announced.isdigit() and int(announced) > max_bytes:
                raise ResponseTooLarge(
                    f"response is {int(announced)} bytes, over the {max_bytes}-byte limit"
                )
            chunks: list[bytes] = []
            received = 0
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > max_bytes:
                    raise ResponseTooLarge(
                        f"response passed the {max_bytes}-byte limit; download stopped"
                    )
                if time.monotonic() > deadline:
                    raise FetchTimeout(f"download took longer than {timeout:g} s")
                chunks.append(chunk)
            body = b"".join(chunks)
            # iter_raw skips content decoding so the cap counts wire bytes; decode here with
            # the same cap so a small gzip bomb cannot expand past it.
            body = _decode(body, response.headers.get("Content-Encoding", ""), max_bytes)
            return FetchResult(
                url=str(response.url),
                status_code=response.status_code,
                body=body,
                content_type=response.headers.get("Content-Type", ""),
                etag=response.headers.get("ETag", ""),
                last_modified=response.headers.get("Last-Modified", ""),
            )
    except FetchError as exc:
        # A limit hit after the server answered: the poll log keeps what it answered.
        if exc.http_status is None:
            exc.http_status = answered
        raise
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"no answer within {timeout:g} s ({type(exc).__name__})") from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError("too many redirects (more than 5)") from exc
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from exc
    except httpx.UnsupportedProtocol as exc:
        raise FetchError(f"unsupported URL scheme in {url!r}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc


def _decode(body: bytes, encoding: str, max_bytes: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise FetchError(f"unsupported Content-Encoding {encoding!r}")
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    decompressor = zlib.decompressobj(wbits)
    try:
        out = decompressor.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise FetchError(f"corrupt {encoding} body: {exc}") from exc
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise ResponseTooLarge(f"decompressed body passed the {max_bytes}-byte limit")
    return out
