"""The Telegram gateway, driven by real Telethon message objects built offline.

Telegram's servers are replaced at the network boundary only: `FakeTelegram` implements the
client methods the gateway calls (get_input_entity, iter_messages, add/remove_event_handler)
over an in-memory channel history, and raises real `FloodWaitError`s where a test asks. The
database, the services and the mapping are the real ones. Time is a `Clock` the tests move; no
test sleeps. Async code runs under `async_to_sync`, so the ORM calls the gateway makes run on
the test's own thread and connection (inside the test transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from telethon import errors, events
from telethon.tl.types import (
    Document,
    DocumentAttributeVideo,
    InputPeerChannel,
    InputPeerUser,
    Message,
    MessageActionPinMessage,
    MessageEntityBold,
    MessageEntityHashtag,
    MessageEntityItalic,
    MessageEntityUrl,
    MessageMediaDocument,
    MessageMediaPhoto,
    MessageMediaWebPage,
    MessageService,
    PeerChannel,
    Photo,
    PhotoSize,
    WebPage,
)

from feeds import services
from feeds.models import RawPost, Source, SourceKind
from feeds.telegram import gateway as gateway_module
from feeds.telegram.gateway import INITIAL_LIMIT, RECONCILE_LIMIT, Gateway
from feeds.telegram.mapping import entry_for, group_messages

pytestmark = pytest.mark.django_db

CHANNEL_ID = 1234567890
ACCESS_HASH = -6618375926114419621
OTHER_ID = 2233445566
OTHER_HASH = 4411223344556677
PEER = PeerChannel(channel_id=CHANNEL_ID)
OTHER_PEER = PeerChannel(channel_id=OTHER_ID)
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
START = 1_750_000_000.0  # the fake clock's "now" at the start of each test (epoch seconds)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telegram"


# --- Telethon objects, built offline ------------------------------------------------------------


def message(
    id: int,
    text: str = "",
    *,
    peer: PeerChannel = PEER,
    entities: list[Any] | None = None,
    grouped_id: int | None = None,
    media: Any = None,
    minutes: float | None = None,
    edit_date: datetime | None = None,
    post_author: str | None = None,
) -> Message:
    return Message(
        id=id,
        peer_id=peer,
        date=T0 + timedelta(minutes=id if minutes is None else minutes),
        message=text,
        entities=entities,
        grouped_id=grouped_id,
        media=media,
        post=True,
        views=10,
        forwards=0,
        edit_date=edit_date,
        post_author=post_author,
    )


def photo(n: int = 1) -> MessageMediaPhoto:
    return MessageMediaPhoto(
        photo=Photo(
            id=n,
            access_hash=n * 7,
            file_reference=b"\x01",
            date=T0,
            sizes=[PhotoSize(type="x", w=800, h=600, size=48000)],
            dc_id=2,
        )
    )


def video() -> MessageMediaDocument:
    return MessageMediaDocument(
        document=Document(
            id=77,
            access_hash=78,
            file_reference=b"\x01",
            date=T0,
            mime_type="video/mp4",
            size=9_000_000,
            dc_id=2,
            attributes=[DocumentAttributeVideo(duration=252, w=640, h=360)],
        )
    )


def entities_of(text: str, **spans: tuple[type, str]) -> list[Any]:
    """Entities over the given substrings (ASCII text: UTF-16 offsets are str offsets)."""
    return [kind(offset=text.index(part), length=len(part)) for kind, part in spans.values()]


MARKETS = (
    "Markets rally after rate cut\nThe central bank cut rates by 0.5 points. Read more: "
    "https://example.org/markets?a=1&b=2 #economy"
)
REPORT = "Annual report is out: https://example.org/report"
COUNCIL = (
    "The city council approved the new transit plan today after a six-hour debate. Buses will "
    "run every ten minutes on the main lines from May, and night service returns on weekends "
    "across all districts.\n\nDetails in the thread."
)


def channel_history() -> list[Any]:
    """The messages of tests/fixtures/telegram/channel.html, as the MTProto API returns them."""
    return [
        message(
            101,
            MARKETS,
            entities=entities_of(
                MARKETS,
                bold=(MessageEntityBold, "Markets rally after rate cut"),
                italic=(MessageEntityItalic, "0.5 points"),
                url=(MessageEntityUrl, "https://example.org/markets?a=1&b=2"),
                tag=(MessageEntityHashtag, "#economy"),
            ),
            minutes=0,
        ),
        MessageService(id=102, peer_id=PEER, date=T0, action=MessageActionPinMessage(), post=True),
        message(103, "Photos from the climate summit in Lisbon", grouped_id=9001, media=photo(1)),
        message(104, grouped_id=9001, media=photo(2)),
        message(105, grouped_id=9001, media=photo(3)),
        message(106, COUNCIL, media=photo(4)),
        message(107, "Interview with the mayor 🎥", media=video()),
        message(
            108,
            REPORT,
            entities=entities_of(REPORT, url=(MessageEntityUrl, "https://example.org/report")),
            media=MessageMediaWebPage(
                webpage=WebPage(
                    id=1,
                    url="https://example.org/report",
                    display_url="example.org/report",
                    hash=0,
                    title="Annual report 2024",
                    description="What we did, what it cost and what comes next.",
                )
            ),
            post_author="Anna K.",
        ),
    ]


# --- Telegram's side of the client ---------------------------------------------------------------


class FakeTelegram:
    """The client methods the gateway calls, answered from in-memory channels."""

    def __init__(self) -> None:
        self.channels: dict[int, tuple[int, list[Any]]] = {}  # id -> (access hash, messages)
        self.usernames: dict[str, Any] = {}
        self.floods: dict[str, int] = {}  # "resolve" or "history:<channel id>" -> seconds, once
        self.calls: list[tuple[Any, ...]] = []
        self.handlers: list[tuple[Callable[..., Any], Any]] = []

    def add_channel(self, username: str, channel_id: int, access_hash: int, history: list[Any]):
        self.channels[channel_id] = (access_hash, list(history))
        self.usernames[username] = InputPeerChannel(channel_id, access_hash)

    def post(self, channel_id: int, *messages: Any) -> None:
        self.channels[channel_id][1].extend(messages)

    async def get_input_entity(self, peer: Any) -> Any:
        self.calls.append(("resolve", peer))
        self._maybe_flood("resolve")
        if peer not in self.usernames:
            raise errors.UsernameNotOccupiedError(request=None)
        return self.usernames[peer]

    def iter_messages(
        self,
        entity: Any,
        limit: int | None = None,
        *,
        min_id: int = 0,
        reverse: bool = False,
        ids: list[int] | None = None,
    ) -> AsyncIterator[Any]:
        assert isinstance(entity, InputPeerChannel), entity
        self.calls.append(("history", entity.channel_id, min_id, reverse, limit, ids))

        async def answer() -> AsyncIterator[Any]:
            self._maybe_flood(f"history:{entity.channel_id}")
            access_hash, history = self.channels[entity.channel_id]
            if entity.access_hash != access_hash:
                raise errors.ChannelInvalidError(request=None)
            by_id = {m.id: m for m in history}
            if ids is not None:
                for wanted in ids:
                    yield by_id.get(wanted)
                return
            chosen = sorted((m for m in history if m.id > min_id), key=lambda m: m.id)
            if not reverse:
                chosen.reverse()
            for item in chosen[:limit]:
                yield item

        return answer()

    def add_event_handler(self, callback: Callable[..., Any], event: Any) -> None:
        self.handlers.append((callback, event))

    def remove_event_handler(self, callback: Callable[..., Any], event: Any) -> int:
        self.handlers.remove((callback, event))
        return 1

    def history_calls(self, channel_id: int = CHANNEL_ID) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "history" and c[1] == channel_id]

    def resolve_calls(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "resolve"]

    def _maybe_flood(self, key: str) -> None:
        seconds = self.floods.pop(key, None)
        if seconds is not None:
            raise errors.FloodWaitError(request=None, capture=seconds)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def telegram() -> FakeTelegram:
    fake = FakeTelegram()
    fake.add_channel("infatium_news", CHANNEL_ID, ACCESS_HASH, channel_history())
    fake.add_channel("other_news", OTHER_ID, OTHER_HASH, [message(1, "Hi", peer=OTHER_PEER)])
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def gateway(telegram, clock, slept) -> Gateway:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return Gateway(
        telegram, clock=clock, sleep=sleep, reconcile_seconds=300, persist_deferrals=False
    )


def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a coroutine function; its sync_to_async ORM calls use this thread's connection."""
    return async_to_sync(fn)(*args, **kwargs)


