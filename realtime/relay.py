"""The outbox relay: pending events → JetStream, then marked published.

Guarantees:
- At least once: an event is marked published only after JetStream's ack; anything else leaves
  it pending and it is sent again. JetStream drops the second copy of an event_id within the
  stream's duplicate window (NATS_DUPLICATE_WINDOW_SECONDS), so a crash between the ack and
  the UPDATE leaves one stream message.
- Order per ordering key (the source): a batch is published in id order over one connection,
  pipelined (publish_async), and the server stores a connection's messages in the order sent.
  That connection never reconnects by itself (see `jetstream.connect`), so a message lost
  with a dead socket cannot be followed by a later one on a new socket. After such a failure
  the next batch is sent one message at a time, stopping at the first failure. Events after a
  key's first failure in a batch are not marked, even if acked (their copy is then dropped as
  a duplicate on the retry). An event JetStream refuses by itself holds back its key, with
  backoff, and lets every other key through.
- One relay at a time (`RelayLock`): other bridges stand by, so two relays never interleave
  one source's events.
- NATS down: the relay retries with bounded exponential backoff and jitter; events wait in
  the outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from nats.aio.client import Client as NatsClient
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, ServiceUnavailableError

from realtime import jetstream, outbox
from realtime.events import MSG_ID_HEADER

logger = logging.getLogger(__name__)

T = TypeVar("T")

PRUNE_EVERY_SECONDS = 3600.0


async def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM code from the event loop, on Django's one sync thread, with fresh connections
    (a long-lived process must not keep a connection the database has dropped)."""

    def call() -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call, thread_sensitive=True)()


class RelayUnavailable(Exception):
    """NATS could not be reached or did not ack in time; the relay backs off and retries."""


# --- One relay at a time -------------------------------------------------------------------


