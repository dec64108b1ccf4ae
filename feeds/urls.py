"""Item links: tracking parameters stripped, and a canonical key for identity.

`clean_link` is what we store and show: the publisher's link without tracking parameters (utm_*,
fbclid, ...), otherwise untouched. `link_key` is the identity of a link: the cleaned link with the
scheme folded to https, the host lower-cased without "www." and a default port, the fragment
dropped and the query sorted, hashed to 40 hex characters. Two links with the same key are the
same article.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

# Exact names; prefixes below. Lower-case comparison.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "wickedid",
        "rb_clickid",
        "s_cid",
        "ncid",
        "cmpid",
        "_ga",
        "_gl",
        "ref_src",
        "ref_url",
        "spm",
        "sr_share",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "__s")
# A link clean_link and canonical_link read without urlsplit: http(s), a host of plain labels,
# no port, user or fragment, a path of printable ASCII (urlsplit would remove tabs and newlines
# and strip control characters), and a query, if any, of name=value pairs spelled with
# characters that neither parse_qsl nor urlencode changes. Most item links look like this.
_PLAIN_LINK = re.compile(
    r"([Hh][Tt][Tt][Pp][Ss]?)://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(/[\x21\x22\x24-\x3e\x40-\x7e]*)?"
    r"(?:\?([\w.~-]+=[\w.~-]*(?:&[\w.~-]+=[\w.~-]*)*))?",
    re.ASCII,
)


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def clean_link(url: str) -> str:
    """`url` without tracking parameters; '' stays ''; a link that does not parse is kept.
    The other parameters stay byte for byte as they were: decoding and re-encoding them would
    change what some servers receive (%FF is not %EF%BF%BD, nor "a b" "a+b")."""
    if not url or "?" not in url:  # no query, no tracking parameters
        return url
    plain = _PLAIN_LINK.fullmatch(url)
    if plain:  # the "?" can only be that of its query, group 4
        pairs = plain.group(4).split("&")
        if len(_without_tracking(pairs)) == len(pairs):
            return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    segments = parts.query.split("&")
    kept = _without_tracking(segments)
    if len(kept) == len(segments):
        return url
    return urlunsplit(parts._replace(query="&".join(kept)))


def canonical_link(url: str) -> str:
    """The normalized form `link_key` hashes ('' for '' or an unparsable link)."""
    if not url:
        return ""
    url = url.strip()
    plain = _PLAIN_LINK.fullmatch(url)
    if plain:  # what the general case below gives for it, without parsing
        host = plain.group(2).lower()
        if host.startswith("www."):
            host = host[4:]
        link = f"https://{host}{plain.group(3) or '/'}"
        if plain.group(4) is None:
            return link
        # Sorted as parse_qsl's (name, value) tuples, which "name=value" strings are not.
        pairs = sorted(_without_tracking(plain.group(4).split("&")), key=_name_and_value)
        return f"{link}?{'&'.join(pairs)}" if pairs else link
    try:
        parts = urlsplit(clean_link(url))
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return ""
    host = (parts.hostname or "").rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    if ":" in host:  # an IPv6 literal keeps its brackets, or the result does not parse
        host = f"[{host}]"
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    path = parts.path or "/"
    return urlunsplit(("https", netloc, path, query, ""))


def _without_tracking(pairs: list[str]) -> list[str]:
    """The name=value pairs of a query whose (decoded) name is not a tracking parameter."""
    return [pair for pair in pairs if not is_tracking_param(unquote_plus(pair.partition("=")[0]))]


def _name_and_value(pair: str) -> tuple[str, str, str]:
    return pair.partition("=")


def link_key(url: str) -> str:
    canonical = canonical_link(url)
    return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest() if canonical else ""