def source(name: str = "infatium_news", *, resolved: bool = True, cursor: int = 0) -> Source:
    ids = {"infatium_news": (CHANNEL_ID, ACCESS_HASH), "other_news": (OTHER_ID, OTHER_HASH)}
    channel_id, access_hash = ids.get(name, (None, None)) if resolved else (None, None)
    return Source.objects.create(
        kind=SourceKind.TELEGRAM,
        url=f"https://t.me/{name}",
        tg_channel_id=channel_id,
        tg_access_hash=access_hash,
        cursor=cursor,
    )


def stored(src: Source) -> dict[str, RawPost]:
    return {r.external_id: r for r in RawPost.objects.filter(source=src).order_by("id")}


# --- mapping --------------------------------------------------------------------------------------


def test_it_maps_a_message_with_entities_to_an_entry():
    entry = entry_for([channel_history()[0]], username="infatium_news")

    assert entry.external_id == "101"
    assert entry.url == "https://t.me/infatium_news/101"
    assert entry.title == "Markets rally after rate cut"
    assert entry.text == MARKETS
    assert entry.published_at == T0
    assert "<strong>Markets rally after rate cut</strong><br>" in entry.html
    assert "<em>0.5 points</em>" in entry.html
    assert (
        '<a href="https://example.org/markets?a=1&amp;b=2" rel="noopener noreferrer nofollow">'
        in entry.html
    )


