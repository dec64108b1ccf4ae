"""Public channels without credentials: the https://t.me/s/<name> web preview.

One page shows the newest ~20 posts. When the source already has a cursor and the page does not
reach back to it, older pages (`?before=<oldest id>`) are read too, at most
TELEGRAM_PREVIEW_MAX_PAGES in all. Posts keep the gateway's identity (feeds.telegram.mapping):
the message id (an album's smallest), https://t.me/<username>/<id>, the first line as title.

A page whose layout we do not recognise, a private channel and a channel that does not exist end
as `NotAFeed` with a message the curator can act on; a real channel with no posts is 0 entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

import lxml.html
from django.conf import settings
from lxml.etree import ParserError

from feeds.fetcher import fetch
from feeds.parsing import NotAFeed, ParsedEntry, make_entry
from feeds.readers import Known, ReadResult
from feeds.sanitize import html_to_text, sanitize_html
from feeds.telegram.mapping import PUBLIC_BASE, make_title, post_link

if TYPE_CHECKING:
    from feeds.models import Source

ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_PRIVATE = "channel is private or does not exist"
_LAYOUT = "t.me preview layout not recognised"
_MAX_ID_DIGITS = 19  # 2**63 - 1 has 19 digits


@dataclass
class PreviewPage:
    title: str = ""
    entries: list[ParsedEntry] = field(default_factory=list)
    # Every message id on the page, service messages and album parts included.
    ids: list[int] = field(default_factory=list)


def read_preview(source: Source, known: Known) -> ReadResult:
    """Read a Telegram source from its web preview (the reader for kind "telegram").

    `known` is not needed: a page costs one request whatever is stored, and re-reading stored
    posts is how edits are seen in this mode. ReadResult.cursor is the highest message id seen.
    """
    username = preview_username(source.telegram_username)
    cursor = source.cursor or 0
    user_agent = source.user_agent or None
    read = ReadResult(site_url=f"{PUBLIC_BASE}{username}")
    entries: dict[str, ParsedEntry] = {}
    seen: list[int] = []
    before: int | None = None
    for page_number in range(1, settings.TELEGRAM_PREVIEW_MAX_PAGES + 1):
        url = preview_url(username, before=before)
        result = fetch(url, user_agent=user_agent, accept=ACCEPT)
        read.bytes_received += len(result.body)
        if page_number == 1:
            read.http_status = result.status_code
            read.min_interval = result.cache_seconds
        if not _still_on_preview(result.url):
            raise NotAFeed(f"{_PRIVATE}: t.me/s/{username} redirected to {result.url}")
        page = parse_preview(result.body, username=username)
        read.title = read.title or page.title
        for entry in page.entries:
            entries.setdefault(entry.external_id, entry)
        seen.extend(page.ids)
        if not page.ids or cursor <= 0:
            break
        oldest = min(page.ids)
        # Caught up when the page reaches the cursor (or stops going back).
        if oldest <= cursor + 1 or (before is not None and oldest >= before):
            break
        before = oldest
    read.entries = sorted(entries.values(), key=lambda e: int(e.external_id))
    read.cursor = max(seen) if seen else None
    return read


def preview_username(name: str) -> str:
    """The channel name if it can have a public preview; NotAFeed otherwise (invite links,
    t.me/c/<id> links of private channels)."""
    if not (4 <= len(name) <= 32 and set(name) <= _USERNAME_CHARS):
        raise NotAFeed(
            f"{name or 'the URL'!r} is not a public channel name: use https://t.me/<name> "
            "(invite links and t.me/c/ links need the Telegram gateway)"
        )
    return name


def preview_url(username: str, *, before: int | None = None) -> str:
    base = settings.TELEGRAM_PREVIEW_BASE_URL
    base = base if base.endswith("/") else base + "/"
    url = base + quote(username)
    return f"{url}?before={before}" if before else url


def _still_on_preview(final_url: str) -> bool:
    # t.me answers the preview of a private or unknown channel with a redirect to t.me/<name>.
    base_path = urlsplit(settings.TELEGRAM_PREVIEW_BASE_URL).path.rstrip("/") + "/"
    return urlsplit(final_url).path.startswith(base_path)


def parse_preview(body: bytes, *, username: str) -> PreviewPage:
    """Posts of one t.me/s page, oldest first; service messages skipped."""
    try:
        doc = lxml.html.document_fromstring(body)
    except (ParserError, ValueError) as exc:
        raise NotAFeed(f"{_LAYOUT}: the page is not HTML ({exc})") from exc
    history = _first(doc, ".tgme_channel_history")
    info = _first(doc, ".tgme_channel_info")
    if history is None and _first(doc, ".tgme_page") is not None:
        # The landing page t.me/<name>: a private channel, a user or a name nobody has.
        raise NotAFeed(f"{_PRIVATE}: t.me shows no preview for {username!r}")
    if history is None:
        raise NotAFeed(f"{_LAYOUT}: no message list (.tgme_channel_history) on the page")
    if info is None:
        raise NotAFeed(f"{_LAYOUT}: no channel header (.tgme_channel_info) on the page")
    page = PreviewPage(title=_text(_first(info, ".tgme_channel_info_header_title"))[:300])
    bubbles = history.cssselect("div.tgme_widget_message")
    if history.cssselect(".tgme_widget_message_wrap") and not bubbles:
        raise NotAFeed(f"{_LAYOUT}: message wrappers without .tgme_widget_message inside")
    for bubble in bubbles:
        message_id = _post_id(bubble)
        album_ids = _album_ids(bubble)
        page.ids.extend([message_id, *album_ids])
        if _is_service(bubble):
            continue
        page.entries.append(_entry(bubble, username, min([message_id, *album_ids])))
    page.entries.sort(key=lambda e: int(e.external_id))
    return page


def _post_id(bubble: lxml.html.HtmlElement) -> int:
    post = bubble.get("data-post")
    if post is None:
        raise NotAFeed(f"{_LAYOUT}: a message has no data-post attribute")
    _, _, number = post.rpartition("/")
    if not _is_message_id(number):
        raise NotAFeed(f"{_LAYOUT}: data-post={post[:100]!r} is not <channel>/<message id>")
    return int(number)


def _is_message_id(text: str) -> bool:
    # ASCII digits only (str.isdigit also takes "²", which int() refuses), and few enough of
    # them: Telegram's ids are 64-bit, and an id must stay an id once stored (make_entry hashes
    # ids over 512 characters, and int() refuses over 4300 digits).
    return text.isascii() and text.isdigit() and len(text) <= _MAX_ID_DIGITS


def _album_ids(bubble: lxml.html.HtmlElement) -> list[int]:
    """Ids of an album's parts: each part links to https://t.me/<name>/<id>?single."""
    ids = []
    for link in bubble.cssselect(".tgme_widget_message_grouped_wrap a[href]"):
        try:
            path = urlsplit(link.get("href", "")).path
        except ValueError:  # e.g. an unbalanced "[" in the host
            continue
        last = path.rstrip("/").rpartition("/")[2]
        if _is_message_id(last):
            ids.append(int(last))
    return ids


