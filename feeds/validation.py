"""Save-time checks of a source URL typed by a user (API, admin).

This is the UX layer of the SSRF defence: it refuses what is visibly wrong (other schemes,
credentials, IP literals in refused ranges) with a clear message at save time. It is not the
control: a public host name can resolve to a private address, or be re-pointed after the check
(DNS rebinding), and a redirect can lead anywhere. The control is `feeds.fetcher`'s connect-time
guard; both use its one definition of a refused address and FETCH_ALLOWED_NETWORKS.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError

from feeds.fetcher import BlockedAddress, check_host

SOURCE_URL_MAX_LENGTH = 2000  # Source.url's column
ALLOWED_SCHEMES = ("http", "https")


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
    try:
        check_host(host)
    except BlockedAddress as exc:
        raise ValidationError(
            f"The URL points to {exc.address} ({exc.reason}); private, loopback and "
            "link-local addresses are not fetched.",
            code="private",
        ) from exc


def normalize_source_url(value: str) -> str:
    """The form a source URL is stored in, so one feed typed twice is one source: surrounding
    space trimmed, scheme and host lower-cased, the fragment (never sent to the server) dropped.
    Path and query keep their case: servers may treat them as case-sensitive."""
    parts = urlsplit(value.strip())
    netloc = parts.netloc.lower()
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))
