"""The fetcher's SSRF guard, redirects and freshness headers, against real servers on 127.0.0.1.

The guard is checked where it acts: no request reaches a server behind a refused address, in any
spelling, directly, through a host name or through a redirect. Host names other than localhost
are served by a stand-in for `getaddrinfo` in `feeds.fetcher` (the network boundary), so a
"public" name can resolve to a private address.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ValidationError

from feeds import fetcher
from feeds.fetcher import BlockedAddress, FetchError, GuardedBackend, HTTPStatusError, fetch
from feeds.validation import validate_source_url
from tests.support.feedserver import FeedServer, rss
from tests.test_settings import GOOD_KEY, _settings

FEED = rss(("g1", "First"))
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "127.1",  # short
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",  # IPv4-mapped, hex
    "[64:ff9b::7f00:1]",  # NAT64
    "[2002:7f00:1::]",  # 6to4
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo (client 127.0.0.1, bits inverted)
    "localhost",
]


def _resolve_to(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable:
    """A getaddrinfo answering from `table` (name -> addresses) as the resolver would, and
    asking the real one about other names (127.0.0.1, localhost)."""

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if calls is not None:
            calls.append(host)
        if host not in table:
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in table[host]
        ]

    return getaddrinfo


# --- Refused addresses ---------------------------------------------------------------------


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_it_refuses_every_spelling_of_loopback_before_any_request(host, feed_server, settings):
    settings.FETCH_ALLOWED_NETWORKS = ""
    feed_server.serve("/feed.xml", FEED)

    with pytest.raises(BlockedAddress) as caught:
        fetch(f"http://{host}:{feed_server.port}/feed.xml")

    assert caught.value.status == "blocked"
    assert caught.value.http_status is None
    assert "loopback address" in str(caught.value)
    assert "are not fetched" in str(caught.value)
    assert feed_server.requests == []


@pytest.mark.parametrize("host", [h.strip("[]") for h in LOOPBACK_SPELLINGS if h != "0177.0.0.1"])
def test_the_connect_time_guard_alone_refuses_every_spelling(host, feed_server, settings):
    # httpcore hands connect_tcp the URL's host as is (brackets removed); the guard must refuse
    # it without the URL check in front. (httpx itself rejects 0177.0.0.1 as a URL.)
    settings.FETCH_ALLOWED_NETWORKS = ""

    with pytest.raises(BlockedAddress, match="loopback address"):
        GuardedBackend().connect_tcp(host, feed_server.port, timeout=5)

    assert feed_server.requests == []


def test_it_refuses_a_public_name_that_resolves_to_a_private_address(monkeypatch):
    monkeypatch.setattr(
        fetcher, "getaddrinfo", _resolve_to({"metadata.example": ["169.254.169.254"]})
    )

    with pytest.raises(BlockedAddress) as caught:
        fetch("http://metadata.example/latest/meta-data/")

    assert str(caught.value) == (
        "refused to connect to 169.254.169.254 (link-local address) for metadata.example: "
        "private, loopback and link-local addresses are not fetched"
    )
    assert (caught.value.address, caught.value.reason) == ("169.254.169.254", "link-local address")


def test_it_refuses_a_name_when_any_of_its_addresses_is_refused(monkeypatch, feed_server, settings):
    # 127.0.0.1 is allowed and would answer; 10.0.0.1 is not. A guard that checked only the
    # address it tries first would fetch the feed.
    settings.FETCH_ALLOWED_NETWORKS = "127.0.0.0/8"
    monkeypatch.setattr(
        fetcher, "getaddrinfo", _resolve_to({"mixed.example": ["127.0.0.1", "10.0.0.1"]})
    )
    feed_server.serve("/feed.xml", FEED)

    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.1 \(private address\)"):
        fetch(feed_server.url("/feed.xml", host="mixed.example"))

    assert feed_server.requests == []


def test_it_connects_to_the_address_it_checked_and_keeps_the_host_name(
    monkeypatch, feed_server, settings
):
    # feeds.example exists only in this resolver: a second lookup anywhere else would fail.
    settings.FETCH_ALLOWED_NETWORKS = "127.0.0.0/8"
    lookups: list[str] = []
    monkeypatch.setattr(
        fetcher, "getaddrinfo", _resolve_to({"feeds.example": ["127.0.0.1"]}, lookups)
    )
    url = feed_server.serve("/feed.xml", FEED).replace("127.0.0.1", "feeds.example")

    result = fetch(url)

    assert (result.status_code, result.body) == (200, FEED.encode())
    assert lookups == ["feeds.example"]
    assert feed_server.requests[0].headers["Host"] == f"feeds.example:{feed_server.port}"


# --- Allow-list ----------------------------------------------------------------------------


def test_it_fetches_from_an_allowed_network_only(feed_server, settings):
    url = feed_server.serve("/feed.xml", FEED)
    settings.FETCH_ALLOWED_NETWORKS = "10.0.0.0/8, 127.0.0.0/8"

    assert fetch(url).body == FEED.encode()

    settings.FETCH_ALLOWED_NETWORKS = "10.0.0.0/8"
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1 \(loopback address\)"):
        fetch(url)
    assert len(feed_server.requests) == 1


def test_it_allows_a_host_name_in_the_list_but_not_its_address(feed_server, settings):
    settings.FETCH_ALLOWED_NETWORKS = "localhost"
    feed_server.serve("/feed.xml", FEED)

    result = fetch(feed_server.url("/feed.xml", host="localhost"))

    assert result.body == FEED.encode()
    assert feed_server.requests[0].headers["Host"] == f"localhost:{feed_server.port}"
    with pytest.raises(BlockedAddress):
        fetch(feed_server.url("/feed.xml"))
    assert len(feed_server.requests) == 1


@pytest.mark.parametrize(
    ("allowed", "fetched"),
    [("127.0.0.0/8", True), ("", False), ("127.0.0.1/32", True), ("10.0.0.0/8", False)],
)
def test_save_time_validation_and_the_fetcher_share_the_allow_list(
    allowed, fetched, feed_server, settings
):
    settings.FETCH_ALLOWED_NETWORKS = allowed
    url = feed_server.serve("/feed.xml", FEED)

    if fetched:
        validate_source_url(url)
        assert fetch(url).status_code == 200
    else:
        with pytest.raises(ValidationError, match="loopback address"):
            validate_source_url(url)
        with pytest.raises(BlockedAddress, match="loopback address"):
            fetch(url)


def test_settings_read_the_allow_list_and_refuse_a_bad_entry(tmp_path):
    good = _settings(
        tmp_path, SECRET_KEY=GOOD_KEY, FETCH_ALLOWED_NETWORKS="10.0.0.0/8, fd00::/8,feeds.internal"
    )
    bad = _settings(tmp_path, SECRET_KEY=GOOD_KEY, FETCH_ALLOWED_NETWORKS="10.0.0.0/33")

    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0
    assert "FETCH_ALLOWED_NETWORKS: '10.0.0.0/33' is neither a network" in bad.stderr


# --- Redirects -----------------------------------------------------------------------------


def _redirect(server: FeedServer, path: str, location: str, status: int = 302) -> str:
    return server.serve(path, b"", status=status, headers={"Location": location}, etag=False)


def test_it_refuses_a_redirect_to_the_metadata_address(feed_server):
    url = _redirect(feed_server, "/feed.xml", "http://169.254.169.254/latest/meta-data/")

    with pytest.raises(BlockedAddress) as caught:
        fetch(url)

    # Refused by the guard before connecting: an attempt would end in a timeout or a
    # connection error, not in BlockedAddress.
    assert "refused to connect to 169.254.169.254 (link-local address)" in str(caught.value)
    assert caught.value.http_status is None
    assert len(feed_server.requests) == 1


def test_it_checks_where_a_redirected_name_resolves(monkeypatch, feed_server):
    lookups: list[str] = []
    monkeypatch.setattr(
        fetcher, "getaddrinfo", _resolve_to({"metadata.example": ["169.254.169.254"]}, lookups)
    )
    url = _redirect(feed_server, "/feed.xml", "http://metadata.example/latest/meta-data/")

    with pytest.raises(BlockedAddress, match=r"for metadata\.example:"):
        fetch(url)

    assert lookups == ["127.0.0.1", "metadata.example"]


def test_it_checks_every_hop_against_the_allow_list(feed_server, settings):
    # localhost is allowed by name; its address, named directly by the redirect, is not.
    settings.FETCH_ALLOWED_NETWORKS = "localhost"
    feed_server.serve("/feed.xml", FEED)
    _redirect(feed_server, "/start", feed_server.url("/feed.xml"))

    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1 \(loopback address\)"):
        fetch(feed_server.url("/start", host="localhost"))

    assert [r.path for r in feed_server.requests] == ["/start"]


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "ftp://ftp.example.org/feed.xml", "gopher://127.0.0.1:70/_x"],
)
def test_it_refuses_a_redirect_to_another_scheme(location, feed_server):
    url = _redirect(feed_server, "/feed.xml", location)

    with pytest.raises(BlockedAddress) as caught:
        fetch(url)

    scheme = location.split(":")[0]
    assert str(caught.value) == (
        f"redirected to a {scheme}:// URL, which is not fetched: only http:// and https:// are"
    )


def test_it_refuses_a_redirect_that_carries_credentials(feed_server):
    url = _redirect(feed_server, "/feed.xml", "http://admin:hunter2@127.0.0.1:9/feed.xml")

    with pytest.raises(BlockedAddress) as caught:
        fetch(url)

    assert "user name or password" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_it_follows_five_redirects_and_refuses_a_sixth(feed_server):
    feed_server.serve("/feed.xml", FEED)
    for hop in range(6):
        target = "/feed.xml" if hop == 5 else f"/r{hop + 1}"
        _redirect(feed_server, f"/r{hop}", target, status=(301, 302, 303, 307, 308, 302)[hop])

    result = fetch(feed_server.url("/r1"))  # r1 -> r2 -> r3 -> r4 -> r5 -> feed.xml

    assert (result.body, result.url) == (FEED.encode(), feed_server.url("/feed.xml"))
    feed_server.requests.clear()
    with pytest.raises(FetchError, match=r"too many redirects \(more than 5\)"):
        fetch(feed_server.url("/r0"))
    assert [r.path for r in feed_server.requests] == ["/r0", "/r1", "/r2", "/r3", "/r4", "/r5"]


def test_it_sends_conditional_headers_with_the_first_request_only(feed_server):
    feed_server.serve("/new.xml", FEED)
    url = _redirect(feed_server, "/old.xml", "/new.xml", status=301)

    fetch(url, etag='"abc"', last_modified="Wed, 25 Nov 2026 10:00:00 GMT")

    first, second = feed_server.requests
    assert first.headers["If-None-Match"] == '"abc"'
    assert first.headers["If-Modified-Since"] == "Wed, 25 Nov 2026 10:00:00 GMT"
    assert "If-None-Match" not in second.headers
    assert "If-Modified-Since" not in second.headers


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for feeds.example (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=feeds.example"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=DNS:feeds.example"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_uses_the_host_name_for_sni_and_the_certificate_check(certificate, monkeypatch):
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: sni.append(name)
    server = FeedServer(tls=server_context)
    server.serve("/feed.xml", FEED)
    monkeypatch.setattr(
        fetcher,
        "getaddrinfo",
        _resolve_to({"feeds.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}),
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        with httpx.Client(transport=fetcher.GuardedTransport(ssl_context=trusting)) as client:
            response = client.get(server.url("/feed.xml", host="feeds.example"))

            assert (response.status_code, response.content) == (200, FEED.encode())
            assert sni == ["feeds.example"]
            assert server.requests[0].headers["Host"] == f"feeds.example:{server.port}"

            # Same address, same certificate, another name: verification must fail.
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                client.get(server.url("/feed.xml", host="other.example"))
            assert len(server.requests) == 1
    finally:
        server.close()


# --- Per-call headers ----------------------------------------------------------------------


def test_it_sends_the_user_agent_and_accept_of_the_call(feed_server, settings):
    settings.FETCH_USER_AGENT = "InfatiumDefault/1.0"
    url = feed_server.serve("/page.html", "<html></html>", content_type="text/html")

    fetch(url, user_agent="SourceSpecific/2.0 (+https://example.org)", accept=fetcher.PAGE_ACCEPT)
    fetch(url)

    custom, default = feed_server.requests
    assert custom.headers["User-Agent"] == "SourceSpecific/2.0 (+https://example.org)"
    assert custom.headers["Accept"] == "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
    assert default.headers["User-Agent"] == "InfatiumDefault/1.0"
    assert default.headers["Accept"].startswith("application/rss+xml")


def test_it_keeps_no_cookie_and_sends_none(feed_server):
    # One client serves every source: a cookie a site sets must not come back to it or reach
    # another source on the same host (cookies ignore ports).
    setter = feed_server.serve("/sets.xml", FEED, headers={"Set-Cookie": "session=abc123; Path=/"})
    other = FeedServer()
    try:
        elsewhere = other.serve("/feed.xml", FEED)
        fetch(setter)
        fetch(setter)
        fetch(elsewhere)
    finally:
        other.close()

    seen = [*feed_server.requests, *other.requests]
    assert len(seen) == 3
    assert [r.headers.get("Cookie") for r in seen] == [None, None, None]


# --- Freshness -----------------------------------------------------------------------------

DATE = "Wed, 25 Nov 2026 10:00:00 GMT"
WEEK = 7 * 86400


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"Cache-Control": "public, max-age=600"}, 600),
        ({"Cache-Control": "max-age=60, s-maxage=900"}, 900),
        ({"Cache-Control": 'max-age="120"'}, 120),
        ({"Cache-Control": "max-age=99999999"}, WEEK),
        ({"Cache-Control": "no-store, max-age=600"}, None),
        ({"Cache-Control": "no-cache"}, None),
        ({"Cache-Control": "max-age=soon"}, None),
        ({"Cache-Control": "max-age=-5"}, None),
        ({"Date": DATE, "Expires": "Wed, 25 Nov 2026 10:30:00 GMT"}, 1800),
        ({"Date": DATE, "Expires": "Wed, 25 Nov 2026 09:00:00 GMT"}, 0),
        ({"Date": DATE, "Expires": "Wed, 25 Nov 2027 10:00:00 GMT"}, WEEK),
        ({"Date": DATE, "Expires": "0"}, None),
        (
            {
                "Date": DATE,
                "Expires": "Thu, 26 Nov 2026 10:00:00 GMT",
                "Cache-Control": "max-age=5",
            },
            5,
        ),
    ],
)
def test_it_reports_how_long_the_answer_stays_fresh(headers, seconds, feed_server):
    url = feed_server.serve("/feed.xml", FEED, headers=headers)

    assert fetch(url).cache_seconds == seconds


def test_it_reports_freshness_without_a_date_header_against_now(feed_server):
    # The server's own Date is the current time; Expires an hour later is about an hour away.
    expires = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    url = feed_server.serve("/feed.xml", FEED, headers={"Expires": expires})

    assert 3500 <= fetch(url).cache_seconds <= 3600


def test_it_reports_freshness_on_a_304(feed_server):
    url = feed_server.serve("/feed.xml", FEED, headers={"Cache-Control": "max-age=300"})
    first = fetch(url)

    again = fetch(url, etag=first.etag)

    assert again.not_modified
    assert again.cache_seconds == 300


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (429, {"Retry-After": "120"}, 120),
        (503, {"Date": DATE, "Retry-After": "Wed, 25 Nov 2026 10:05:00 GMT"}, 300),
        (503, {"Date": DATE, "Retry-After": "Wed, 25 Nov 2026 09:00:00 GMT"}, 0),
        (429, {"Retry-After": "9999999"}, WEEK),
        (429, {"Retry-After": "soon"}, None),
        (503, {}, None),
        (500, {"Retry-After": "120"}, None),  # only 429 and 503 carry it
    ],
)
def test_it_reports_when_the_server_asks_to_be_retried(status, headers, retry_after, feed_server):
    url = feed_server.serve("/feed.xml", b"busy", status=status, headers=headers)

    with pytest.raises(HTTPStatusError) as caught:
        fetch(url)

    assert (caught.value.http_status, caught.value.retry_after) == (status, retry_after)
    if retry_after is not None:
        assert str(caught.value).endswith(f"(retry after {retry_after} s)")
    assert "busy" not in str(caught.value)  # never the body