def test_it_clips_a_long_first_line_to_a_title():
    no_sentence = "word " * 60
    long_sentence = message(1, no_sentence)
    council = entry_for([message(106, COUNCIL)], username="infatium_news")

    title = entry_for([long_sentence], username="c").title
    assert council.title == (
        "The city council approved the new transit plan today after a six-hour debate."
    )
    assert title.endswith("…")
    assert len(title) <= 120
    assert title.startswith("word word")


def test_it_groups_an_album_into_one_post_keyed_by_its_smallest_id():
    parts = [
        message(205, grouped_id=77, media=photo(5)),
        message(200, "Before"),
        message(203, grouped_id=77, media=photo(3)),
        message(204, "Caption on the second part", grouped_id=77, media=photo(4)),
        message(206, "After"),
    ]

    groups = group_messages(parts)
    album = entry_for(groups[1], username="infatium_news")

    assert [[m.id for m in g] for g in groups] == [[200], [203, 204, 205], [206]]
    assert album.external_id == "203"
    assert album.url == "https://t.me/infatium_news/203"
    assert album.text == album.title == "Caption on the second part"
    assert album.published_at == T0 + timedelta(minutes=203)
    assert "3 photos on Telegram" in album.html


# --- resolving ----------------------------------------------------------------------------------


def test_it_resolves_a_new_source_once_and_stores_its_channel(gateway, telegram, clock):
    run(gateway.tick)  # no source yet: nothing to do
    src = source(resolved=False)  # added while the gateway runs

    run(gateway.tick)
    clock.advance(301)
    run(gateway.tick)

    src.refresh_from_db()
    assert (src.tg_channel_id, src.tg_access_hash) == (CHANNEL_ID, ACCESS_HASH)
    assert telegram.resolve_calls() == [("resolve", "infatium_news")]
    # Read at once after resolving: its newest posts, not its whole history.
    first, second = telegram.history_calls()
    assert first == ("history", CHANNEL_ID, 0, False, INITIAL_LIMIT, None)
    assert second == ("history", CHANNEL_ID, 108, True, RECONCILE_LIMIT, None)


def test_a_name_that_does_not_resolve_is_not_asked_again_soon(gateway, telegram, clock):
    missing = source("no_such_channel_42", resolved=False)

    run(gateway.tick)
    clock.advance(3600)
    run(gateway.tick)
    clock.advance(gateway_module.RESOLVE_RETRY_SECONDS)
    run(gateway.tick)

    assert telegram.resolve_calls() == [("resolve", "no_such_channel_42")] * 2
    missing.refresh_from_db()
    assert missing.tg_channel_id is None
    # The curator sees why on the source, as with the web preview.
    assert missing.last_status == "not_a_feed"
    assert missing.last_error.startswith("Telegram: @no_such_channel_42 cannot be resolved")


