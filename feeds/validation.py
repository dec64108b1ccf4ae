"""Save-time checks of a source URL typed by a user (API, admin).

This is the UX layer of the SSRF defence: it refuses what is visibly wrong (other schemes,
credentials, IP literals in private ranges) with a clear message at save time. It is not the
control: a public host name can resolve to a private address, or be re-pointed after the check
(DNS rebinding), and a redirect can lead anywhere. The real guard checks the address the fetcher
connects to, at connect time, and belongs in `feeds.fetcher` (a later issue).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError

SOURCE_URL_MAX_LENGTH = 2000  # Source.url's column
ALLOWED_SCHEMES = ("http", "https")

# NAT64's well-known prefix embeds an IPv4 address in the last 32 bits (RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def validate_source_url(value: str) -> None:
    """Raise ValidationError unless `value` is an http(s) URL a source may be fetched from."""
    url = value.strip()
    if len(url) > SOURCE_URL_MAX_LENGTH:
        raise ValidationError(
            f"The URL is longer than {SOURCE_URL_MAX_LENGTH} characters.", code="too_long"
        )
    if any(ord(char) < 0x21 for char in url):
        raise ValidationError("The URL contains spaces or control characters.", code="invalid")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError as exc:
        raise ValidationError(f"The URL is not valid: {exc}.", code="invalid") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValidationError("Only http:// and https:// URLs are accepted.", code="scheme")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # Credentials would be stored in clear, shown to every user and sent on redirects.
        raise ValidationError("The URL must not contain a user name or password.", code="auth")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValidationError("The URL names no host.", code="host")
    if port == 0:
        raise ValidationError("The URL's port is not valid.", code="invalid")
    if not settings.FETCH_ALLOW_PRIVATE_NETWORKS and _is_private_host(host):
        raise ValidationError(
            "The URL points to a private, loopback or link-local address.", code="private"
        )


def normalize_source_url(value: str) -> str:
    """The form a source URL is stored in, so one feed typed twice is one source: surrounding
    space trimmed, scheme and host lower-cased, the fragment (never sent to the server) dropped.
    Path and query keep their case: servers may treat them as case-sensitive."""
    parts = urlsplit(value.strip())
    netloc = parts.netloc.lower()
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def _is_private_host(host: str) -> bool:
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return True  # RFC 6761: always loopback
    address = _ip_literal(lowered)
    if address is None:
        return False  # a name: only the connect-time guard can know where it leads
    return _is_private_address(address)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    # The resolver also accepts IPv4 in legacy forms (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1)
    # that ipaddress refuses; inet_aton parses exactly those, so they count as literals too.
    if all(char in "0123456789abcdefx." for char in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_private_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and _is_private_address(embedded):
            return True
    # is_global is False for private, loopback, link-local, shared (CGNAT), reserved and
    # unspecified ranges; multicast is never a feed.
    return not address.is_global or address.is_multicast