class RelayLock:
    """Leadership among bridges: PostgreSQL advisory lock on a connection of its own (released
    when the process or its connection dies); with SQLite, an flock on a file in VAR_DIR."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """True when this process holds the lock (taking it if free). Never blocks."""
        if connection.vendor == "postgresql":
            return self._acquire_pg()
        return self._acquire_file()

    def _acquire_pg(self) -> bool:
        import psycopg

        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                # The lock went with the connection; another bridge may hold it by now.
                self.release()
        try:
            conn = psycopg.connect(**_pg_params(), autocommit=True)
        except psycopg.Error as exc:
            logger.warning("relay lock: cannot connect to PostgreSQL: %s", exc)
            return False
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def _acquire_file(self) -> bool:
        if self._file is not None:
            return True
        path = Path(settings.VAR_DIR) / "nats-relay.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()


_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"infatium.outbox.relay").digest()[:8], "big", signed=True
)


def _pg_params() -> dict[str, Any]:
    db_settings = connection.settings_dict
    params = {
        "dbname": db_settings["NAME"],
        "user": db_settings.get("USER") or None,
        "password": db_settings.get("PASSWORD") or None,
        "host": db_settings.get("HOST") or None,
        "port": db_settings.get("PORT") or None,
        "connect_timeout": 5,
    }
    options = {k: v for k, v in (db_settings.get("OPTIONS") or {}).items() if k != "pool"}
    return {**{k: v for k, v in params.items() if v is not None}, **options}


# --- The relay -----------------------------------------------------------------------------


@dataclass
class RelayConfig:
    url: str = ""
    batch: int = 1000
    ack_timeout: float = 10.0
    idle: float = 0.2
    max_backoff: float = 30.0
    keep_seconds: int = 7 * 86400
    limits: jetstream.StreamLimits | None = None

    @classmethod
    def from_settings(cls) -> RelayConfig:
        return cls(
            url=settings.NATS_URL,
            batch=settings.NATS_RELAY_BATCH,
            ack_timeout=settings.NATS_RELAY_ACK_TIMEOUT_SECONDS,
            idle=settings.NATS_RELAY_IDLE_SECONDS,
            max_backoff=settings.NATS_RELAY_MAX_BACKOFF_SECONDS,
            keep_seconds=settings.NATS_OUTBOX_KEEP_SECONDS,
            limits=jetstream.StreamLimits.from_settings(),
        )


@dataclass
class RelayStats:
    published: int = 0
    duplicates: int = 0  # acks for event ids the stream already held
    failures: int = 0
    batches: int = 0
    last_error: str = ""
    extra: dict[str, float] = field(default_factory=dict)


class Relay:
    def __init__(self, config: RelayConfig | None = None, *, lock: RelayLock | None = None):
        self.config = config or RelayConfig.from_settings()
        self.lock = lock or RelayLock()
        self.stats = RelayStats()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        # After a transport failure: one message at a time until a batch goes through whole.
        self._careful = False
        self._next_prune = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; finishes the batch in flight first."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    if not await db(self.lock.acquire):
                        await _wait(stop, max(self.config.idle, 1.0))  # another bridge relays
                        continue
                    published = await self.step()
                    failures = 0
                    await self._maybe_prune()
                    if published < self.config.batch:
                        await _wait(stop, self.config.idle)
                except Exception as exc:
                    failures += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    delay = min(self.config.max_backoff, 0.25 * 2 ** min(failures, 10))
                    delay *= 0.5 + random.random() / 2  # jitter: bridges do not retry in step
                    log = logger.warning if failures <= 3 else logger.debug
                    log("relay: %s; retrying in %.1f s", self.stats.last_error, delay)
                    await self._disconnect()
                    await _wait(stop, delay)
        finally:
            await self._disconnect()
            await db(self.lock.release)

    async def step(self) -> int:
        """Publish one batch of pending events; returns how many were marked published.

        Raises RelayUnavailable (after recording the attempt) when NATS failed the batch.
        """
        rows = await db(outbox.pending_batch, limit=self.config.batch)
        if not rows:
            return 0
        js = await self._jetstream()
        started = time.perf_counter()
        if self._careful:
            results = await self._publish_one_by_one(js, rows)
        else:
            results = await self._publish_pipelined(js, rows)
        published, failed, rejected = _settle(rows, results)
        await db(outbox.mark_published, published)
        transport = [row.id for row, result in zip(rows, results, strict=True) if row.id in failed]
        if transport:
            await db(outbox.mark_failed, transport, error=failed[transport[0]])
        for event_id, error in rejected.items():
            logger.error("relay: JetStream refused event %s: %s", event_id, error)
            await db(outbox.mark_rejected, event_id, error=error)
        self.stats.batches += 1
        self.stats.published += len(published)
        self.stats.duplicates += sum(1 for r in results if isinstance(r, PubAck) and r.duplicate)
        self.stats.extra["last_batch_seconds"] = time.perf_counter() - started
        if transport:
            self.stats.failures += len(transport)
            self._careful = True
            raise RelayUnavailable(failed[transport[0]])
        self._careful = False
        return len(published)

    async def _publish_pipelined(
        self, js: JetStreamContext, rows: list[outbox.Pending]
    ) -> list[PubAck | BaseException | None]:
        futures: list[asyncio.Future[PubAck]] = []
        results: list[PubAck | BaseException | None] = [None] * len(rows)
        refused: set[str] = set()  # keys with an event refused before sending
        for index, row in enumerate(rows):
            if row.ordering_key in refused:
                futures.append(_done(None))  # not sent: it must not overtake the refused one
                continue
            try:
                futures.append(
                    await js.publish_async(
                        row.subject, row.data, headers={MSG_ID_HEADER: str(row.id)}
                    )
                )
            except MaxPayloadError as exc:
                refused.add(row.ordering_key)
                results[index] = exc
                futures.append(_done(exc))
            except Exception as exc:
                # Connection gone: nothing after this point was sent.
                for rest in range(index, len(rows)):
                    results[rest] = exc
                break
        if futures:
            _, pending = await asyncio.wait(futures, timeout=self.config.ack_timeout)
            for future in pending:
                future.cancel()
        for index, future in enumerate(futures):
            if results[index] is not None or rows[index].ordering_key in refused:
                continue
            if future.cancelled():
                results[index] = RelayUnavailable(f"no ack within {self.config.ack_timeout:g} s")
            else:
                results[index] = future.exception() or future.result()
        return results

    async def _publish_one_by_one(
        self, js: JetStreamContext, rows: list[outbox.Pending]
    ) -> list[PubAck | BaseException | None]:
        results: list[PubAck | BaseException | None] = [None] * len(rows)
        refused: set[str] = set()
        for index, row in enumerate(rows):
            if row.ordering_key in refused:
                continue  # not sent: it must not overtake the refused one
            try:
                results[index] = await js.publish(
                    row.subject,
                    row.data,
                    timeout=self.config.ack_timeout,
                    headers={MSG_ID_HEADER: str(row.id)},
                )
            except Exception as exc:
                results[index] = exc
                if not _is_rejection(exc):
                    break  # the rest stays unsent (None): retried after the backoff
                refused.add(row.ordering_key)
        return results

    async def _jetstream(self) -> JetStreamContext:
        if self._nc is None or not self._nc.is_connected or self._js is None:
            await self._disconnect()
            try:
                self._nc = await jetstream.connect(
                    self.config.url, name="infatium-relay", reconnect=False
                )
                self._js = self._nc.jetstream(publish_async_max_pending=max(self.config.batch, 1))
                # Also waits until JetStream has loaded the streams after a server restart:
                # before that, a publish could be refused while the next one is stored.
                await jetstream.ensure_streams(self._js, self.config.limits)
            except Exception as exc:
                await self._disconnect()
                raise RelayUnavailable(
                    f"NATS or its streams not ready: {type(exc).__name__}: {exc}"
                ) from exc
            self._careful = True
        return self._js

    async def _disconnect(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        deleted = await db(outbox.prune_published, older_than_seconds=self.config.keep_seconds)
        if deleted:
            logger.info("relay: pruned %s published outbox events", deleted)


def _is_rejection(exc: BaseException) -> bool:
    """JetStream refused this message itself (as opposed to NATS being unreachable)."""
    if isinstance(exc, MaxPayloadError):
        return True
    return isinstance(exc, APIError) and not isinstance(exc, ServiceUnavailableError)


def _settle(
    rows: list[outbox.Pending], results: list[PubAck | BaseException | None]
) -> tuple[list[Any], dict[Any, str], dict[Any, str]]:
    """Split a batch into (ids to mark published, transport failures, rejections) so that a key
    is marked only up to its first failure."""
    published: list[Any] = []
    failed: dict[Any, str] = {}
    rejected: dict[Any, str] = {}
    blocked: set[str] = set()
    for row, result in zip(rows, results, strict=True):
        if row.ordering_key in blocked:
            continue
        if isinstance(result, PubAck):
            published.append(row.id)
            continue
        blocked.add(row.ordering_key)
        if result is None:
            continue  # not sent (careful mode stopped before it)
        message = f"{type(result).__name__}: {result}"[:2000]
        if _is_rejection(result):
            rejected[row.id] = message
        else:
            failed[row.id] = message
    return published, failed, rejected


def _done(exc: BaseException | None) -> asyncio.Future[PubAck]:
    future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
    if exc is None:
        future.cancel()
    else:
        future.set_exception(exc)
    return future


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
