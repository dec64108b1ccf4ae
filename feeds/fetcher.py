"""The one HTTP client for outbound requests to sources, and the SSRF guard.

Guarantees:
- Deadline: a whole fetch (every hop's connect, request and body) ends within `timeout` seconds.
- Size: a body larger than `max_bytes` is refused before it is parsed (by Content-Length when
  announced, else while streaming), and a gzip/deflate body is refused once it decodes past it.
- Addresses: every connection is checked at connect time: the host is resolved once, every
  address it resolves to must be public (or allowed by FETCH_ALLOWED_NETWORKS), and the socket
  connects to a checked address by number, so no second lookup can re-point it (DNS rebinding).
  The Host header, TLS SNI and certificate verification still use the host name.
- Encodings: an IP literal is judged by the address it means (decimal, octal, hex, short IPv4,
  IPv4-mapped IPv6, NAT64, 6to4, Teredo), so no spelling reaches a refused address.
- Redirects: followed here, at most 5; every hop must be http(s) without credentials and goes
  through the same guard. Conditional GET validators go with the first request only.
- Conditional GET: validators are sent when known; a 304 is `FetchResult.not_modified`.
- Freshness: `FetchResult.cache_seconds` (Cache-Control, Expires) and
  `HTTPStatusError.retry_after` (Retry-After on 429 and 503), clamped to 0..7 days.
- Errors: every failure is a `FetchError` subclass whose message a curator can act on; messages
  never carry response bodies or credentials.
- Speed: one pooled client per process (keep-alive), re-created after a fork.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar
from socket import getaddrinfo  # the network boundary: tests stand in a resolver here
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
MAX_FRESHNESS_SECONDS = 7 * 86400  # bound of cache_seconds and retry_after
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_RETRY_AFTER_CODES = frozenset({429, 503})

# CGNAT (RFC 6598): not global, but neither is_private nor is_reserved says so.
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# NAT64: the well-known prefix embeds an IPv4 address in its last 32 bits (RFC 6052); the
# local-use prefix (RFC 8215) embeds one at an operator's choice of offset, so it is refused.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# IPv4-compatible IPv6 (RFC 4291, deprecated): nothing legitimate lives there.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# The IANA special-purpose registries' blocks that are not globally reachable, with
# documentation, benchmarking, deprecated-relay and future-use space (a few reachable anycast
# addresses inside them, 192.0.0.9 or 2001:1::1, serve no feeds). Listed here rather than left
# to ipaddress, whose tables changed in patch releases (CVE-2024-4032: before 3.11.10 it calls
# 192.0.0.8, 3fff::1 and 6to4 global), so the decision is the same on every Python.
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "::/128", "::1/128",
        "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20",
        "5f00::/16", "fc00::/7", "fe80::/10",
    )
)  # fmt: skip
# IPv6 global unicast (RFC 4291): the only IPv6 space routed on the internet; the rest of the
# address space is reserved (ipaddress calls some of it global: ::1:0:0, 4000::1).
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_REFUSED_KINDS = "private, loopback and link-local addresses are not fetched"


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

    def __init__(self, message: str, *, http_status: int, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        # Seconds the server asked us to wait (429, 503); None: it did not say.
        self.retry_after = retry_after


class BlockedAddress(FetchError):
    """The URL, or a redirect, leads somewhere we do not fetch: a private, loopback, link-local
    (or otherwise non-public) address that FETCH_ALLOWED_NETWORKS does not allow, or a scheme
    other than http(s). Raised before any connection to that place is made."""

    status = "blocked"

    def __init__(self, message: str, *, address: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.address = address  # the refused IP address, when an address was refused
        self.reason = reason  # e.g. "link-local address"


@dataclass(frozen=True)
class FetchResult:
    url: str
    status_code: int
    body: bytes
    content_type: str
    etag: str
    last_modified: str
    # How long the server says this answer stays fresh (Cache-Control, Expires), seconds,
    # 0..7 days; None: it did not say, said no-cache/no-store, or said nonsense.
    cache_seconds: int | None = None

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


# --- Address policy (shared with save-time validation in feeds.validation) -----------------


@dataclass(frozen=True)
class AllowList:
    """FETCH_ALLOWED_NETWORKS: networks, and host names, fetched although not public."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()

    def allows_name(self, host: str) -> bool:
        return _normal_host(host) in self.names

    def allows_address(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # one destination, two spellings
        return any(a in network for a in candidates for network in self.networks)


def allow_list() -> AllowList:
    """The configured allow-list. The setting is a list of entries (settings.py) or, as tests
    set it, one comma-separated string."""
    value = settings.FETCH_ALLOWED_NETWORKS
    entries = value.split(",") if isinstance(value, str) else list(value)
    return _parse_allow_list(tuple(e.strip() for e in entries if e.strip()))


@functools.lru_cache(maxsize=16)
def _parse_allow_list(entries: tuple[str, ...]) -> AllowList:
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(_normal_host(entry))
    return AllowList(networks=tuple(networks), names=frozenset(names))


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, if it is an IP literal in any form the resolver accepts."""
    host = _normal_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # The resolver also accepts IPv4 in legacy forms (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1)
    # that ipaddress refuses; inet_aton parses exactly those, so they count as literals too.
    if host and all(char in "0123456789abcdefx." for char in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` is not fetched ("loopback address", ...), or None for a public address.
    The allow-list is not consulted here."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # The same destination as the IPv4 address: judged exactly like it.
            inner = refusal_reason(address.ipv4_mapped)
            return None if inner is None else f"{inner} in IPv4-mapped form"
        teredo_client = address.teredo[1] if address.teredo is not None else None
        nat64 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        for form, embedded in (("6to4", address.sixtofour), ("Teredo", teredo_client)):
            if embedded is not None and (inner := refusal_reason(embedded)):
                return f"{inner} in {form} form"
        if nat64 is not None and (inner := refusal_reason(nat64)):
            return f"{inner} in NAT64 form"
        if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
            return "IPv4-compatible address (deprecated)"
        if address in _NAT64_LOCAL:
            return "local-use NAT64 address"
        if address.is_site_local:
            return "site-local address"
        if nat64 is not None:
            return None  # a public IPv4 address, through the NAT64 gateway of an IPv6-only host
    special = any(address in block for block in _SPECIAL_PURPOSE)
    reserved_v6 = isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST
    # is_global is False for private, loopback, link-local, shared (CGNAT), reserved and
    # unspecified ranges; multicast is global but never a feed.
    if address.is_global and not (address.is_multicast or special or reserved_v6):
        return None
    for kind, applies in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", address in _SHARED),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("reserved", reserved_v6),
        ("special-purpose", special),
    ):
        if applies:
            return f"{kind} address"
    return "non-public address"


def check_address(address: IPAddress, *, host: str, allowed: AllowList | None = None) -> None:
    """Raise BlockedAddress unless a connection for `host` may go to `address`."""
    reason = refusal_reason(address)
    if reason is None:
        return
    allowed = allow_list() if allowed is None else allowed
    if allowed.allows_name(host) or allowed.allows_address(address):
        return
    raise BlockedAddress(
        f"refused to connect to {address} ({reason}) for {_normal_host(host)}: {_REFUSED_KINDS}",
        address=str(address),
        reason=reason,
    )


def check_host(host: str) -> None:
    """Raise BlockedAddress when `host` itself names a refused address: an IP literal in any
    spelling, or a name under .localhost (RFC 6761: always loopback). Other names are judged at
    connect time, by the addresses they resolve to."""
    name = _normal_host(host)
    address = ip_literal(name)
    if address is None and (name == "localhost" or name.endswith(".localhost")):
        address = ipaddress.IPv4Address("127.0.0.1")
    if address is not None:
        check_address(address, host=name)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


# --- The guarded connection ---------------------------------------------------------------


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend with the SSRF check where the socket is made: resolve the
    host once, refuse if any address is refused, then connect to the checked addresses by
    number. httpcore still does TLS on the stream with the origin's host name for SNI and
    certificate checks (httpcore/_sync/connection.py, `_connect`: server_hostname is the
    request's sni_hostname or the origin host, never the address used here)."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve_checked(host, port)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                # A numeric host: create_connection's own getaddrinfo does no DNS lookup.
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # refused or unreachable: try the next one
                failure = exc
        assert failure is not None  # _resolve_checked returns at least one address
        raise failure


def _resolve_checked(host: str, port: int) -> list[IPAddress]:
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise httpcore.ConnectError(f"could not resolve {host}: {detail}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpcore.ConnectError(f"could not resolve {host}: no addresses")
    allowed = allow_list()
    for address in addresses:  # every one: a later one would be tried if an earlier one fails
        check_address(address, host=host, allowed=allowed)
    return addresses


_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over an httpcore pool whose every new connection goes through
    `GuardedBackend`; kept-alive connections are reused per origin as usual."""

    def __init__(
        self,
        *,
        limits: httpx.Limits = _LIMITS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        context = httpx.create_ssl_context(trust_env=False) if ssl_context is None else ssl_context
        super().__init__(verify=context, trust_env=False, limits=limits)
        # HTTPTransport takes no network backend: rebuild its pool as it does, with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(),
        )


class _NoCookies(CookieJar):
    """A cookie jar that keeps nothing (set_cookie is where every cookie it is given ends up)
    and sends nothing: feeds need no cookies, and one client serves every source (cookies
    ignore ports, so even another source on the same host would get a site's session cookie)."""

    def set_cookie(self, cookie: Any) -> None:
        return

    def add_cookie_header(self, request: Any) -> None:
        return


_shared_client: httpx.Client | None = None
_client_pid = 0


def _client() -> httpx.Client:
    """One client per process: building one (TLS context, CA bundle) costs ~20 ms, more than a
    whole 304 round trip. Re-created after a fork so prefork children never share sockets."""
    global _shared_client, _client_pid
    if _shared_client is None or _client_pid != os.getpid():
        client = httpx.Client(
            transport=GuardedTransport(),
            # The jar itself, not httpx.Cookies around it: the client copies a Cookies into a
            # jar of its own, which keeps every cookie.
            cookies=_NoCookies(),
            follow_redirects=False,  # fetch() follows them, checking every hop
            trust_env=False,
        )
        # httpx hands every response to the jar through urllib wrappers (a sixth of the CPU
        # of a 304); there is nothing to extract.
        client.cookies.extract_cookies = lambda response: None  # type: ignore[method-assign]
        _shared_client = client
        _client_pid = os.getpid()
    return _shared_client


# --- fetch ----------------------------------------------------------------------------------


def fetch(
    url: str,
    *,
    etag: str = "",
    last_modified: str = "",
    timeout: float | None = None,
    max_bytes: int | None = None,
    user_agent: str | None = None,
    accept: str | None = None,
) -> FetchResult:
    """GET `url` with conditional headers, a total deadline, a byte cap and the SSRF guard on
    every hop. `user_agent` defaults to FETCH_USER_AGENT, `accept` to what feeds are served as
    (`PAGE_ACCEPT` suits web pages). Raises a `FetchError` subclass on any failure."""
    timeout = settings.FETCH_TIMEOUT_SECONDS if timeout is None else timeout
    max_bytes = settings.FETCH_MAX_BYTES if max_bytes is None else max_bytes
    headers = {
        "User-Agent": user_agent or settings.FETCH_USER_AGENT,
        "Accept": accept or FEED_ACCEPT,
        # Only what _decode handles, so the byte cap also bounds the decoded body.
        "Accept-Encoding": "gzip, deflate",
    }
    conditional = dict(headers)
    if etag:
        conditional["If-None-Match"] = etag
    if last_modified:
        conditional["If-Modified-Since"] = last_modified

    deadline = time.monotonic() + timeout
    answered: int | None = None  # the final response's status code, once the server sent it
    target = url
    try:
        for hop in range(MAX_REDIRECTS + 1):
            _check_target(target, redirected=hop > 0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchTimeout(f"no answer within {timeout:g} s (redirects)")
            with _client().stream(
                "GET",
                target,
                headers=conditional if hop == 0 else headers,
                timeout=httpx.Timeout(remaining),
            ) as response:
                location = _redirect_location(response)
                if location is not None:
                    _drain(response, limit=64 * 1024)  # keep the connection for the next hop
                if location is None:
                    answered = response.status_code
                    return _result(
                        response,
                        etag=etag,
                        last_modified=last_modified,
                        max_bytes=max_bytes,
                        deadline=deadline,
                        timeout=timeout,
                    )
            target = location
        raise FetchError(f"too many redirects (more than {MAX_REDIRECTS})")
    except FetchError as exc:
        # A limit hit after the server answered: the poll log keeps what it answered.
        if exc.http_status is None:
            exc.http_status = answered
        raise
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"no answer within {timeout:g} s ({type(exc).__name__})") from exc
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc


def _check_target(url: str, *, redirected: bool) -> None:
    """Refuse what is visibly wrong before any connection: a scheme other than http(s),
    credentials, or an IP literal naming a refused address. Names are checked at connect."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise FetchError(f"invalid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        where = "redirected to" if redirected else "the URL is"
        raise BlockedAddress(
            f"{where} a {scheme or 'scheme-less'}:// URL, which is not fetched: "
            "only http:// and https:// are",
            reason="scheme",
        )
    if parts.username is not None or parts.password is not None:
        # Never follow (or echo) credentials: httpx would send them as Basic auth.
        where = "redirected to" if redirected else "the URL is"
        raise BlockedAddress(
            f"{where} a URL with a user name or password, which is not fetched", reason="auth"
        )
    if not host:
        raise FetchError("invalid URL: it names no host")
    check_host(host)


def _redirect_location(response: httpx.Response) -> str | None:
    if response.status_code not in _REDIRECT_CODES:
        return None
    location = response.headers.get("Location", "").strip()
    if not location:
        reason = response.reason_phrase or "redirect"
        raise HTTPStatusError(
            f"HTTP {response.status_code} {reason} from {response.url} without a Location header",
            http_status=response.status_code,
        )
    try:
        return str(response.url.join(location))
    except httpx.InvalidURL as exc:
        raise FetchError(f"redirected to an invalid URL: {exc}") from exc


def _drain(response: httpx.Response, *, limit: int) -> None:
    """Read what is left of a small response so its connection can be kept alive; give up
    (the connection is then closed) past `limit` bytes."""
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > limit:
            return


def _result(
    response: httpx.Response,
    *,
    etag: str,
    last_modified: str,
    max_bytes: int,
    deadline: float,
    timeout: float,
) -> FetchResult:
    if response.status_code == 304:
        # A 304 has no body, but the connection goes back to the pool only once the response
        # is read to its end; closed unread, every revalidation would open a new connection.
        _drain(response, limit=64 * 1024)
        return FetchResult(
            url=str(response.url),
            status_code=304,
            body=b"",
            content_type="",
            etag=response.headers.get("ETag", etag),
            last_modified=response.headers.get("Last-Modified", last_modified),
            cache_seconds=cache_seconds(response.headers),
        )
    if response.status_code >= 400:
        reason = response.reason_phrase or "error"
        retry_after = (
            retry_after_seconds(response.headers)
            if response.status_code in _RETRY_AFTER_CODES
            else None
        )
        wait = "" if retry_after is None else f" (retry after {retry_after} s)"
        raise HTTPStatusError(
            f"HTTP {response.status_code} {reason} from {response.url}{wait}",
            http_status=response.status_code,
            retry_after=retry_after,
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
            raise ResponseTooLarge(f"response passed the {max_bytes}-byte limit; download stopped")
        if time.monotonic() > deadline:
            raise FetchTimeout(f"download took longer than {timeout:g} s")
        chunks.append(chunk)
    # iter_raw skips content decoding so the cap counts wire bytes; decode here with the same
    # cap so a small gzip bomb cannot expand past it.
    body = _decode(b"".join(chunks), response.headers.get("Content-Encoding", ""), max_bytes)
    return FetchResult(
        url=str(response.url),
        status_code=response.status_code,
        body=body,
        content_type=response.headers.get("Content-Type", ""),
        etag=response.headers.get("ETag", ""),
        last_modified=response.headers.get("Last-Modified", ""),
        cache_seconds=cache_seconds(response.headers),
    )


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


# --- Freshness headers ----------------------------------------------------------------------


def cache_seconds(headers: httpx.Headers) -> int | None:
    """Seconds the response stays fresh: s-maxage (one fetch serves many readers, like a shared
    cache), else max-age, else Expires minus Date (or now). None when the server does not say,
    says no-cache or no-store, or says nonsense; clamped to 0..7 days."""
    directives: dict[str, str] = {}
    for header in headers.get_list("Cache-Control"):
        for part in header.split(","):
            name, _, value = part.partition("=")
            if name.strip():
                directives.setdefault(name.strip().lower(), value.strip().strip('"'))
    if "no-store" in directives or "no-cache" in directives:
        return None
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = directives[name]
            if not (value.isascii() and value.isdigit()):
                return None
            return _clamp(int(value))
    expires = _http_date(headers.get("Expires", ""))
    if expires is None:
        return None
    return _clamp(round((expires - _reference_time(headers)).total_seconds()))


def retry_after_seconds(headers: httpx.Headers) -> int | None:
    """Retry-After as seconds from now (delta-seconds or HTTP-date, against the response's
    Date when it has one); None when absent or nonsense; clamped to 0..7 days."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return _clamp(int(value))
    when = _http_date(value)
    if when is None:
        return None
    return _clamp(round((when - _reference_time(headers)).total_seconds()))


def _reference_time(headers: httpx.Headers) -> datetime:
    # The server's clock, when it sent it: a skewed local clock then does not matter.
    return _http_date(headers.get("Date", "")) or datetime.now(UTC)


def _http_date(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _clamp(seconds: int) -> int:
    return max(0, min(seconds, MAX_FRESHNESS_SECONDS))
