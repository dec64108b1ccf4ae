"""Telethon messages to `ParsedEntry`: pure functions, no client, no network.

`Message.text` needs a client (it is rendered with the client's parse mode), so the HTML is
rendered here from `.message` + `.entities`. The plain text is derived from that HTML the same way
the t.me reader derives it from the preview's HTML (`html_to_text`), so one message read in
either mode has the same text, title and content hash: switching modes is not an edit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from telethon.extensions import html as telethon_html
from telethon.tl.types import (
    Message,
    MessageMediaDocument,
    MessageMediaPhoto,
    MessageMediaWebPage,
    WebPage,
)

from feeds.parsing import ParsedEntry, make_entry
from feeds.sanitize import html_to_text, sanitize_html

TITLE_MAX = 120
PUBLIC_BASE = "https://t.me/"
# A sentence ends at . ! ? or … followed by a space (plain text, not HTML).
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s")


def post_link(username: str, message_id: int) -> str:
    """The public link of a channel post: https://t.me/<username>/<id>."""
    return f"{PUBLIC_BASE}{username}/{message_id}"


def make_title(text: str) -> str:
    """The first non-empty line; when it is longer than TITLE_MAX, its first sentence if that
    fits, else the line cut at a word boundary with an ellipsis."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) <= TITLE_MAX:
        return first
    sentence = _SENTENCE_END.split(first, maxsplit=1)[0]
    if len(sentence) <= TITLE_MAX:
        return sentence
    cut = first[: TITLE_MAX - 1]
    if " " in cut[TITLE_MAX // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-\u2013\u2014") + "…"


def message_html(message: Message) -> str:
    """The message text with its entities (bold, italic, code, links...) as unsanitized HTML;
    line breaks stay newlines."""
    return telethon_html.unparse(message.message or "", message.entities or [])


def is_post(message: object) -> bool:
    """A real message (not a service message, an empty slot or a deleted id)."""
    return isinstance(message, Message)


def group_messages(messages: Iterable[object]) -> list[list[Message]]:
    """Posts in ascending id order, each a list of messages: one message, or every message of an
    album (same grouped_id) however the album's parts are interleaved in the input."""
    groups: dict[tuple[str, int], list[Message]] = {}
    for message in messages:
        if not is_post(message):
            continue
        assert isinstance(message, Message)
        key = ("album", message.grouped_id) if message.grouped_id else ("single", message.id)
        groups.setdefault(key, []).append(message)
    posts = [sorted(parts, key=lambda m: m.id) for parts in groups.values()]
    return sorted(posts, key=lambda parts: parts[0].id)


def entry_for(messages: Sequence[Message], *, username: str) -> ParsedEntry:
    """One raw-post entry for a message or an album's messages.

    An album's id, link and date are its smallest message's; its caption is the text of
    whichever message has one (Telegram puts it on one message, usually the first).
    """
    parts = sorted(messages, key=lambda m: m.id)
    if not parts:
        raise ValueError("entry_for needs at least one message")
    first = parts[0]
    captioned = next((m for m in parts if (m.message or "").strip()), first)
    link = post_link(username, first.id)
    marked = message_html(captioned)
    text = html_to_text(marked)
    body = marked.replace("\n", "<br>") if marked else ""
    extra = _media_html(parts, link)
    author = next((m.post_author for m in parts if m.post_author), "") or ""
    return make_entry(
        guid=str(first.id),
        url=link,
        title=make_title(text),
        text=text,
        html=sanitize_html(f"<p>{body}</p>{extra}" if body else extra),
        author=author,
        published_at=_utc(first.date),
    )


def _media_html(parts: Sequence[Message], link: str) -> str:
    """What the post carries besides its text. Media are not downloaded (that costs flood
    budget); the post's link leads to them. A link preview's title and description are kept."""
    photos = sum(isinstance(m.media, MessageMediaPhoto) for m in parts)
    files = sum(isinstance(m.media, MessageMediaDocument) for m in parts)
    out = []
    if photos or files:
        what = []
        if photos:
            what.append("1 photo" if photos == 1 else f"{photos} photos")
        if files:
            what.append("1 video or file" if files == 1 else f"{files} videos or files")
        out.append(f'<p><a href="{escape(link)}">{escape(" and ".join(what))} on Telegram</a></p>')
    for message in parts:
        media = message.media
        if isinstance(media, MessageMediaWebPage) and isinstance(media.webpage, WebPage):
            page = media.webpage
            title = escape(page.title or page.display_url or page.url)
            description = f"<p>{escape(page.description)}</p>" if page.description else ""
            out.append(
                f'<blockquote><p><a href="{escape(page.url)}">{title}</a></p>'
                f"{description}</blockquote>"
            )
    return "".join(out)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
