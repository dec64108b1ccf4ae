"""The transactional outbox: events written with the rows they announce, read by the relay.

`record_*` must run inside the caller's transaction (they refuse otherwise): the event then
exists if and only if the row does, and a rolled-back poll or processing run announces nothing.
The relay (`realtime.relay`) publishes pending events to JetStream with Nats-Msg-Id = event id
and marks them published after the ack.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from infatium.db import bulk_insert
from realtime import events
from realtime.models import DeadLetter, OutboxEvent

if TYPE_CHECKING:
    from feeds.models import RawPost
    from processing.models import Post


class OutsideTransaction(RuntimeError):
    """An event was recorded outside a transaction: it could outlive a rolled-back row."""


def record_raw_posts_created(raw_posts: Sequence[RawPost]) -> list[uuid.UUID]:
    """Write one raw_posts.created event per raw post, in the caller's transaction and order.

    Raw posts too big for NATS_MAX_EVENT_BYTES are announced without `html`, then with `text`
    cut (`truncated: true`). Returns the event ids.
    """
    _require_transaction()
    now = timezone.now()
    rows = []
    for raw in raw_posts:
        event = events.raw_post_created(raw, event_id=events.new_event_id(), occurred_at=now)
        rows.append(_row(event, key=str(raw.source_id), created_at=now))
    bulk_insert(OutboxEvent, rows)
    return [row.id for row in rows]


def record_posts_created(posts: Sequence[Post]) -> list[uuid.UUID]:
    """Write one posts.created event per post, in the caller's transaction and order.

    The posts need `raw_post__source` loaded (select_related) to avoid a query per post.
    """
    _require_transaction()
    now = timezone.now()
    rows = []
    for post in posts:
        event = events.post_created(post, event_id=events.new_event_id(), occurred_at=now)
        rows.append(_row(event, key=str(post.raw_post.source_id), created_at=now))
    bulk_insert(OutboxEvent, rows)
    return [row.id for row in rows]


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise OutsideTransaction(
            "outbox events must be recorded inside the transaction that writes their rows"
        )


def _row(event: events.Envelope, *, key: str, created_at: datetime) -> OutboxEvent:
    payload = _bounded(event.model_dump(mode="json"))
    return OutboxEvent(
        id=event.event_id,
        subject=event.event_type,
        payload=payload,
        ordering_key=key,
        created_at=created_at,
    )


def encode(payload: dict[str, Any]) -> bytes:
    """The bytes published for a payload (compact UTF-8 JSON)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _size_bound(value: object) -> int:
    """At least len(encode(value)), for what model_dump(mode="json") gives: in compact UTF-8
    JSON a character takes at most 6 bytes (an escape such as \\u001f), a number or a literal
    at most 32 here, and each item one separator."""
    if isinstance(value, str):
        return 6 * len(value) + 2
    if isinstance(value, dict):
        return 2 + sum(_size_bound(k) + _size_bound(v) + 2 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 2 + sum(_size_bound(item) + 1 for item in value)
    return 32


def _bounded(payload: dict[str, Any]) -> dict[str, Any]:
    """Shrink a raw post event over the size limit: JetStream would refuse it for good, and a
    refused event holds back every later event of its source."""
    limit = settings.NATS_MAX_EVENT_BYTES
    raw = payload.get("raw_post")
    # Most events are far below the limit: a bound on their size spares encoding each one.
    if raw is None or _size_bound(payload) <= limit or len(encode(payload)) <= limit:
        return payload
    raw["truncated"] = True
    raw["html"] = ""
    text = raw["text"]
    raw["text"] = ""
    budget = limit - len(encode(payload))
    # Cut the UTF-8 bytes, then re-measure: JSON escapes make some characters longer.
    while text and budget > 0:
        text = text.encode()[:budget].decode(errors="ignore")
        over = len(encode({**payload, "raw_post": {**raw, "text": text}})) - limit
        if over <= 0:
            break
        budget -= over
    raw["text"] = text if budget > 0 else ""
    return payload


# --- What the relay uses -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    id: uuid.UUID
    subject: str
    data: bytes
    ordering_key: str


def pending_batch(*, limit: int, now: datetime | None = None) -> list[Pending]:
    """The oldest unpublished events, in id (creation) order, leaving out every event of a key
    whose earlier event JetStream refused and is still waiting to be retried.

    Reads the pending index in id order (an index scan that stops at `limit`); held-back keys
    are few and filtered here, reading further only if they took up a whole window.
    """
    now = now or timezone.now()
    held_back = set(
        OutboxEvent.objects.filter(published_at__isnull=True, next_attempt_at__gt=now)
        .values_list("ordering_key", flat=True)
        .distinct()
    )
    chosen: list[tuple[uuid.UUID, str]] = []
    after: uuid.UUID | None = None
    while len(chosen) < limit:
        pending = OutboxEvent.objects.filter(published_at__isnull=True)
        if after is not None:
            pending = pending.filter(id__gt=after)
        window = list(pending.order_by("id").values_list("id", "ordering_key")[:limit])
        chosen += [(id_, key) for id_, key in window if key not in held_back]
        if len(window) < limit or not held_back:
            break
        after = window[-1][0]
    chosen = chosen[:limit]
    # Payloads only for the chosen rows: with stale statistics PostgreSQL may read and sort
    # every pending row, and must not cast each one's payload while doing so. The JSON text
    # comes as the database has it (decoding and re-encoding in Python cost a third of the time).
    if not chosen:
        return []
    rows = {
        id_: (subject, text)
        for id_, subject, text in OutboxEvent.objects.filter(id__in=[id_ for id_, _ in chosen])
        .annotate(text=Cast("payload", output_field=TextField()))
        .values_list("id", "subject", "text")
    }
    return [Pending(id_, rows[id_][0], rows[id_][1].encode(), key) for id_, key in chosen]


def mark_published(ids: Iterable[uuid.UUID], *, now: datetime | None = None) -> int:
    """Mark events published (one UPDATE); events already marked are left alone."""
    ids = list(ids)
    if not ids:
        return 0
    return OutboxEvent.objects.filter(id__in=ids, published_at__isnull=True).update(
        published_at=now or timezone.now(),
        attempts=F("attempts") + 1,
        last_error="",
        next_attempt_at=None,
    )


def mark_failed(ids: Iterable[uuid.UUID], *, error: str) -> int:
    """Count a failed attempt (NATS unreachable, no ack in time); the relay backs off itself."""
    ids = list(ids)
    if not ids:
        return 0
    return OutboxEvent.objects.filter(id__in=ids, published_at__isnull=True).update(
        attempts=F("attempts") + 1, last_error=error[:2000]
    )


def mark_rejected(event_id: uuid.UUID, *, error: str, max_delay: float = 300.0) -> None:
    """JetStream refused this event itself: retry it, and hold back its key, with backoff."""
    row = OutboxEvent.objects.filter(id=event_id, published_at__isnull=True).first()
    if row is None:
        return
    delay = min(2.0 ** min(row.attempts, 16), max_delay)
    OutboxEvent.objects.filter(id=event_id, published_at__isnull=True).update(
        attempts=F("attempts") + 1,
        last_error=error[:2000],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )


def prune_published(*, older_than_seconds: int, chunk: int = 5000) -> int:
    """Delete published events older than the cut-off (JetStream keeps them); returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    deleted = 0
    while True:
        ids = list(
            OutboxEvent.objects.filter(published_at__lt=cutoff).values_list("id", flat=True)[:chunk]
        )
        if not ids:
            return deleted
        deleted += OutboxEvent.objects.filter(id__in=ids).delete()[0]


# --- Metrics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxStats:
    pending: int  # events not yet acked by JetStream
    oldest_pending_at: datetime | None
    lag_seconds: float  # age of the oldest pending event (0 when none)
    failing: int  # pending events with at least one failed attempt
    dead_letters: int  # ingest messages given up on


def outbox_stats(*, now: datetime | None = None) -> OutboxStats:
    """Outbox size and lag, for the admin and a metrics endpoint. Reads the pending index only."""
    now = now or timezone.now()
    pending = OutboxEvent.objects.filter(published_at__isnull=True)
    oldest = pending.aggregate(oldest=Min("created_at"))["oldest"]
    return OutboxStats(
        pending=pending.count(),
        oldest_pending_at=oldest,
        lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        failing=pending.filter(attempts__gt=0).count(),
        dead_letters=DeadLetter.objects.count(),
    )