def test_a_flood_wait_on_resolving_defers_all_resolving_until_it_is_over(
    gateway, telegram, clock, slept
):
    source(resolved=False)
    source("other_news", resolved=False)
    telegram.floods["resolve"] = 60

    run(gateway.tick)  # the first resolve hits the wait: the second is not tried
    clock.advance(59)
    run(gateway.tick)
    before = list(telegram.resolve_calls())
    clock.advance(2)
    run(gateway.tick)

    assert before == [("resolve", "infatium_news")]
    assert telegram.resolve_calls() == [
        ("resolve", "infatium_news"),
        ("resolve", "infatium_news"),
        ("resolve", "other_news"),
    ]
    assert slept == [gateway_module.RESOLVE_SPACING_SECONDS]  # resolves are spaced out
    assert Source.objects.filter(tg_channel_id__isnull=False).count() == 2


# --- reconcile ------------------------------------------------------------------------------------


def test_reconcile_stores_only_messages_after_the_cursor_and_is_idempotent(
    gateway, telegram, clock
):
    src = source(cursor=105)

    run(gateway.tick)
    first = stored(src)
    clock.advance(300)
    run(gateway.tick)
    Source.objects.filter(id=src.id).update(cursor=105)  # read the same messages once more
    clock.advance(300)
    run(gateway.tick)

    assert list(first) == ["106", "107", "108"]
    assert stored(src) == first
    assert all(r.edited_at is None for r in first.values())
    assert first["108"].author == "Anna K."
    assert "Annual report 2024" in first["108"].html
    calls = telegram.history_calls()
    assert calls[0] == ("history", CHANNEL_ID, 105, True, RECONCILE_LIMIT, None)
    assert calls[1] == ("history", CHANNEL_ID, 108, True, RECONCILE_LIMIT, None)
    src.refresh_from_db()
    assert src.cursor == 108
    assert src.last_status == "ok"


def test_reconcile_waits_for_its_interval_and_reads_what_was_posted_since(gateway, telegram, clock):
    src = source(cursor=108)
    run(gateway.tick)
    telegram.post(CHANNEL_ID, message(109, "Evening briefing"))

    clock.advance(299)
    run(gateway.tick)
    early = len(telegram.history_calls())
    clock.advance(2)
    run(gateway.tick)

    assert early == 1
    assert list(stored(src)) == ["109"]
    src.refresh_from_db()
    assert src.cursor == 109


def test_an_album_cut_by_the_read_limit_is_stored_whole_on_the_next_cycle(
    gateway, telegram, clock, monkeypatch
):
    monkeypatch.setattr(gateway_module, "RECONCILE_LIMIT", 4)
    src = source(cursor=100)

    run(gateway.tick)  # reads 101-104: the album 103-105 is cut, so left for the next cycle
    after_first = list(stored(src))
    src.refresh_from_db()
    cursor_after_first = src.cursor
    clock.advance(300)
    run(gateway.tick)

    assert after_first == ["101"]
    assert cursor_after_first == 102  # the service message moves the cursor, the cut album not
    assert list(stored(src)) == ["101", "103", "106"]
    assert stored(src)["103"].text == "Photos from the climate summit in Lisbon"


def test_a_flood_wait_defers_that_channel_only_and_never_retries_early(gateway, telegram, clock):
    flooded = source(cursor=108)
    other = source("other_news", cursor=0)
    telegram.floods[f"history:{CHANNEL_ID}"] = 30

    run(gateway.tick)  # flooded: deferred 30 s; the other channel is read all the same
    for _ in range(3):  # ticks inside the wait do not touch the flooded channel
        clock.advance(9.9)
        run(gateway.tick)
    calls_during_wait = len(telegram.history_calls())
    telegram.post(CHANNEL_ID, message(109, "After the wait"))
    clock.advance(0.4)  # 30.1 s after the FloodWait
    run(gateway.tick)

    assert calls_during_wait == 1  # the call that raised, nothing after it
    assert len(telegram.history_calls()) == 2
    assert list(stored(flooded)) == ["109"]
    assert list(stored(other)) == ["1"]
    assert len(telegram.history_calls(OTHER_ID)) == 1  # not due again before 300 s


def test_a_flood_wait_is_kept_across_a_restart_of_the_gateway(telegram, clock, redis_client):
    source(cursor=108)
    telegram.floods[f"history:{CHANNEL_ID}"] = 600
    first = Gateway(telegram, clock=clock, reconcile_seconds=300)
    run(first.tick)

    restarted = Gateway(telegram, clock=clock, reconcile_seconds=300)
    clock.advance(300)
    run(restarted.tick)
    during = len(telegram.history_calls())
    clock.advance(301)
    run(restarted.tick)

    assert during == 1
    assert len(telegram.history_calls()) == 2