def _is_service(bubble: lxml.html.HtmlElement) -> bool:
    classes = set(bubble.get("class", "").split())
    return bool(classes & {"service_message", "tgme_widget_message_service"}) or bool(
        bubble.cssselect(".tgme_widget_message_service")
    )


def _entry(bubble: lxml.html.HtmlElement, username: str, message_id: int) -> ParsedEntry:
    text_html = sanitize_html(_inner_html(_message_text(bubble), username))
    text = html_to_text(text_html)
    media = _media_html(bubble)
    return make_entry(
        guid=str(message_id),
        url=post_link(username, message_id),
        title=make_title(text),
        text=text,
        html=sanitize_html(
            media + (f"<p>{text_html}</p>" if text_html else "") + _link_preview_html(bubble)
        ),
        author=_text(_first(bubble, ".tgme_widget_message_from_author")),
        published_at=_date(bubble),
    )


def _message_text(bubble: lxml.html.HtmlElement) -> lxml.html.HtmlElement | None:
    # The post's own text, not the quoted text of the post it replies to.
    for node in bubble.cssselect(".tgme_widget_message_text"):
        if not any(
            "tgme_widget_message_reply" in (a.get("class") or "") for a in node.iterancestors()
        ):
            return node
    return None


def _inner_html(node: lxml.html.HtmlElement | None, username: str) -> str:
    if node is None:
        return ""
    page = f"{PUBLIC_BASE}s/{username}"
    for emoji in node.cssselect("i.emoji"):
        # <i class="emoji" style="background-image:..."><b>😀</b></i>: keep the character only.
        for inner in emoji.cssselect("b"):
            inner.drop_tag()
        emoji.drop_tag()
    for link in node.cssselect("a[href]"):
        # Since 2024 t.me escapes & twice in hrefs; hashtags link relative to the page.
        try:
            link.set("href", urljoin(page, link.get("href", "").replace("&amp;", "&")))
        except ValueError:  # a control character lxml refuses, or a host urljoin cannot parse
            del link.attrib["href"]
    parts = [escape(node.text or "", quote=False)]
    parts.extend(lxml.html.tostring(child, encoding="unicode") for child in node)
    return "".join(parts)


def _media_html(bubble: lxml.html.HtmlElement) -> str:
    """Photos (album parts included) and video thumbnails, as images."""
    images = []
    for node in bubble.cssselect(
        "a.tgme_widget_message_photo_wrap, .tgme_widget_message_video_thumb"
    ):
        src = _background_image(node.get("style", ""))
        if src:
            images.append(f'<p><img src="{escape(src)}" alt=""></p>')
    return "".join(images)


def _link_preview_html(bubble: lxml.html.HtmlElement) -> str:
    preview = _first(bubble, "a.tgme_widget_message_link_preview")
    if preview is None:
        return ""
    href = preview.get("href", "").replace("&amp;", "&")
    title = _text(_first(preview, ".link_preview_title")) or _text(
        _first(preview, ".link_preview_site_name")
    )
    description = _text(_first(preview, ".link_preview_description"))
    out = f'<blockquote><p><a href="{escape(href)}">{escape(title or href)}</a></p>'
    if description:
        out += f"<p>{escape(description)}</p>"
    return out + "</blockquote>"


def _background_image(style: str) -> str:
    """The URL in a style's background-image:url('...'), if it is http(s)."""
    _, found, rest = style.partition("background-image:url(")
    if not found:
        return ""
    url = rest.partition(")")[0].strip().strip("'\"")
    if url.startswith("//"):
        url = "https:" + url
    return url if url.startswith(("https://", "http://")) else ""


def _date(bubble: lxml.html.HtmlElement) -> datetime | None:
    node = _first(bubble, ".tgme_widget_message_date time[datetime]")
    if node is None:
        node = _first(bubble, ".tgme_widget_message_meta time[datetime]")
    if node is None:
        return None
    try:
        value = datetime.fromisoformat(node.get("datetime", "").replace("Z", "+00:00"))
        # An offset can move the time past year 9999 or before year 1 (OverflowError).
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _first(node: lxml.html.HtmlElement, selector: str) -> lxml.html.HtmlElement | None:
    found = node.cssselect(selector)
    return found[0] if found else None


def _text(node: lxml.html.HtmlElement | None) -> str:
    return " ".join(node.text_content().split()) if node is not None else ""
