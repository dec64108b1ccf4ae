"""The Telegram gateway: one MTProto client reading every active Telegram source.

Run by `manage.py telegram_gateway`, one process per session (two clients on one session get
AuthKeyDuplicatedError); Celery tasks never open a client.

Guarantees:
- Reconcile is the source of truth. Each channel is read with
  `iter_messages(peer, min_id=cursor, reverse=True)` every TELEGRAM_RECONCILE_SECONDS, and only
  reconcile advances Source.cursor. Telegram drops live updates now and then; the next reconcile
  fetches whatever was missed.
- Live updates (new, edited and deleted messages) only lower the latency. They store posts at
  once but leave the cursor alone, so a post seen live never hides an earlier one that was not.
  Storing is idempotent (feeds.services.ingest): reconcile storing the same post again is a no-op.
- A username is resolved once, on the source's first cycle, and the channel id + access hash are
  stored; after that only ids are used (ResolveUsername is the flood trap). Resolves are spaced
  RESOLVE_SPACING_SECONDS apart, at most RESOLVE_PER_CYCLE per cycle.
- FloodWait: the work that hit it (one channel's reads, or all resolving) is deferred until the
  wait is over and never tried earlier, across restarts too (the deadline is kept in the cache).
  Other channels carry on.
- Albums are one post (feeds.telegram.mapping). Their parts arrive as separate updates, so live
  parts are buffered per grouped_id until ALBUM_WINDOW_SECONDS pass without a new part; a late part
  or a caption edit re-stores the whole album under the same id (its smallest message id).
- Edits update stored posts only (an edit of a post never stored is not news); the service
  re-queues processing only when the title or text changed. Deletions set RawPost.deleted_at
  (an album's, when its first part is deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from telethon import errors, events, utils
from telethon.tl.types import InputPeerChannel, Message, PeerChannel

from feeds import services
from feeds.models import Source, SourceKind, telegram_username
from feeds.telegram.mapping import entry_for, group_messages, is_post

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Messages read per channel and cycle, oldest first: two GetHistory requests. A channel further
# behind catches up over the following cycles.
RECONCILE_LIMIT = 200
# A source's first read: its newest posts, not its whole history.
INITIAL_LIMIT = 50
# How often the source list is re-read and due work done (sources added while running are
# picked up within this); each channel's reads still happen once per TELEGRAM_RECONCILE_SECONDS.
TICK_SECONDS = 10.0
ALBUM_WINDOW_SECONDS = 1.0
# Albums remembered after they were stored, for late parts and caption edits.
ALBUM_MEMORY = 512
# An album has at most 10 parts: an edited part's siblings are within 9 ids of it.
ALBUM_SPAN = 9
RESOLVE_SPACING_SECONDS = 5.0
RESOLVE_PER_CYCLE = 10
# A name that resolved to nothing (or to a user) is tried again this much later.
RESOLVE_RETRY_SECONDS = 24 * 3600
RESOLVE = "resolve"

Db = Callable[..., Awaitable[Any]]


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """ORM work from the event loop, on Django's sync thread, with fresh connections (a
    long-lived process must not keep a connection the database has dropped)."""

    def call() -> T:
        _close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            _close_old_connections()

    return await sync_to_async(call, thread_sensitive=True)()


def _close_old_connections() -> None:
    # django.db.close_old_connections, except for a connection inside a transaction (a caller's,
    # such as a test's): closing it would end that transaction.
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


@dataclass(frozen=True)
class Channel:
    source_id: int
    username: str
    channel_id: int | None
    access_hash: int | None
    cursor: int

    @property
    def peer(self) -> InputPeerChannel:
        assert self.channel_id is not None and self.access_hash is not None
        return InputPeerChannel(channel_id=self.channel_id, access_hash=self.access_hash)

    @property
    def flood_key(self) -> str:
        return f"channel:{self.source_id}"


def load_channels() -> list[Channel]:
    """Active Telegram sources, as the gateway needs them."""
    rows = (
        Source.objects.filter(kind=SourceKind.TELEGRAM, active=True)
        .order_by("id")
        .values_list("id", "url", "tg_channel_id", "tg_access_hash", "cursor")
    )
    return [
        Channel(
            source_id=source_id,
            username=telegram_username(url),
            channel_id=channel_id if access_hash is not None else None,
            access_hash=access_hash,
            cursor=cursor or 0,
        )
        for source_id, url, channel_id, access_hash, cursor in rows
    ]


class FloodGate:
    """Deadlines before which some work must not be tried again (Telegram's FloodWait).

    Kept in memory and in the cache, so a gateway restarted (or crash-looping) during a long
    wait waits it out too. `clock` is wall-clock seconds, comparable across processes.
    """

    def __init__(self, clock: Callable[[], float], *, persist: bool = True) -> None:
        self._clock = clock
        self._persist = persist
        self._until: dict[str, float] = {}
        self._checked: set[str] = set()

    def remaining(self, key: str) -> float:
        if self._persist and key not in self._checked:
            self._checked.add(key)
            stored = self._cache_get(key)
            if stored is not None:
                self._until[key] = max(self._until.get(key, 0.0), stored)
        return max(0.0, self._until.get(key, 0.0) - self._clock())

    def defer(self, key: str, seconds: float) -> float:
        until = self._clock() + seconds
        self._until[key] = until
        self._checked.add(key)
        if self._persist:
            try:
                cache.set(_cache_key(key), until, timeout=int(seconds) + 60)
            except Exception:
                logger.warning("could not keep the FloodWait deadline of %s in the cache", key)
        return until

    def _cache_get(self, key: str) -> float | None:
        try:
            value = cache.get(_cache_key(key))
        except Exception:
            logger.warning("could not read the FloodWait deadline of %s from the cache", key)
            return None
        return float(value) if isinstance(value, int | float) else None


def _cache_key(key: str) -> str:
    return f"telegram:flood:{key}"


@dataclass
class _Album:
    source_id: int
    parts: dict[int, Message] = field(default_factory=dict)
    touched: float = 0.0
    pending: bool = False


class Gateway:
    """Reconcile, live updates and resolving for every active Telegram source on one client.

    `client` is a connected TelegramClient (a fake in tests): the gateway calls
    `get_input_entity`, `iter_messages` and `add_event_handler`/`remove_event_handler` on it.
    """

    def __init__(
        self,
        client: Any,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reconcile_seconds: float | None = None,
        album_window: float = ALBUM_WINDOW_SECONDS,
        resolve_spacing: float = RESOLVE_SPACING_SECONDS,
        persist_deferrals: bool = True,
        db: Db = run_db,
    ) -> None:
        self.client = client
        self.flood = FloodGate(clock, persist=persist_deferrals)
        self.reconcile_seconds = float(reconcile_seconds or settings.TELEGRAM_RECONCILE_SECONDS)
        self._clock = clock
        self._sleep = sleep
        self._album_window = album_window
        self._resolve_spacing = resolve_spacing
        self._db = db
        self._channels: dict[int, Channel] = {}  # by source id
        self._by_peer: dict[int, list[int]] = {}  # channel id -> source ids
        self._due: dict[int, float] = {}  # source id -> when its next reconcile is due
        self._resolve_failed: dict[int, tuple[str, float]] = {}  # source id -> (name, retry at)
        self._albums: OrderedDict[int, _Album] = OrderedDict()  # by grouped_id
        self._handlers: list[tuple[Callable[..., Any], Any]] = []

    # --- the process -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set: a tick every TICK_SECONDS, live updates in between."""
        await self._tick_logged()
        self.register()
        flusher = asyncio.create_task(self._flush_loop(stop), name="telegram-albums")
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=TICK_SECONDS)
                if not stop.is_set():
                    await self._tick_logged()
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            self.unregister()
            await self.flush_albums(force=True)

    def register(self) -> None:
        # No chats= filter: it is resolved once at registration, and sources change at runtime.
        for callback, event in (
            (self.on_new_message, events.NewMessage()),
            (self.on_message_edited, events.MessageEdited()),
            (self.on_message_deleted, events.MessageDeleted()),
        ):
            self.client.add_event_handler(callback, event)
            self._handlers.append((callback, event))

    def unregister(self) -> None:
        for callback, event in self._handlers:
            self.client.remove_event_handler(callback, event)
        self._handlers.clear()

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except Exception:
            # The database or the connection is away: the next tick tries again.
            logger.exception("telegram gateway tick failed")

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(min(0.25, self._album_window / 2))
            await self.flush_albums()

    # --- reconcile ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Re-read the source list, resolve names not resolved yet, reconcile due channels."""
        self._remember(await self._db(load_channels))
        await self.resolve_pending()
        for channel in list(self._channels.values()):
            if channel.channel_id is None:
                continue
            if self._due.get(channel.source_id, 0.0) > self._clock():
                continue
            try:
                await self.reconcile(channel)
            except Exception:
                # Not retried before its next cycle: a message we fail on must not turn into
                # a history read every tick (flood budget). The other channels carry on.
                logger.exception("telegram: reconcile of @%s failed", channel.username)
                self._due[channel.source_id] = self._clock() + self.reconcile_seconds

    def _remember(self, channels: Sequence[Channel]) -> None:
        self._channels = {c.source_id: c for c in channels}
        self._by_peer = {}
        for channel in channels:
            if channel.channel_id is not None:
                self._by_peer.setdefault(channel.channel_id, []).append(channel.source_id)
        for source_id in set(self._due) - set(self._channels):
            del self._due[source_id]

    async def reconcile(self, channel: Channel) -> None:
        """Store the channel's posts newer than its cursor and advance the cursor past them."""
        wait = self.flood.remaining(channel.flood_key)
        if wait > 0:
            self._due[channel.source_id] = self._clock() + wait
            return
        try:
            messages = await self._read_history(channel)
        except errors.FloodWaitError as exc:
            self._due[channel.source_id] = self._flooded(
                channel.flood_key, exc, f"reading @{channel.username}"
            )
            return
        except errors.RPCError as exc:
            # ChannelPrivateError, ChannelInvalidError...: the curator sees it in the log.
            logger.warning(
                "telegram: reading @%s (source %s) failed: %s",
                channel.username,
                channel.source_id,
                exc,
            )
            self._due[channel.source_id] = self._clock() + self.reconcile_seconds
            return
        cursor = max((m.id for m in messages), default=None)
        groups = group_messages(messages)
        entries = [entry_for(group, username=channel.username) for group in groups]
        stored = await self._db(
            services.ingest, source_id=channel.source_id, entries=entries, cursor=cursor
        )
        if cursor is not None and cursor > channel.cursor:
            self._channels[channel.source_id] = replace(channel, cursor=cursor)
        self._due[channel.source_id] = self._clock() + self.reconcile_seconds
        logger.info(
            "telegram: reconciled @%s (source %s): %s messages, %s new, %s edited, cursor %s",
            channel.username,
            channel.source_id,
            len(messages),
            len(stored.new_ids),
            len(stored.edited_ids),
            cursor if cursor is not None else channel.cursor,
        )

    async def _read_history(self, channel: Channel) -> list[Any]:
        """Messages after the cursor, oldest first (service messages included: they move the
        cursor). An album is never split: one cut by the read limit is left for the next cycle,
        where it is read whole, so its id (smallest part) stays the same."""
        if channel.cursor > 0:
            limit = RECONCILE_LIMIT
            fetched = [
                m
                async for m in self.client.iter_messages(
                    channel.peer, limit=limit, min_id=channel.cursor, reverse=True
                )
            ]
        else:
            # reverse=True from 0 would start at the channel's first post, years ago.
            limit = INITIAL_LIMIT
            fetched = [m async for m in self.client.iter_messages(channel.peer, limit=limit)]
        full = len(fetched) >= limit
        messages = sorted(
            (m for m in fetched if m is not None and m.id > channel.cursor), key=lambda m: m.id
        )
        if full and messages:
            messages = _drop_cut_album(messages, newest=channel.cursor > 0)
        return messages

    # --- resolving ----------------------------------------------------------------------------

    async def resolve_pending(self) -> None:
        """Resolve, spaced out, the names of sources that have no channel id yet."""
        now = self._clock()
        pending = [c for c in self._channels.values() if self._may_resolve(c, now)]
        for number, channel in enumerate(pending[:RESOLVE_PER_CYCLE]):
            if self.flood.remaining(RESOLVE) > 0:
                return
            if number:
                await self._sleep(self._resolve_spacing)
            await self._resolve(channel)

    def _may_resolve(self, channel: Channel, now: float) -> bool:
        if channel.channel_id is not None or not channel.username:
            return False
        failed = self._resolve_failed.get(channel.source_id)
        # A failed name waits RESOLVE_RETRY_SECONDS; a source whose URL changed is tried at once.
        return failed is None or failed[0] != channel.username or failed[1] <= now

    async def _resolve(self, channel: Channel) -> None:
        try:
            peer = await self.client.get_input_entity(channel.username)
        except errors.FloodWaitError as exc:
            self._flooded(RESOLVE, exc, f"resolving @{channel.username}")
            return
        except (ValueError, TypeError, errors.RPCError) as exc:
            # UsernameNotOccupiedError, UsernameInvalidError, "No user has ... as username".
            await self._resolve_failed_for(channel, f"cannot be resolved ({exc})")
            return
        if not isinstance(peer, InputPeerChannel):
            await self._resolve_failed_for(channel, f"is not a channel ({type(peer).__name__})")
            return
        await self._db(
            services.set_telegram_identity,
            source_id=channel.source_id,
            channel_id=peer.channel_id,
            access_hash=peer.access_hash,
        )
        resolved = replace(channel, channel_id=peer.channel_id, access_hash=peer.access_hash)
        self._channels[channel.source_id] = resolved
        self._by_peer.setdefault(peer.channel_id, []).append(channel.source_id)
        self._resolve_failed.pop(channel.source_id, None)
        logger.info(
            "telegram: @%s (source %s) is channel %s",
            channel.username,
            channel.source_id,
            peer.channel_id,
        )

    async def _resolve_failed_for(self, channel: Channel, why: str) -> None:
        retry_at = self._clock() + RESOLVE_RETRY_SECONDS
        self._resolve_failed[channel.source_id] = (channel.username, retry_at)
        # Shown on the source, as the web preview's "private or does not exist" would be.
        await self._db(
            services.record_source_error,
            source_id=channel.source_id,
            status="not_a_feed",
            error=f"Telegram: @{channel.username} {why}",
        )
        logger.warning(
            "telegram: @%s (source %s) %s; trying again in %d h",
            channel.username,
            channel.source_id,
            why,
            RESOLVE_RETRY_SECONDS // 3600,
        )

    def _flooded(self, key: str, exc: errors.FloodWaitError, what: str) -> float:
        until = self.flood.defer(key, exc.seconds)
        logger.warning(
            "telegram: FloodWait of %s s while %s; deferred until then (%s)", exc.seconds, what, key
        )
        return until

    # --- live updates ------------------------------------------------------------------------

    async def on_new_message(self, event: Any) -> None:
        try:
            message = event.message
            for channel in self._channels_of(event):
                if not is_post(message):
                    continue
                if message.grouped_id:
                    self._add_album_part(channel, message)
                else:
                    await self._store_live(channel, [message])
        except Exception:
            logger.exception("telegram: storing a new message failed (reconcile will)")

    async def on_message_edited(self, event: Any) -> None:
        """Store the new content of a stored post. An edit of a post we never stored (older than
        the source, or not read yet) is not a new post: reconcile reads unread ones as they are
        now, and a years-old post edited today must not appear in feeds as news."""
        try:
            message = event.message
            for channel in self._channels_of(event):
                if not is_post(message):
                    continue
                if message.grouped_id in self._albums:
                    self._add_album_part(channel, message)
                    continue
                # An album is stored under its smallest id, up to ALBUM_SPAN before this one.
                span = ALBUM_SPAN if message.grouped_id else 0
                candidates = [str(i) for i in range(max(1, message.id - span), message.id + 1)]
                known = await self._db(services.known_external_ids, channel.source_id, candidates)
                if not known:
                    continue
                if not message.grouped_id:
                    await self._store_live(channel, [message])
                elif await self._load_album(channel, message):
                    self._add_album_part(channel, message)
        except Exception:
            logger.exception("telegram: storing an edited message failed")

    async def on_message_deleted(self, event: Any) -> None:
        try:
            ids = [str(i) for i in event.deleted_ids]
            for channel in self._channels_of(event):
                count = await self._db(
                    services.record_deletions, source_id=channel.source_id, external_ids=ids
                )
                logger.info("telegram: @%s deleted %s (%s stored)", channel.username, ids, count)
        except Exception:
            logger.exception("telegram: recording deleted messages failed")

    def _channels_of(self, event: Any) -> list[Channel]:
        """The sources reading the chat an update is about ([] for chats we do not read)."""
        chat_id = event.chat_id
        if chat_id is None:
            return []
        bare, kind = utils.resolve_id(chat_id)
        if kind is not PeerChannel:
            return []
        return [self._channels[s] for s in self._by_peer.get(bare, []) if s in self._channels]

    async def _store_live(self, channel: Channel, messages: list[Message]) -> None:
        entry = entry_for(messages, username=channel.username)
        # No cursor: only reconcile advances it (see the module docstring).
        await self._db(services.ingest, source_id=channel.source_id, entries=[entry])

    # --- albums ---------------------------------------------------------------------------------

    def _add_album_part(self, channel: Channel, message: Message) -> None:
        grouped_id = message.grouped_id
        album = self._albums.get(grouped_id)
        if album is None or album.source_id != channel.source_id:
            album = self._albums[grouped_id] = _Album(source_id=channel.source_id)
        album.parts[message.id] = message
        album.touched = self._clock()
        album.pending = True
        self._albums.move_to_end(grouped_id)
        while len(self._albums) > ALBUM_MEMORY:
            # Forgetting a pending album loses only latency: reconcile stores it.
            self._albums.popitem(last=False)

    async def _load_album(self, channel: Channel, message: Message) -> bool:
        """Read an edited part's siblings (one request) so the album is stored whole."""
        if self.flood.remaining(channel.flood_key) > 0:
            return False
        ids = list(range(max(1, message.id - ALBUM_SPAN), message.id + ALBUM_SPAN + 1))
        try:
            found = [m async for m in self.client.iter_messages(channel.peer, ids=ids)]
        except errors.FloodWaitError as exc:
            what = f"reading an album of @{channel.username}"
            until = self._flooded(channel.flood_key, exc, what)
            self._due[channel.source_id] = max(self._due.get(channel.source_id, 0.0), until)
            return False
        album = self._albums[message.grouped_id] = _Album(source_id=channel.source_id)
        for part in found:
            if is_post(part) and part.grouped_id == message.grouped_id:
                album.parts[part.id] = part
        return True

    async def flush_albums(self, *, force: bool = False) -> int:
        """Store albums that got no new part for ALBUM_WINDOW_SECONDS (all pending ones with
        `force`); return how many were stored."""
        now = self._clock()
        due = [
            album
            for album in self._albums.values()
            if album.pending and (force or now - album.touched >= self._album_window)
        ]
        for album in due:
            album.pending = False
            channel = self._channels.get(album.source_id)
            if channel is None:
                continue
            try:
                await self._store_live(channel, list(album.parts.values()))
            except Exception:
                logger.exception("telegram: storing an album of @%s failed", channel.username)
        return len(due)


def _drop_cut_album(messages: list[Any], *, newest: bool) -> list[Any]:
    """Leave out the album at the end of a full read (`newest`: reading forward from the cursor;
    else reading back from the newest post): the limit may have cut it."""
    edge = messages[-1] if newest else messages[0]
    grouped_id = getattr(edge, "grouped_id", None)
    if not grouped_id:
        return messages
    kept = [m for m in messages if getattr(m, "grouped_id", None) != grouped_id]
    return kept or messages