def test_switching_from_the_preview_to_the_gateway_creates_no_duplicates(
    gateway, telegram, feed_server, settings
):
    settings.TELEGRAM_PREVIEW_BASE_URL = feed_server.url("/s/")
    feed_server.serve(
        "/s/infatium_news",
        (FIXTURES / "channel.html").read_bytes(),
        content_type="text/html; charset=utf-8",
    )
    src = source()
    claim = services.claim_source_now(source_id=src.id)
    assert claim is not None
    services.poll_source(source_id=src.id, token=claim.token)
    from_preview = {ext: (r.id, r.url, r.content_hash) for ext, r in stored(src).items()}
    # The gateway reads the very same messages (its first read, cursor forgotten) and they
    # arrive live as well.
    Source.objects.filter(id=src.id).update(cursor=0)

    run(gateway.tick)
    run(gateway.on_new_message, events.NewMessage.Event(channel_history()[-1]))

    after = stored(src)
    assert list(from_preview) == ["101", "103", "106", "107", "108"]
    assert {ext: (r.id, r.url, r.content_hash) for ext, r in after.items()} == from_preview
    assert all(r.edited_at is None for r in after.values())


# --- live updates ---------------------------------------------------------------------------------


def test_a_live_post_is_stored_at_once_but_reconcile_still_reads_what_came_before(
    gateway, telegram, clock
):
    src = source(cursor=100)
    telegram.channels[CHANNEL_ID] = (ACCESS_HASH, [])  # nothing after the cursor yet
    run(gateway.tick)
    # Posts 101-108 come while no update reaches us (Telegram drops some); then 109 does.
    telegram.post(CHANNEL_ID, *channel_history(), message(109, "Breaking: bridge reopened"))

    run(gateway.on_new_message, events.NewMessage.Event(message(109, "Breaking: bridge reopened")))
    live = list(stored(src))
    src.refresh_from_db()
    cursor_after_live = src.cursor
    clock.advance(300)
    run(gateway.tick)

    assert live == ["109"]
    assert cursor_after_live == 100  # a live post never moves the cursor past a gap
    assert sorted(stored(src), key=int) == ["101", "103", "106", "107", "108", "109"]
    src.refresh_from_db()
    assert src.cursor == 109


def test_album_parts_arriving_live_are_stored_as_one_post(gateway, clock):
    src = source(cursor=108)
    run(gateway.tick)
    parts = [
        message(110, grouped_id=4242, media=photo(10)),
        message(111, "Flood barriers going up", grouped_id=4242, media=photo(11)),
    ]

    for part in parts:
        run(gateway.on_new_message, events.NewMessage.Event(part))
    clock.advance(0.5)
    early = run(gateway.flush_albums)
    clock.advance(1.0)
    flushed = run(gateway.flush_albums)
    late = message(112, grouped_id=4242, media=photo(12))  # a part arriving after the flush
    run(gateway.on_new_message, events.NewMessage.Event(late))
    clock.advance(1.0)
    run(gateway.flush_albums)

    assert (early, flushed) == (0, 1)
    posts = stored(src)
    assert list(posts) == ["110"]
    assert posts["110"].text == "Flood barriers going up"
    assert posts["110"].url == "https://t.me/infatium_news/110"


def test_an_edit_updates_the_raw_post_only_when_the_text_changed(gateway, clock):
    src = source(cursor=100)
    run(gateway.tick)
    RawPost.objects.filter(source=src).update(processed_at=timezone.now())
    original = stored(src)["106"]
    edited_at = T0 + timedelta(hours=2)

    same_text = message(106, COUNCIL, media=photo(4), edit_date=edited_at)  # e.g. media changed
    run(gateway.on_message_edited, events.MessageEdited.Event(same_text))
    unchanged = stored(src)["106"]
    new_text = message(106, COUNCIL.replace("six-hour", "seven-hour"), edit_date=edited_at)
    run(gateway.on_message_edited, events.MessageEdited.Event(new_text))
    changed = stored(src)["106"]

    assert (unchanged.edited_at, unchanged.content_hash) == (None, original.content_hash)
    assert unchanged.processed_at is not None  # processing is not re-run
    assert changed.id == original.id
    assert "seven-hour debate" in changed.text
    assert changed.edited_at is not None
    assert changed.processed_at is None  # processing runs again
    assert RawPost.objects.filter(source=src).count() == 5


