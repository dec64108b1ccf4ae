"""Properties of the SSRF guard (feeds/fetcher.py) and of save-time validation
(feeds/validation.py).

For arbitrary IPv4 and IPv6 addresses, every spelling a resolver accepts (dotted, one to four
parts, each part decimal, octal or hex; IPv4-mapped IPv6; IPv6 compressed, expanded, upper
case, zero-padded, with a dotted tail or a zone id) is judged like the address it spells, by
`ip_literal` + `refusal_reason`, `check_host`, `validate_source_url` and the connect-time
`GuardedBackend`. The oracle is Python's `ipaddress` together with the IANA special-purpose
registries (written out below), so the decision does not depend on which patch release of
Python's tables is installed: 3.11.7's `is_global`, before the CVE-2024-4032 fix, calls
192.0.0.8, 3fff::/20 (documentation) and 2002::/16 (6to4) global.

The allow-list (FETCH_ALLOWED_NETWORKS, 127.0.0.0/8 in tests) is emptied where it would matter.
"""

from __future__ import annotations

import ipaddress
import socket
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds import fetcher
from feeds.fetcher import (
    BlockedAddress,
    FetchError,
    GuardedBackend,
    check_host,
    fetch,
    ip_literal,
    refusal_reason,
)
from feeds.validation import normalize_source_url, validate_source_url
from tests.fuzz.profiles import scaled
from tests.fuzz.strategies import hostile_text, url_values

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA IPv4 and IPv6 Special-Purpose Address Registries: blocks that are not globally
# reachable (or are documentation, benchmarking, deprecated relay or future-use space).
# Stricter than the registry where it is harmless: a whole block is listed even if a few of
# its addresses are reachable (192.0.0.9, 2001:1::1), since no feed lives there.
IANA_NOT_GLOBAL = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip
IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def refused_v4(address: ipaddress.IPv4Address) -> bool:
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or any(address in block for block in IANA_NOT_GLOBAL if block.version == 4)
    )


def embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64, 6to4 or Teredo address leads to."""
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refused(address: IPAddress) -> bool:
    """The oracle: whether the guard must refuse `address`."""
    if isinstance(address, ipaddress.IPv4Address):
        return refused_v4(address)
    if address.ipv4_mapped is not None:
        return refused_v4(address.ipv4_mapped)
    inner = embedded_v4(address)
    if inner is not None and refused_v4(inner):
        return True
    if address in NAT64:
        return False  # a public IPv4 address through the NAT64 gateway (IPv6-only hosts)
    return (
        address not in IPV6_GLOBAL_UNICAST
        or not address.is_global
        or address.is_multicast
        or any(address in block for block in IANA_NOT_GLOBAL if block.version == 6)
    )


# --- Addresses -------------------------------------------------------------------------------

_V4_BLOCKS = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32", "8.8.8.0/24", "93.184.216.0/24", "1.0.0.0/8", "100.63.255.0/24",
    "100.128.0.0/24", "172.15.255.0/24", "172.32.0.0/24", "192.0.1.0/24", "223.255.255.0/24",
]  # fmt: skip


def _in_block(block: str) -> st.SearchStrategy[int]:
    network = ipaddress.ip_network(block)
    first = int(network.network_address)
    return st.integers(first, first + network.num_addresses - 1)


ipv4_ints = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(_V4_BLOCKS).flatmap(_in_block))
ipv4s = ipv4_ints.map(ipaddress.IPv4Address)

_V6_BLOCKS = [
    "::/128", "::1/128", "::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
    "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "2000::/3",
    "2a00::/12", "4000::/3", "1000::/4",
]  # fmt: skip


@st.composite
def _embedding(draw: st.DrawFn) -> int:
    v4 = draw(ipv4_ints)
    form = draw(st.sampled_from(["mapped", "nat64", "6to4", "teredo"]))
    if form == "mapped":
        return 0xFFFF << 32 | v4
    if form == "nat64":
        return int(NAT64.network_address) | v4
    if form == "6to4":
        return 0x2002 << 112 | v4 << 80 | draw(st.integers(0, 2**80 - 1))
    server = draw(ipv4_ints)
    return (
        0x20010000 << 96 | server << 64 | draw(st.integers(0, 2**32 - 1)) << 32 | (v4 ^ 0xFFFFFFFF)
    )


ipv6s = st.one_of(
    st.integers(0, 2**128 - 1),
    st.sampled_from(_V6_BLOCKS).flatmap(_in_block),
    _embedding(),
).map(ipaddress.IPv6Address)
addresses = st.one_of(ipv4s, ipv6s)

# --- Spellings -------------------------------------------------------------------------------


def _number(draw: st.DrawFn, value: int) -> str:
    radix = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
    if radix == "dec":
        return str(value)
    zeros = "0" * draw(st.integers(0, 2))
    if radix == "oct":
        return "0" + zeros + format(value, "o")
    digits = format(value, "x" if radix == "hex" else "X")
    return draw(st.sampled_from(["0x", "0X"])) + zeros + digits


@st.composite
def ipv4_spellings(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """One of the ways inet_aton (and so the resolver) reads `address`."""
    value = int(address)
    octets = list(address.packed)
    parts = draw(st.sampled_from([4, 3, 2, 1]))
    if parts == 4:
        numbers = octets
    elif parts == 3:
        numbers = [octets[0], octets[1], value & 0xFFFF]
    elif parts == 2:
        numbers = [octets[0], value & 0xFFFFFF]
    else:
        numbers = [value]
    spelled = ".".join(_number(draw, n) for n in numbers)
    return spelled + ("." if draw(st.integers(0, 4)) == 0 else "")


@st.composite
def ipv6_spellings(draw: st.DrawFn, address: ipaddress.IPv6Address) -> str:
    groups = [
        format(int.from_bytes(address.packed[i : i + 2], "big"), "x") for i in range(0, 16, 2)
    ]
    form = draw(st.sampled_from(["compressed", "exploded", "padded", "dotted", "upper"]))
    if form == "compressed":
        text = address.compressed
    elif form == "exploded":
        text = address.exploded
    elif form == "padded":
        text = ":".join(g.zfill(draw(st.integers(len(g), 4))) for g in groups)
    elif form == "dotted":
        tail = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        text = ":".join(groups[:6]) + ":" + str(tail)
    else:
        text = address.compressed.upper()
    if address.is_link_local and draw(st.booleans()):
        text += "%25eth0"
    return text


@st.composite
def spelled(draw: st.DrawFn) -> tuple[IPAddress, str]:
    """(address, how a URL's host may spell it, without brackets)."""
    address = draw(addresses)
    if isinstance(address, ipaddress.IPv4Address):
        if draw(st.integers(0, 3)) == 0:  # as IPv4-mapped IPv6
            mapped = ipaddress.IPv6Address(0xFFFF << 32 | int(address))
            prefix = draw(st.sampled_from(["::ffff:", "::FFFF:", "0:0:0:0:0:ffff:", "0::ffff:"]))
            return mapped, prefix + draw(st.sampled_from([str(address), mapped.compressed[7:]]))
        return address, draw(ipv4_spellings(address))
    return address, draw(ipv6_spellings(address))


def _url_host(spelling: str) -> str:
    return f"[{spelling}]" if ":" in spelling else spelling


# --- Properties ------------------------------------------------------------------------------


@settings(max_examples=scaled(400))
@given(case=spelled())
@example(case=(ipaddress.IPv4Address("127.0.0.1"), "0177.1"))
@example(case=(ipaddress.IPv4Address("127.0.0.1"), "017700000001"))
@example(case=(ipaddress.IPv4Address("255.255.255.255"), "0377.0377.0377.0377"))
@example(case=(ipaddress.IPv4Address("192.0.0.8"), "192.0.0.8"))
@example(case=(ipaddress.IPv6Address("3fff::1"), "3fff::1"))
@example(case=(ipaddress.IPv6Address("2002:808:808::"), "2002:808:808::"))
@example(case=(ipaddress.IPv6Address("5f00::1"), "5f00::1"))
def test_an_ip_literal_is_judged_by_the_address_it_spells(case: tuple[IPAddress, str]) -> None:
    address, spelling = case
    literal = ip_literal(spelling)
    assert literal is not None, spelling
    # By number: a zone id ("%25eth0") makes IPv6 addresses compare unequal.
    assert int(literal) == int(address) or (
        isinstance(literal, ipaddress.IPv6Address) and literal.ipv4_mapped == address
    ), (spelling, literal)
    assert (refusal_reason(literal) is not None) == refused(address), (spelling, address)
    # Every spelling gets the decision of the canonical form.
    assert (refusal_reason(literal) is None) == (refusal_reason(address) is None)


@settings(max_examples=scaled(200))
@given(case=spelled(), port=st.sampled_from(["", ":80", ":8443"]))
def test_check_host_and_save_time_validation_refuse_exactly_the_refused(
    case: tuple[IPAddress, str], port: str
) -> None:
    address, spelling = case
    url = f"http://{_url_host(spelling)}{port}/feed.xml"
    with override_settings(FETCH_ALLOWED_NETWORKS=""):
        if refused(address):
            with pytest.raises(BlockedAddress):
                check_host(spelling)
            with pytest.raises(ValidationError) as caught:
                validate_source_url(url)
            assert caught.value.code == "private", (url, caught.value)
        else:
            check_host(spelling)
            validate_source_url(url)


def _resolver(answers: list[IPAddress]):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        return [
            (
                socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (str(a), port, 0, 0) if a.version == 6 else (str(a), port),
            )
            for a in answers
        ]

    return getaddrinfo


@settings(max_examples=scaled(200))
@given(answers=st.lists(addresses, min_size=1, max_size=4))
def test_a_name_is_refused_when_any_address_it_resolves_to_is_refused(
    answers: list[IPAddress],
) -> None:
    connected: list[str] = []

    def connect(self, host, port, *args, **kwargs):
        connected.append(host)
        raise fetcher.httpcore.ConnectError("no network in this test")

    with (
        override_settings(FETCH_ALLOWED_NETWORKS=""),
        mock.patch.object(fetcher, "getaddrinfo", _resolver(answers)),
        mock.patch.object(fetcher.httpcore.SyncBackend, "connect_tcp", connect),
    ):
        if any(refused(a) for a in answers):
            with pytest.raises(BlockedAddress):
                GuardedBackend().connect_tcp("feeds.example.test", 443)
            assert connected == []
        else:
            with pytest.raises(fetcher.httpcore.ConnectError):
                GuardedBackend().connect_tcp("feeds.example.test", 443)
            # Only checked addresses, by number: no second lookup can re-point the socket.
            assert connected and all(ipaddress.ip_address(h) in answers for h in connected)


@settings(max_examples=scaled(200))
@given(text=st.one_of(url_values, hostile_text, st.text(max_size=60)))
@example(text="http://[::1")
@example(text="http://example.test:99999/")
@example(text="http://[fe80::1%25eth0]/")
@example(text="http://\u0661\u0662\u0667.0.0.1/")
@example(text="http://①②⑦.0.0.1/")
def test_validation_raises_only_validation_errors(text: str) -> None:
    try:
        validate_source_url(text)
    except ValidationError as exc:
        assert exc.messages and all(exc.messages)
    else:
        normalized = normalize_source_url(text)
        validate_source_url(normalized)  # the stored form passes too


@settings(max_examples=scaled(100))
@given(text=st.one_of(url_values, hostile_text), answer=addresses.filter(refused))
@example(text="http://①②⑦.0.0.1/", answer=ipaddress.IPv4Address("127.0.0.1"))
def test_fetch_raises_only_fetch_errors_and_never_connects_to_a_refused_address(
    text: str, answer: IPAddress
) -> None:
    """Whatever the URL, fetch() ends in a FetchError; every name resolves to a refused
    address here, so any connection attempt would be a hole in the guard."""

    def connect(self, host, port, *args, **kwargs):
        raise AssertionError(f"connected to {host}:{port} for {text!r}")

    with (
        override_settings(FETCH_ALLOWED_NETWORKS=""),
        mock.patch.object(fetcher, "getaddrinfo", _resolver([answer])),
        mock.patch.object(fetcher.httpcore.SyncBackend, "connect_tcp", connect),
        pytest.raises(FetchError),
    ):
        fetch(text, timeout=2)