def test_an_edited_album_caption_is_stored_on_the_album(gateway, telegram):
    src = source(cursor=100)
    run(gateway.tick)
    caption = message(103, "Photos from the climate summit in Porto", grouped_id=9001)

    run(gateway.on_message_edited, events.MessageEdited.Event(caption))
    run(gateway.flush_albums, force=True)

    posts = stored(src)
    assert posts["103"].text == "Photos from the climate summit in Porto"
    assert posts["103"].edited_at is not None
    assert "104" not in posts and "105" not in posts
    # The album's other parts were read by id, once.
    assert telegram.history_calls()[-1][-1] == list(range(94, 113))


def test_an_edit_of_a_post_never_stored_is_not_a_new_post(gateway, telegram):
    src = source(cursor=100)
    run(gateway.tick)
    calls = len(telegram.calls)
    old_post = message(12, "A post from 2019, edited today", edit_date=T0)
    old_album_part = message(14, "An old album's caption", grouped_id=31337, edit_date=T0)

    run(gateway.on_message_edited, events.MessageEdited.Event(old_post))
    run(gateway.on_message_edited, events.MessageEdited.Event(old_album_part))
    run(gateway.flush_albums, force=True)

    assert sorted(stored(src), key=int) == ["101", "103", "106", "107", "108"]
    assert len(telegram.calls) == calls  # nothing asked of Telegram either


def test_a_deletion_is_recorded_on_the_raw_post(gateway):
    src = source(cursor=100)
    other = source("other_news", cursor=0)
    run(gateway.tick)

    run(gateway.on_message_deleted, events.MessageDeleted.Event(deleted_ids=[101, 999], peer=PEER))
    run(gateway.on_message_deleted, events.MessageDeleted.Event(deleted_ids=[1], peer=None))

    posts = stored(src)
    assert posts["101"].deleted_at is not None
    assert all(r.deleted_at is None for ext, r in posts.items() if ext != "101")
    assert stored(other)["1"].deleted_at is None  # no chat: not ours to guess


def test_updates_from_chats_that_are_not_sources_are_ignored(gateway):
    src = source(cursor=108)
    run(gateway.tick)
    stranger = PeerChannel(channel_id=999)

    run(gateway.on_new_message, events.NewMessage.Event(message(5, "Spam", peer=stranger)))
    run(gateway.on_message_deleted, events.MessageDeleted.Event(deleted_ids=[108], peer=stranger))

    assert not RawPost.objects.filter(source=src).exists()
    assert RawPost.objects.count() == 0


def test_run_registers_its_handlers_and_stops_when_asked(gateway, telegram):
    src = source(cursor=107)
    stop = asyncio.Event()

    async def scenario() -> list[type]:
        running = asyncio.create_task(gateway.run(stop))
        while not telegram.handlers:
            await asyncio.sleep(0)
        kinds = [type(event) for _, event in telegram.handlers]
        stop.set()
        await running
        return kinds

    kinds = run(scenario)

    assert kinds == [events.NewMessage, events.MessageEdited, events.MessageDeleted]
    assert telegram.handlers == []
    assert list(stored(src)) == ["108"]  # the first tick ran before the handlers


# --- the command ----------------------------------------------------------------------------------


def test_the_gateway_command_refuses_to_start_without_credentials(settings):
    settings.TELEGRAM_API_ID = 12345
    settings.TELEGRAM_API_HASH = "0123456789abcdef"
    settings.TELEGRAM_SESSION = ""
    settings.TELEGRAM_GATEWAY_ENABLED = False

    with pytest.raises(CommandError, match=r"needs TELEGRAM_SESSION.*telegram_login"):
        call_command("telegram_gateway")


def test_a_user_is_not_a_channel(gateway, telegram):
    telegram.usernames["some_person"] = InputPeerUser(user_id=5, access_hash=6)
    person = source("some_person", resolved=False)

    run(gateway.tick)

    person.refresh_from_db()
    assert person.tg_channel_id is None
    assert not [c for c in telegram.calls if c[0] == "history"]
